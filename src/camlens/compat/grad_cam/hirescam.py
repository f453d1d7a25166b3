"""``pytorch_grad_cam.hirescam``."""

from ._wrap import compat_class

HiResCAM = compat_class("hirescam", "HiResCAM")
