"""``pytorch_grad_cam.xgrad_cam``."""

from ._wrap import compat_class

XGradCAM = compat_class("xgradcam", "XGradCAM")
