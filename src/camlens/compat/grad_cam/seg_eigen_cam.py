"""``pytorch_grad_cam.seg_eigen_cam``."""

from ._wrap import compat_class

SegEigenCAM = compat_class("segeigencam", "SegEigenCAM")
