"""Metrics that judge explanations: faithfulness to the model, localisation, sanity.

Every metric is a pure, batched function returning one value per image (and a curve where it has
one) plus a thin stateful class (:class:`Metric`) that accumulates over batches and declares
``higher_is_better``:

============================  ==========================================  =================
metric                        function / class                            better
============================  ==========================================  =================
Average Drop (%)              ``average_drop`` / ``AverageDrop``          lower
Increase in Confidence (%)    ``increase_in_confidence`` / ``IncreaseInConfidence``  higher
CAM x image confidence change ``confidence_change`` / ``ConfidenceChange``  higher
Deletion AUC                  ``deletion`` / ``Deletion``                 lower
Insertion AUC                 ``insertion`` / ``Insertion``               higher
ROAD MoRF / LeRF              ``road`` / ``ROAD(order=...)``              lower / higher
ROAD LeRF - MoRF              ``road_combined`` / ``ROADCombined``        higher
Pointing game                 ``pointing_game`` / ``PointingGame``        higher
Energy pointing game          ``energy_pointing_game`` / ``EnergyPointingGame``  higher
Model randomisation (rho)     ``cascading_randomisation`` / ``ModelRandomisation``  lower
============================  ==========================================  =================

See ``docs/metrics.md`` for the formulas, papers and conventions.
"""

from .base import Metric
from .baselines import center_baseline, random_baseline
from .confidence import (
    AverageDrop,
    ConfidenceChange,
    ConfidenceResult,
    IncreaseInConfidence,
    average_drop,
    confidence_change,
    confidence_scores,
    explanation_map,
    increase_in_confidence,
)
from .deletion import (
    BASELINES,
    CurveResult,
    Deletion,
    Insertion,
    baseline_image,
    deletion,
    gaussian_blur,
    insertion,
    perturbation_curve,
)
from .localisation import EnergyPointingGame, PointingGame, boxes_to_masks, energy_pointing_game, pointing_game
from .imputation import noisy_linear_impute, noisy_linear_impute_direct
from .road import DEFAULT_PERCENTILES, ROAD, ROADCombined, ROADResult, road, road_combined
from .sanity import ModelRandomisation, SanityResult, average_ranks, cascading_randomisation, spearman

__all__ = [
    "Metric",
    "center_baseline",
    "random_baseline",
    "AverageDrop",
    "ConfidenceChange",
    "ConfidenceResult",
    "IncreaseInConfidence",
    "average_drop",
    "confidence_change",
    "confidence_scores",
    "explanation_map",
    "increase_in_confidence",
    "BASELINES",
    "CurveResult",
    "Deletion",
    "Insertion",
    "baseline_image",
    "deletion",
    "gaussian_blur",
    "insertion",
    "perturbation_curve",
    "EnergyPointingGame",
    "PointingGame",
    "boxes_to_masks",
    "energy_pointing_game",
    "pointing_game",
    "DEFAULT_PERCENTILES",
    "ROAD",
    "ROADCombined",
    "ROADResult",
    "noisy_linear_impute",
    "noisy_linear_impute_direct",
    "road",
    "road_combined",
    "ModelRandomisation",
    "SanityResult",
    "average_ranks",
    "cascading_randomisation",
    "spearman",
]
