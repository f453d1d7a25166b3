"""``pytorch_grad_cam.grad_cam``."""

from ._wrap import compat_class

GradCAM = compat_class("gradcam", "GradCAM")
