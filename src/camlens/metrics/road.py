"""ROAD: RemOve And Debias.

Rong, Leemann, Borisov, Kasneci and Kasneci, "A Consistent and Efficient Evaluation Strategy for
Attribution Methods", ICML 2022. At each percentile ``p`` the ``p%`` pixels of highest saliency
(**MoRF**, most relevant first) or of lowest saliency (**LeRF**, least relevant first) are removed
and *imputed* so that the removal pattern itself leaks no class information: the noisy linear
imputation of :mod:`camlens.metrics.imputation` (each removed pixel the weighted mean of its 8
neighbours, solved jointly, plus Gaussian noise).

Scores: the softmax probability of the target class on each imputed image (``score=`` as in the
other metrics; ``"correct"`` gives the accuracy the paper plots). The curve has one point per
percentile; the summary is its mean over percentiles.
**MoRF: lower is better** (the class should vanish fast), **LeRF: higher is better**, and the
common single number ``LeRF - MoRF`` (mean LeRF score minus mean MoRF score): higher is better.

Example::

    from camlens.metrics import road

    cams = torch.rand(2, 32, 32)
    res = road(model, x, cams, order="morf", percentiles=[20, 50, 80])
    assert res.curve.shape == (2, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..engine import OutputAdapter
from ..errors import ArgumentError
from ._common import (
    as_images,
    as_maps,
    check_percentiles,
    rank_order,
    ranks_of,
    resolve_classes,
    score_in_chunks,
)
from .base import Metric
from .imputation import noisy_linear_impute

__all__ = [
    "DEFAULT_PERCENTILES",
    "ROADResult",
    "road",
    "road_combined",
    "ROAD",
    "ROADCombined",
]

DEFAULT_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


# ------------------------------------------------------------------------------- the metric
@dataclass
class ROADResult:
    """ROAD scores of each image at each percentile."""

    curve: torch.Tensor
    """``(N, P)`` score after removing (and imputing) each percentile of pixels."""
    score: torch.Tensor
    """``(N,)`` mean of ``curve`` over the percentiles."""
    percentiles: list[float]
    """The percentiles (percent of pixels removed)."""
    order: str
    """``"morf"`` or ``"lerf"``."""
    classes: torch.Tensor

    @property
    def higher_is_better(self) -> bool:
        return self.order == "lerf"


def road(
    model: nn.Module,
    input_tensor: torch.Tensor,
    cams: Any,
    targets: Any = None,
    *,
    order: str = "morf",
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    noise: float = 0.01,
    score: str = "softmax",
    batch_size: int = 32,
    output_adapter: OutputAdapter | None = None,
    seed: int | None = 0,
    tol: float = 1e-5,
    max_iter: int = 1000,
    solver: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> ROADResult:
    """ROAD curve of every image: remove the top (``order="morf"``) or bottom (``"lerf"``)
    ``percentiles`` % of pixels by saliency, impute them (noisy linear), score the target class.

    ``N * len(percentiles)`` imputed images are built and scored ``batch_size`` at a time. ``seed``
    fixes both the tie-breaking among equal saliency values and the imputation noise;
    ``solver``/``tol``/``max_iter`` as :func:`noisy_linear_impute`.
    """
    order = order.lower()
    if order not in ("morf", "lerf"):
        raise ArgumentError(f"order must be 'morf' (most relevant first) or 'lerf' (least relevant first); got {order!r}")
    fractions = check_percentiles(percentiles)
    x = as_images(input_tensor, model)
    maps = as_maps(cams, x)
    n, c, h, w = x.shape
    classes, _ = resolve_classes(model, x, targets, batch_size=batch_size, output_adapter=output_adapter, score=score)
    ranks = ranks_of(rank_order(maps, descending=(order == "morf"), seed=seed)).reshape(n, h, w)
    p = len(fractions)
    counts = torch.tensor([min(h * w - 1, int(round(f * h * w))) for f in fractions], device=x.device)
    chunk_seed = [seed]

    def build(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img, step = idx // p, idx % p
        removed = ranks[img] < counts[step][:, None, None]
        s = None if chunk_seed[0] is None else chunk_seed[0] + int(idx[0])
        imputed = noisy_linear_impute(x[img], removed, noise=noise, seed=s, tol=tol, max_iter=max_iter, solver=solver)
        return imputed, classes[img]

    scores = score_in_chunks(
        model, n * p, build, batch_size=batch_size, device=x.device,
        output_adapter=output_adapter, score=score, progress=progress,
    )
    curve = scores.reshape(n, p)
    return ROADResult(curve=curve, score=curve.mean(dim=1), percentiles=[f * 100 for f in fractions], order=order, classes=classes)


def road_combined(
    model: nn.Module, input_tensor: torch.Tensor, cams: Any, targets: Any = None, **kwargs: Any
) -> tuple[torch.Tensor, ROADResult, ROADResult]:
    """Per-image ``LeRF - MoRF`` (mean LeRF score minus mean MoRF score; higher is better),
    with both results. Keyword arguments as :func:`road`."""
    morf = road(model, input_tensor, cams, targets, order="morf", **kwargs)
    lerf = road(model, input_tensor, cams, targets, order="lerf", **kwargs)
    return lerf.score - morf.score, morf, lerf


class ROAD(Metric):
    """Mean ROAD score over every batch seen; ``.curves`` holds the per-percentile curves.

    ``higher_is_better`` is ``False`` for ``order="morf"`` and ``True`` for ``order="lerf"``.
    """

    name = "road"

    def __init__(self, model: nn.Module, order: str = "morf", **options: Any) -> None:
        super().__init__()
        if order.lower() not in ("morf", "lerf"):
            raise ArgumentError(f"order must be 'morf' or 'lerf'; got {order!r}")
        self.model = model
        self.order = order.lower()
        self.higher_is_better = self.order == "lerf"  # type: ignore[misc]
        self.name = f"road_{self.order}"  # type: ignore[misc]
        self.options = options

    def per_image(self, input_tensor: torch.Tensor, cams: Any, targets: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        res = road(self.model, input_tensor, cams, targets, order=self.order, **self.options)
        return res.score, res.curve


class ROADCombined(Metric):
    """Mean per-image ``LeRF - MoRF`` ROAD score over every batch seen (higher is better)."""

    name = "road_combined"
    higher_is_better = True

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__()
        self.model = model
        self.options = options

    def per_image(self, input_tensor: torch.Tensor, cams: Any, targets: Any = None) -> torch.Tensor:
        return road_combined(self.model, input_tensor, cams, targets, **self.options)[0]
