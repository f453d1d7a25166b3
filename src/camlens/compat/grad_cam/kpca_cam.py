"""``pytorch_grad_cam.kpca_cam``."""

from ._wrap import compat_class

KPCA_CAM = compat_class("kpcacam", "KPCA_CAM")
