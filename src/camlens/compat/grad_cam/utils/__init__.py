"""``pytorch_grad_cam.utils``."""

from . import find_layers, image, model_targets, reshape_transforms, svd_on_activations  # noqa: F401
