"""``pytorch_grad_cam.fem``."""

from ._wrap import compat_class

FEM = compat_class("fem", "FEM")
