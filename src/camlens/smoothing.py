"""Test-time augmentation smoothing (``aug_smooth=True``): augment, run, de-augment, average.

Six augmentations: flip of the last axis (off/on) x multiplying the input by 0.9, 1.0 and 1.1 (the
default set of pytorch-grad-cam). The flip is along the *last* axis whatever the number of spatial
axes: the horizontal flip of an image ``(N, C, H, W)``, the left-right flip of every slice of a
volume or video ``(N, C, D, H, W)`` (depth/time order is kept), and the time reversal of a signal
``(N, C, L)`` -- which suits symmetric signals only; for a causal signal (ECG, audio) leave
``aug_smooth`` off. :func:`explain_augmented` is the one path:

1. the ``len(augs) * N`` augmented images are *rows*, the un-augmented copy first;
2. rows run through the CAM (capture, per-layer maps, finished maps) as one batch, or -- when
   that runs out of memory -- in chunks, halving the chunk on each out-of-memory error (same
   result, slower; said once with a :class:`~camlens.CamLensWarning`);
3. targets not given are chosen on the un-augmented image, in the same pass: the first rows are
   the un-augmented copies, so the target of an image is known (from its own output) before or
   while its augmented copies run -- there is no extra forward pass to choose them;
4. each finished map is de-augmented (flipped back where it was flipped), the maps of an image are
   averaged and the average is min-max normalised again.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .engine import CamLensWarning
from .errors import TargetError
from .model_inputs import rows_of
from .postprocess import minmax_normalize
from .targets import TargetFn, targets_from_categories

__all__ = ["Augmentation", "AUGMENTATIONS", "augment", "deaugment_mean", "explain_augmented"]

_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

Explained = tuple[torch.Tensor, list[torch.Tensor], torch.Tensor, list[TargetFn]]
"""``(finished maps (B, H, W), raw maps per layer (B, h, w), scores (B,), targets)`` of a batch."""


class ExplainStep(Protocol):
    """One CAM pass over a batch: capture, per-layer maps, finished maps (:meth:`BaseCAM` internals)."""

    def __call__(
        self,
        x: torch.Tensor,
        targets: Sequence[TargetFn] | None,
        *,
        resolve_targets: Callable[[torch.Tensor], Sequence[TargetFn]] | None = None,
    ) -> Explained: ...


@dataclass(frozen=True)
class Augmentation:
    flip: bool
    factor: float


AUGMENTATIONS: tuple[Augmentation, ...] = tuple(
    Augmentation(flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1)
)
IDENTITY = Augmentation(False, 1.0)


def augment(x: torch.Tensor, augs: Sequence[Augmentation] = AUGMENTATIONS) -> torch.Tensor:
    """Stack the augmented copies of ``x`` ``(N, C, *spatial)`` -> ``(len(augs) * N, C, *spatial)``, aug-major."""
    out = []
    for aug in augs:
        y = x.flip(-1) if aug.flip else x
        out.append(y * aug.factor if aug.factor != 1.0 else y)
    return torch.cat(out, dim=0)


def deaugment_mean(maps: torch.Tensor, n: int, augs: Sequence[Augmentation] = AUGMENTATIONS) -> torch.Tensor:
    """Undo each augmentation on ``maps`` ``(len(augs) * N, *spatial)`` (aug-major) and average -> ``(N, *spatial)``."""
    chunks = maps.reshape(len(augs), n, *maps.shape[1:])
    restored = [c.flip(-1) if a.flip else c for a, c in zip(augs, chunks)]
    return torch.stack(restored).mean(dim=0)


def explain_augmented(
    step: ExplainStep,
    x: torch.Tensor,
    targets: Sequence[TargetFn] | None,
    target_category: Any = None,
    augs: Sequence[Augmentation] = AUGMENTATIONS,
) -> Explained:
    """Smoothed maps ``(N, H, W)`` of ``x``, and the raw maps, scores and targets of the un-augmented
    images (see the module docstring). ``step`` is one CAM pass over a batch."""
    n = x.shape[0]
    if targets is not None and len(targets) != n:
        raise TargetError(f"got {len(targets)} targets for a batch of {n} images; pass one target per image")
    if targets is None and target_category is not None:  # an int or one class per image: no output needed
        targets = targets_from_categories(target_category, x.new_zeros(n))  # range checked when scored
    order = sorted(augs, key=lambda a: a != IDENTITY)  # the un-augmented copy first (if it is one of augs)
    chosen: list[TargetFn | None] = list(targets) if targets is not None else [None] * n
    total = len(order) * n
    parts: list[Explained] = []
    start, chunk = 0, total
    while start < total:
        rows = range(start, min(total, start + chunk))
        try:
            parts.append(_run_rows(step, x, order, rows, chosen))
        except _OUT_OF_MEMORY:
            if chunk == 1:
                raise
            if chunk == total:
                warnings.warn(
                    f"aug_smooth: the {len(order)} augmented copies of the batch did not fit in memory together; "
                    "running them in smaller chunks (same result, slower)",
                    CamLensWarning,
                    stacklevel=4,
                )
            chunk = (chunk + 1) // 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        start = rows.stop
    cams = torch.cat([p[0] for p in parts])
    raw = [torch.cat([p[1][i] for p in parts]) for i in range(len(parts[0][1]))]
    scores = torch.cat([p[2] for p in parts])
    resolved = [t for p in parts for t in p[3]]
    cam = minmax_normalize(deaugment_mean(cams, n, order))
    first = slice(0, n)  # the un-augmented rows (or the first augmentation's when it is not in augs)
    return cam, [r[first] for r in raw], scores[first], resolved[:n]


def _run_rows(
    step: ExplainStep, x: torch.Tensor, order: Sequence[Augmentation], rows: range, chosen: list[TargetFn | None]
) -> Explained:
    """Run ``step`` on rows ``rows`` (row ``r`` = augmentation ``order[r // N]`` of image ``r % N``)."""
    n = x.shape[0]
    pieces = []
    for a, aug in enumerate(order):
        lo, hi = max(rows.start, a * n), min(rows.stop, (a + 1) * n)
        if lo < hi:
            pieces.append(augment(x[lo - a * n : hi - a * n], (aug,)))
    xs = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
    images = [r % n for r in rows]
    if all(chosen[i] is not None for i in images):
        with rows_of(torch.tensor(images)):
            return step(xs, [chosen[i] for i in images])  # type: ignore[misc]

    def resolve(outputs: torch.Tensor) -> list[TargetFn]:
        # Unknown targets belong to un-augmented rows in this chunk (they come first): the top class there.
        fresh = [p for p, r in enumerate(rows) if r < n and chosen[r] is None]
        for p, t in zip(fresh, targets_from_categories(None, outputs[fresh])):
            chosen[rows[p]] = t
        return [chosen[i] for i in images]  # type: ignore[misc]

    with rows_of(torch.tensor(images)):
        return step(xs, None, resolve_targets=resolve)
