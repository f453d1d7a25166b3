"""``pytorch_grad_cam.eigen_cam``."""

from ._wrap import compat_class

EigenCAM = compat_class("eigencam", "EigenCAM")
