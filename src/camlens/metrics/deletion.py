"""Deletion and insertion curves and their area under the curve (AUC).

Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018, Sec. 4.1. Pixels are ranked by saliency (most salient first). In ``steps`` equal steps:

* **deletion** replaces the top ``k/steps`` fraction of pixels with a baseline (``k = 0..steps``);
  a good map makes the class probability fall fast: **lower AUC is better**;
* **insertion** starts from the baseline (the paper: a blurred copy) and puts back the top
  ``k/steps`` fraction of the original pixels: **higher AUC is better**.

The curve ``p_k`` (softmax probability of the target class after step ``k``, ``k = 0..steps``) is
integrated with the trapezoid rule over ``x = k/steps`` in ``[0, 1]``:
``AUC = 1/steps * (p_0/2 + p_1 + ... + p_{steps-1} + p_steps/2)``.

Baselines (in the space of the tensor given, i.e. after the model's normalisation):
``"zero"`` (RISE's deletion substrate; the dataset mean colour for mean/std-normalised inputs),
``"mean"`` (each image's per-channel mean), ``"blur"`` (Gaussian blur, ``blur_kernel=11``,
``blur_sigma=5`` as in RISE; borders replicated). Ties in saliency are broken by a random
permutation from ``seed`` so flat regions are not removed row by row.

All ``N * (steps + 1)`` perturbed images are built on the fly and scored ``batch_size`` at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import OutputAdapter
from ..errors import ArgumentError
from ._common import as_images, as_maps, rank_order, ranks_of, resolve_classes, score_in_chunks, trapezoid_auc
from .base import Metric

__all__ = [
    "BASELINES",
    "CurveResult",
    "gaussian_blur",
    "baseline_image",
    "perturbation_curve",
    "deletion",
    "insertion",
    "Deletion",
    "Insertion",
]

BASELINES = ("zero", "mean", "blur")


@dataclass
class CurveResult:
    """A perturbation curve per image and its area."""

    curve: torch.Tensor
    """``(N, K)`` score after each step (``K = steps + 1``, step 0 first)."""
    auc: torch.Tensor
    """``(N,)`` trapezoid area under ``curve`` over ``x`` in ``[0, 1]``."""
    fractions: torch.Tensor
    """``(K,)`` fraction of pixels removed (deletion) or inserted (insertion) at each step."""
    classes: torch.Tensor
    """``(N,)`` scored class of each image."""


def gaussian_blur(x: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, *spatial)`` (1-3 spatial axes) per channel, borders replicated."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ArgumentError(f"blur kernel_size must be a positive odd int; got {kernel_size}")
    if sigma <= 0:
        raise ArgumentError(f"blur sigma must be > 0; got {sigma}")
    r = kernel_size // 2
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    n, c, *spatial = x.shape
    k = len(spatial)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[k]
    y = F.pad(x.reshape(n * c, 1, *spatial), (r, r) * k, mode="replicate")
    for axis in range(k):  # one 1-D pass along each spatial axis
        shape = [1] * k
        shape[axis] = -1
        y = conv(y, g.reshape(1, 1, *shape))
    return y.reshape(n, c, *spatial)


def baseline_image(x: torch.Tensor, baseline: str | torch.Tensor = "zero", *, blur_kernel: int = 11, blur_sigma: float = 5.0) -> torch.Tensor:
    """The substrate that replaces (deletion) or precedes (insertion) the pixels: ``(N, C, H, W)``.

    ``baseline`` is ``"zero"``, ``"mean"``, ``"blur"`` or a tensor broadcastable to ``x``.
    """
    if isinstance(baseline, torch.Tensor):
        try:
            return baseline.to(device=x.device, dtype=x.dtype).expand_as(x)
        except RuntimeError:
            raise ArgumentError(
                f"a baseline tensor must broadcast to the images {tuple(x.shape)}; got {tuple(baseline.shape)}"
            ) from None
    if baseline == "zero":
        return torch.zeros_like(x)
    if baseline == "mean":
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=True).expand_as(x)
    if baseline == "blur":
        return gaussian_blur(x, blur_kernel, blur_sigma)
    raise ArgumentError(f"baseline must be one of {BASELINES} or a tensor; got {baseline!r}")


def perturbation_curve(
    model: nn.Module,
    input_tensor: torch.Tensor,
    cams: Any,
    targets: Any = None,
    *,
    mode: str = "deletion",
    steps: int = 50,
    baseline: str | torch.Tensor | None = None,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    score: str = "softmax",
    batch_size: int = 32,
    output_adapter: OutputAdapter | None = None,
    seed: int | None = 0,
    progress: Callable[[int], None] | None = None,
) -> CurveResult:
    """Deletion (``mode="deletion"``) or insertion curve of every image, batched.

    Args:
        model: a classifier; run in eval mode without autograd, its flags restored afterwards.
        input_tensor: ``(N, C, H, W)`` images as the model takes them -- or signals ``(N, C, L)`` /
            volumes ``(N, C, D, H, W)``: positions (samples, voxels) are deleted or inserted.
        cams: ``(N, *spatial)`` saliency maps (any real values; only their order matters).
        targets: class indices (or ``ClassifierOutputTarget``\\s); ``None``: top class on the image.
        steps: number of equal steps; the curve has ``steps + 1`` points.
        baseline: ``"zero"``/``"mean"``/``"blur"``/tensor; default ``"zero"`` for deletion and
            ``"blur"`` for insertion (the paper's choices).
        score: ``"softmax"`` (default), ``"logit"`` or ``"correct"`` (see ``_common.SCORES``).
        batch_size: perturbed images per forward pass.
        seed: seed of the random tie-breaking among equal saliency values (``None``: pixel order).
        progress: called with the number of images scored after each forward pass.
    """
    if mode not in ("deletion", "insertion"):
        raise ArgumentError(f"mode must be 'deletion' or 'insertion'; got {mode!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ArgumentError(f"steps must be a positive int; got {steps!r}")
    x = as_images(input_tensor, model, spatial=(1, 2, 3))
    maps = as_maps(cams, x)
    n, c, *spatial = x.shape
    hw = maps[0].numel()  # positions per image (pixels, samples or voxels)
    if baseline is None:
        baseline = "zero" if mode == "deletion" else "blur"
    base = baseline_image(x, baseline, blur_kernel=blur_kernel, blur_sigma=blur_sigma)
    classes, _ = resolve_classes(model, x, targets, batch_size=batch_size, output_adapter=output_adapter, score=score)
    ranks = ranks_of(rank_order(maps, descending=True, seed=seed))  # (N, HW): 0 = most salient
    k = steps + 1
    counts = torch.round(torch.arange(k, device=x.device, dtype=torch.float64) * hw / steps).long()
    flat_x = x.reshape(n, c, hw)
    flat_b = base.reshape(n, c, hw)
    deleting = mode == "deletion"

    def build(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img, step = idx // k, idx % k
        changed = (ranks[img] < counts[step][:, None])[:, None]  # (B, 1, HW)
        if deleting:
            out = torch.where(changed, flat_b[img], flat_x[img])
        else:
            out = torch.where(changed, flat_x[img], flat_b[img])
        return out.reshape(-1, c, *spatial), classes[img]

    scores = score_in_chunks(
        model, n * k, build, batch_size=batch_size, device=x.device,
        output_adapter=output_adapter, score=score, progress=progress,
    )
    curve = scores.reshape(n, k)
    fractions = counts.to(torch.float32) / hw
    return CurveResult(curve=curve, auc=trapezoid_auc(curve), fractions=fractions, classes=classes)


def deletion(model: nn.Module, input_tensor: torch.Tensor, cams: Any, targets: Any = None, **kwargs: Any) -> CurveResult:
    """Deletion curve and AUC (lower is better). Keyword arguments as :func:`perturbation_curve`."""
    return perturbation_curve(model, input_tensor, cams, targets, mode="deletion", **kwargs)


def insertion(model: nn.Module, input_tensor: torch.Tensor, cams: Any, targets: Any = None, **kwargs: Any) -> CurveResult:
    """Insertion curve and AUC (higher is better). Keyword arguments as :func:`perturbation_curve`."""
    return perturbation_curve(model, input_tensor, cams, targets, mode="insertion", **kwargs)


class _CurveMetric(Metric):
    mode = "deletion"

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__()
        self.model = model
        self.options = options

    def per_image(self, input_tensor: torch.Tensor, cams: Any, targets: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        res = perturbation_curve(self.model, input_tensor, cams, targets, mode=self.mode, **self.options)
        return res.auc, res.curve


class Deletion(_CurveMetric):
    """Mean deletion AUC over every batch seen (lower is better); ``.curves`` holds the curves.

    Options (``steps``, ``baseline``, ``score``, ``batch_size``, ...) as :func:`perturbation_curve`.
    """

    name = "deletion_auc"
    higher_is_better = False
    mode = "deletion"


class Insertion(_CurveMetric):
    """Mean insertion AUC over every batch seen (higher is better); ``.curves`` holds the curves."""

    name = "insertion_auc"
    higher_is_better = True
    mode = "insertion"
