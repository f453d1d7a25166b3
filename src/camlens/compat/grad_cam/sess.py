"""``pytorch_grad_cam.sess``."""

from ._wrap import compat_class

SESS = compat_class("sess", "SESS")
