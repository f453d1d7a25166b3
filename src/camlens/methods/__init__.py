"""CAM methods. Importing this package registers every method in :mod:`camlens.registry`."""

from .base import ActivationCAM, BaseCAM, Explanation, GradientCAM, LayerContext
from .gradcam import GradCAM
from .gradcampp import GradCAMPlusPlus
from .xgradcam import XGradCAM
from .hirescam import HiResCAM
from .gradcam_elementwise import GradCAMElementWise
from .layercam import LayerCAM
from .eigencam import EigenCAM
from .eigengradcam import EigenGradCAM
from .scorecam import ScoreCAM
from .ablationcam import AblationCAM

__all__ = [
    "ActivationCAM",
    "BaseCAM",
    "Explanation",
    "GradientCAM",
    "LayerContext",
    "GradCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "HiResCAM",
    "GradCAMElementWise",
    "LayerCAM",
    "EigenCAM",
    "EigenGradCAM",
    "ScoreCAM",
    "AblationCAM",
]
