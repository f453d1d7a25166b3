"""``pytorch_grad_cam.fullgrad_cam``."""

from ._wrap import compat_class

FullGrad = compat_class("fullgrad", "FullGrad")
