"""pytorch-grad-cam 1.5's public API on camlens: change ``pytorch_grad_cam`` to
``camlens.compat.grad_cam`` in the import lines; names, signatures, return types and shapes stay.

Where pytorch-grad-cam has a bug, camlens's fix is kept (see docs/migrating.md): a target list
shorter than the batch is an error (pytorch-grad-cam silently gives zeros), Eigen-based maps have
a fixed sign, ScoreCAM never returns NaN.
"""

from . import feature_factorization, metrics, utils  # noqa: F401
from .ablation_cam import AblationCAM
from .ablation_layer import AblationLayer, AblationLayerFasterRCNN, AblationLayerVit
from .activations_and_gradients import ActivationsAndGradients
from .base_cam import BaseCAM
from .eigen_cam import EigenCAM
from .eigen_grad_cam import EigenGradCAM
from .feature_factorization.deep_feature_factorization import DeepFeatureFactorization, run_dff_on_image
from .fem import FEM
from .finer_cam import FinerCAM
from .fullgrad_cam import FullGrad
from .grad_cam import GradCAM
from .grad_cam_elementwise import GradCAMElementWise
from .grad_cam_plusplus import GradCAMPlusPlus
from .guided_backprop import GuidedBackpropReLUModel
from .hirescam import HiResCAM
from .kpca_cam import KPCA_CAM
from .layer_cam import LayerCAM
from .random_cam import RandomCAM
from .refine_cam import RefineCAM
from .score_cam import ScoreCAM
from .seg_eigen_cam import SegEigenCAM
from .shapley_cam import ShapleyCAM
from .sess import SESS
from .xgrad_cam import XGradCAM

__all__ = [
    "AblationCAM",
    "AblationLayer",
    "AblationLayerFasterRCNN",
    "AblationLayerVit",
    "ActivationsAndGradients",
    "BaseCAM",
    "DeepFeatureFactorization",
    "FEM",
    "FinerCAM",
    "FullGrad",
    "KPCA_CAM",
    "RandomCAM",
    "RefineCAM",
    "SESS",
    "SegEigenCAM",
    "ShapleyCAM",
    "run_dff_on_image",
    "EigenCAM",
    "EigenGradCAM",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "GuidedBackpropReLUModel",
    "HiResCAM",
    "LayerCAM",
    "ScoreCAM",
    "XGradCAM",
]
