"""``pytorch_grad_cam.layer_cam``."""

from ._wrap import compat_class

LayerCAM = compat_class("layercam", "LayerCAM")
