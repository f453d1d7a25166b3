"""camlens: Class Activation Maps for PyTorch vision models.

>>> import torch, torchvision
>>> from camlens import GradCAM
>>> from camlens.targets import ClassifierOutputTarget
>>> model = torchvision.models.resnet18(weights=None).eval()
>>> batch = torch.rand(2, 3, 64, 64)
>>> cam = GradCAM(model=model, target_layers=[model.layer4[-1]])
>>> maps = cam(input_tensor=batch, targets=[ClassifierOutputTarget(281)] * len(batch))
>>> maps.shape, maps.dtype
((2, 64, 64), dtype('float32'))
"""

from .engine import default_output_adapter
from .errors import CamLensError, CamLensWarning
from .guided_backprop import GuidedBackprop, GuidedBackpropReLUModel, guided_gradcam
from .methods import BaseCAM, Explanation
from .layers import auto_target_layers
from .registry import available_methods, get_method, registered_classes
from .reshape import ChannelsLast, TokenReshape, swin_reshape_transform, vit_reshape_transform

__version__ = "0.1.0"

# Every registered method class is exported here: a new file in methods/ needs no edit of this one.
_METHOD_CLASSES = {cls.__name__: cls for cls in registered_classes()}
globals().update(_METHOD_CLASSES)

__all__ = [
    "BaseCAM",
    "CamLensError",
    "CamLensWarning",
    "ChannelsLast",
    "Explanation",
    "GuidedBackprop",
    "GuidedBackpropReLUModel",
    "TokenReshape",
    "auto_target_layers",
    "available_methods",
    "default_output_adapter",
    "get_method",
    "guided_gradcam",
    "show_cam_on_image",
    "swin_reshape_transform",
    "vit_reshape_transform",
    "__version__",
    *sorted(_METHOD_CLASSES),
]


def __getattr__(name: str):  # lazy: image utilities import pillow/matplotlib only when used
    if name == "show_cam_on_image":
        from .image import show_cam_on_image

        return show_cam_on_image
    raise AttributeError(f"module 'camlens' has no attribute {name!r}")
