"""Test-time augmentation smoothing (``aug_smooth=True``).

Six augmentations: horizontal flip (off/on) x multiplying the input by 0.9, 1.0 and 1.1. All six
are stacked into one batch, each resulting map is de-augmented (flipped back where it was
flipped), the six are averaged and the average is min-max normalised again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Augmentation", "AUGMENTATIONS", "augment", "deaugment_mean"]


@dataclass(frozen=True)
class Augmentation:
    flip: bool
    factor: float


AUGMENTATIONS: tuple[Augmentation, ...] = tuple(
    Augmentation(flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1)
)
IDENTITY_INDEX = AUGMENTATIONS.index(Augmentation(False, 1.0))


def augment(x: torch.Tensor, augs: tuple[Augmentation, ...] = AUGMENTATIONS) -> torch.Tensor:
    """Stack the augmented copies of ``x`` ``(N, C, H, W)`` -> ``(len(augs) * N, C, H, W)``, aug-major."""
    out = []
    for aug in augs:
        y = x.flip(-1) if aug.flip else x
        out.append(y * aug.factor if aug.factor != 1.0 else y)
    return torch.cat(out, dim=0)


def deaugment_mean(maps: torch.Tensor, n: int, augs: tuple[Augmentation, ...] = AUGMENTATIONS) -> torch.Tensor:
    """Undo each augmentation on ``maps`` ``(len(augs) * N, H, W)`` and average -> ``(N, H, W)``."""
    chunks = maps.reshape(len(augs), n, *maps.shape[1:])
    restored = [c.flip(-1) if a.flip else c for a, c in zip(augs, chunks)]
    return torch.stack(restored).mean(dim=0)
