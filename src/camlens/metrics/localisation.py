"""Localisation against ground truth: the pointing game and the energy-based pointing game.

* **Pointing game** -- Zhang, Bargal, Lin, Brandt, Shen and Sclaroff, "Top-down Neural Attention
  by Excitation Backprop", ECCV 2016 / IJCV 2018. A *hit* when the map's maximum point lies on
  the object, with a tolerance of 15 pixels: ``hit_i = 1[ min_{p in G_i} ||argmax(L_i) - p||_2 <= 15 ]``.
  The score is the accuracy ``#hits / (#hits + #misses)`` (higher is better; the image-centre
  point is the baseline to beat). A constant map has no maximum point and counts as a miss; among
  tied maxima the first in row-major order is taken.
* **Energy-based pointing game** -- Wang et al., "Score-CAM: Score-Weighted Visual Explanations for
  Convolutional Neural Networks", CVPR-W 2020, Sec. 5.2: the share of the map's energy inside the
  ground truth, ``E_i = sum_{p in G_i} L_i(p) / sum_p L_i(p)`` (higher is better; a uniform map
  scores the box's area fraction). Negative map values are clipped to 0; an all-zero map scores 0.

Ground truth ``G`` is given as boolean masks ``(N, H, W)`` or as boxes in ``xyxy`` pixel
coordinates of the map: pixel ``(row r, column c)`` is inside ``[x1, y1, x2, y2]`` when
``x1 <= c <= x2`` and ``y1 <= r <= y2`` (pixel indices, inclusive, as ImageNet and VOC annotate).
Several boxes per image are united. Images with empty ground truth score NaN (skipped by means).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ArgumentError, InputShapeError, InputTypeError
from ._common import as_maps
from .base import Metric

__all__ = [
    "boxes_to_masks",
    "pointing_game",
    "energy_pointing_game",
    "PointingGame",
    "EnergyPointingGame",
]


def _box_tensor(boxes: Any, n: int, device: torch.device) -> torch.Tensor:
    """Boxes as a padded ``(N, K, 4)`` float tensor; padding rows are NaN."""
    if isinstance(boxes, np.ndarray):
        boxes = torch.from_numpy(boxes)
    if isinstance(boxes, torch.Tensor):
        t = boxes.to(device=device, dtype=torch.float64)
        if t.dim() == 2:
            t = t[:, None]
        if t.dim() != 3 or t.shape[-1] != 4 or t.shape[0] != n:
            raise InputShapeError(
                f"boxes must be (N, 4), (N, K, 4) or a list of N (K_i, 4) arrays in xyxy order; "
                f"got a tensor of shape {tuple(boxes.shape)} for {n} maps"
            )
        return t
    if not isinstance(boxes, Sequence) or isinstance(boxes, str):
        raise InputTypeError(f"boxes must be a tensor or a list of per-image boxes; got {type(boxes).__name__}")
    if len(boxes) != n:
        raise InputShapeError(f"got boxes for {len(boxes)} images but {n} maps; pass one entry per map")
    per_image = []
    for i, b in enumerate(boxes):
        t = torch.as_tensor(np.asarray(b, dtype=np.float64) if not isinstance(b, torch.Tensor) else b)
        t = t.to(dtype=torch.float64).reshape(-1, 4) if t.numel() % 4 == 0 else None
        if t is None:
            raise InputShapeError(f"boxes of image {i} must be (K, 4) xyxy; got {np.shape(b)}")
        per_image.append(t)
    k = max(1, max(t.shape[0] for t in per_image))
    out = torch.full((n, k, 4), float("nan"), dtype=torch.float64)
    for i, t in enumerate(per_image):  # ragged input: one copy per image, no arithmetic
        out[i, : t.shape[0]] = t
    return out.to(device)


def boxes_to_masks(boxes: Any, size: tuple[int, int], device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean masks ``(N, H, W)``: union of each image's ``xyxy`` boxes (inclusive pixel indices).

    ``boxes``: ``(N, 4)``, ``(N, K, 4)`` (NaN rows ignored) or a list of ``(K_i, 4)`` arrays.
    """
    h, w = int(size[0]), int(size[1])
    n = boxes.shape[0] if isinstance(boxes, (torch.Tensor, np.ndarray)) else len(boxes)
    b = _box_tensor(boxes, n, torch.device(device) if device is not None else torch.device("cpu"))
    bad = (b[..., 2] < b[..., 0]) | (b[..., 3] < b[..., 1])
    if bool(bad.any()):
        i, j = (int(v) for v in bad.nonzero()[0])
        raise ArgumentError(f"box {j} of image {i} is {b[i, j].tolist()}: expected xyxy with x1 <= x2 and y1 <= y2")
    cols = torch.arange(w, device=b.device, dtype=b.dtype)
    rows = torch.arange(h, device=b.device, dtype=b.dtype)
    x1, y1, x2, y2 = (b[..., i, None] for i in range(4))  # (N, K, 1); NaN compares False
    in_x = (cols >= x1) & (cols <= x2)  # (N, K, W)
    in_y = (rows >= y1) & (rows <= y2)  # (N, K, H)
    return (in_y[..., :, None] & in_x[..., None, :]).any(dim=1)


def _ground_truth(maps: torch.Tensor, boxes: Any, masks: Any) -> torch.Tensor:
    if (boxes is None) == (masks is None):
        raise ArgumentError("pass the ground truth as exactly one of boxes=... or masks=...")
    n, h, w = maps.shape
    if masks is not None:
        m = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks)
        if m.dim() == 2:
            m = m[None]
        if tuple(m.shape) != (n, h, w):
            raise InputShapeError(
                f"masks have shape {tuple(m.shape)} but the maps are {(n, h, w)}; pass one (H, W) mask per map"
            )
        return m.to(maps.device) > 0.5 if m.is_floating_point() else m.to(maps.device).bool()
    return boxes_to_masks(boxes, (h, w), maps.device)


def pointing_game(
    cams: Any,
    *,
    boxes: Any = None,
    masks: Any = None,
    tolerance: float = 15.0,
) -> torch.Tensor:
    """Per-image pointing-game hit ``(N,)``: 1.0 hit, 0.0 miss, NaN without ground truth.

    Args:
        cams: ``(N, H, W)`` maps; ground truth in the same pixel grid.
        boxes: ``xyxy`` boxes per image (see :func:`boxes_to_masks`), or
        masks: boolean ``(N, H, W)`` object masks.
        tolerance: hit radius in pixels around the ground truth (paper: 15).
    """
    if tolerance < 0:
        raise ArgumentError(f"tolerance must be >= 0 pixels; got {tolerance}")
    maps = as_maps(cams)
    gt = _ground_truth(maps, boxes, masks)
    n, h, w = maps.shape
    flat = maps.reshape(n, -1)
    peak = flat.argmax(dim=1)
    r = (peak // w).to(torch.float32)
    c = (peak % w).to(torch.float32)
    rows = torch.arange(h, device=maps.device, dtype=torch.float32)
    cols = torch.arange(w, device=maps.device, dtype=torch.float32)
    d2 = (rows[None, :, None] - r[:, None, None]) ** 2 + (cols[None, None, :] - c[:, None, None]) ** 2
    d2 = torch.where(gt, d2, torch.full_like(d2, float("inf")))
    hit = (d2.reshape(n, -1).amin(dim=1) <= float(tolerance) ** 2).float()
    constant = flat.amax(dim=1) <= flat.amin(dim=1)
    hit = torch.where(constant, torch.zeros_like(hit), hit)
    has_gt = gt.reshape(n, -1).any(dim=1)
    return torch.where(has_gt, hit, torch.full_like(hit, float("nan")))


def energy_pointing_game(cams: Any, *, boxes: Any = None, masks: Any = None) -> torch.Tensor:
    """Per-image share of the map's energy inside the ground truth ``(N,)`` in ``[0, 1]``.

    ``E = sum(L * G) / sum(L)`` with ``L`` clipped at 0; NaN for images without ground truth.
    """
    maps = as_maps(cams).clamp_min(0)
    gt = _ground_truth(maps, boxes, masks)
    n = maps.shape[0]
    total = maps.reshape(n, -1).sum(dim=1)
    inside = (maps * gt).reshape(n, -1).sum(dim=1)
    share = torch.where(total > 0, inside / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(total))
    has_gt = gt.reshape(n, -1).any(dim=1)
    return torch.where(has_gt, share, torch.full_like(share, float("nan")))


class PointingGame(Metric):
    """Pointing-game accuracy over every batch seen (higher is better).

    ``update(cams, boxes=...)`` or ``update(cams, masks=...)``.
    """

    name = "pointing_game"
    higher_is_better = True

    def __init__(self, tolerance: float = 15.0) -> None:
        super().__init__()
        self.tolerance = tolerance

    def per_image(self, cams: Any, *, boxes: Any = None, masks: Any = None) -> torch.Tensor:
        return pointing_game(cams, boxes=boxes, masks=masks, tolerance=self.tolerance)


class EnergyPointingGame(Metric):
    """Mean share of map energy inside the ground truth over every batch seen (higher is better)."""

    name = "energy_pointing_game"
    higher_is_better = True

    def per_image(self, cams: Any, *, boxes: Any = None, masks: Any = None) -> torch.Tensor:
        return energy_pointing_game(cams, boxes=boxes, masks=masks)
