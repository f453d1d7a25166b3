"""``pytorch_grad_cam.grad_cam_plusplus``."""

from ._wrap import compat_class

GradCAMPlusPlus = compat_class("gradcam++", "GradCAMPlusPlus")
