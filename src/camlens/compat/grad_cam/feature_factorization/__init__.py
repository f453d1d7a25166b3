"""``pytorch_grad_cam.feature_factorization``."""

from .deep_feature_factorization import DeepFeatureFactorization, dff, run_dff_on_image

__all__ = ["DeepFeatureFactorization", "dff", "run_dff_on_image"]
