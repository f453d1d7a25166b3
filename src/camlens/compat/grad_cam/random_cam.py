"""``pytorch_grad_cam.random_cam``."""

from ._wrap import compat_class

RandomCAM = compat_class("randomcam", "RandomCAM")
