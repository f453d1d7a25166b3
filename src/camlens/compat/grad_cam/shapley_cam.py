"""``pytorch_grad_cam.shapley_cam``."""

from ._wrap import compat_class

ShapleyCAM = compat_class("shapleycam", "ShapleyCAM")
