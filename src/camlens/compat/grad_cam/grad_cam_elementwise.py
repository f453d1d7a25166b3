"""``pytorch_grad_cam.grad_cam_elementwise``."""

from ._wrap import compat_class

GradCAMElementWise = compat_class("gradcamelementwise", "GradCAMElementWise")
