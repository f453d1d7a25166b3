"""Thin stateful metric classes that accumulate per-image values over batches.

Every metric is first a pure function returning one value per image (``(N,)``); a class wraps
it: ``update(...)`` computes and stores the batch's per-image values (and curves, when the
metric has them), ``compute()`` returns the mean over everything seen, ``reset()`` forgets.
Each class declares ``higher_is_better`` (``None`` where it depends on an option).

>>> import torch
>>> from camlens.metrics import PointingGame
>>> metric = PointingGame(tolerance=0)
>>> maps = torch.zeros(2, 8, 8)
>>> maps[0, 1, 1] = 1.0                     # image 0 peaks inside its box
>>> maps[1, 6, 6] = 1.0                     # image 1 peaks outside it
>>> boxes = [torch.tensor([[0, 0, 4, 4]])] * 2   # (x1, y1, x2, y2) per image
>>> for _ in range(2):                      # e.g. two batches from a loader
...     per_image = metric.update(maps, boxes=boxes)   # returns this batch's values
>>> float(metric.compute())
0.5
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..errors import MetricStateError

__all__ = ["Metric"]


class Metric:
    """Base class: accumulate per-image values ``(N,)`` (and optional curves ``(N, K)``)."""

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool | None] = None
    """``True``: larger is better; ``False``: smaller is better; ``None``: depends on the options."""

    def __init__(self) -> None:
        self._values: list[torch.Tensor] = []
        self._curves: list[torch.Tensor] = []

    # --------------------------------------------------------------- to override
    def per_image(self, *args: Any, **kwargs: Any) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The batch's per-image values ``(N,)``, or ``(values, curves)``."""
        raise NotImplementedError

    # --------------------------------------------------------------- accumulation
    def update(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Score one batch, remember its values, and return them ``(N,)``."""
        result = self.per_image(*args, **kwargs)
        if isinstance(result, tuple):
            values, curves = result
            self._curves.append(curves.detach())
        else:
            values = result
        self._values.append(values.detach().reshape(-1))
        return values

    __call__ = update

    def reset(self) -> None:
        """Forget every accumulated value."""
        self._values.clear()
        self._curves.clear()

    @property
    def values(self) -> torch.Tensor:
        """All per-image values seen so far, ``(N_total,)``."""
        if not self._values:
            return torch.empty(0)
        device = self._values[0].device
        return torch.cat([v.to(device) for v in self._values])

    @property
    def curves(self) -> torch.Tensor:
        """All per-image curves seen so far ``(N_total, K)`` (metrics with curves only)."""
        if not self._curves:
            raise MetricStateError(f"{type(self).__name__} has no curves: call update() on a batch first")
        device = self._curves[0].device
        return torch.cat([c.to(device) for c in self._curves])

    def compute(self) -> torch.Tensor:
        """Mean of the per-image values over every batch (images with an undefined value, NaN,
        are left out)."""
        if not self._values:
            raise MetricStateError(f"{type(self).__name__}.compute() called before any update(); pass a batch first")
        return torch.nanmean(self.values.float())

    def __repr__(self) -> str:
        n = sum(v.numel() for v in self._values)
        return f"{type(self).__name__}(higher_is_better={self.higher_is_better}, images={n})"
