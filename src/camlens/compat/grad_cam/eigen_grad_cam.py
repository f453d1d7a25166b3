"""``pytorch_grad_cam.eigen_grad_cam``."""

from ._wrap import compat_class

EigenGradCAM = compat_class("eigengradcam", "EigenGradCAM")
