"""Helpers shared by the functional metrics and their stateful classes.

Everything here is batched and stays on the model's device: input checks, turning targets into
class indices, scoring many perturbed images in chunks of ``batch_size``, saliency rank orders
with reproducible tie-breaking, and the trapezoid area under a curve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..engine import OutputAdapter, forward_outputs, prepare_images
from ..errors import ArgumentError, InputShapeError, InputTypeError, ModelOutputError, TargetError
from ..hooks import eval_mode
from ..scoring import score_in_chunks as chunked

__all__ = [
    "SCORES",
    "as_images",
    "as_maps",
    "as_classes",
    "class_scores",
    "score_in_chunks",
    "rank_order",
    "ranks_of",
    "trapezoid_auc",
    "resolve_classes",
    "check_percentiles",
]

SCORES = ("softmax", "logit", "correct")
"""What a perturbation metric reads from the model's output for the target class:
``"softmax"`` the class probability (the papers' choice), ``"logit"`` the raw score,
``"correct"`` 1.0 when the class is the top prediction else 0.0 (accuracy, as in ROAD's plots)."""


def as_images(
    x: Any, model: nn.Module | None = None, name: str = "input_tensor", *, spatial: tuple[int, ...] = (2,), metric: str = ""
) -> torch.Tensor:
    """Validate a float ``(N, C, *spatial)`` batch (numpy accepted) and move it to the model's device
    and dtype. ``spatial`` lists the numbers of spatial axes the metric handles (images only by
    default; deletion/insertion also take signals and volumes)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    x = prepare_images(x, model, name)
    if x.dim() - 2 not in spatial:
        raise InputShapeError(
            f"{metric or 'this metric'} needs {name} as images (N, C, H, W); got shape {tuple(x.shape)} "
            f"({x.dim() - 2} spatial axes). For signals and volumes use camlens.metrics.deletion / insertion"
        )
    return x


def as_maps(cams: Any, like: torch.Tensor | None = None, name: str = "cams") -> torch.Tensor:
    """Saliency maps ``(N, H, W)`` (numpy or torch; ``(N, 1, H, W)`` accepted) as float tensors;
    with ``like`` of ``k`` spatial axes, maps ``(N, *spatial)`` (``(N, 1, *spatial)`` accepted).

    With ``like`` (an ``(N, C, *spatial)`` batch) the maps are checked against its batch size
    and spatial size and moved to its device.
    """
    if isinstance(cams, np.ndarray):
        cams = torch.from_numpy(np.ascontiguousarray(cams))
    if not isinstance(cams, torch.Tensor):
        raise InputTypeError(f"{name} must be a numpy array or tensor of shape (N, H, W); got {type(cams).__name__}")
    want = 3 if like is None else like.dim() - 1
    shape = "(N, H, W)" if want == 3 else f"(N, *spatial) with {want - 1} spatial axes"
    if cams.dim() == want + 1 and cams.shape[1] == 1:
        cams = cams[:, 0]
    if cams.dim() == want - 1:
        cams = cams[None]
    if cams.dim() != want:
        raise InputShapeError(f"{name} must have shape {shape}; got {tuple(cams.shape)}")
    if cams.shape[0] == 0 or cams.numel() == 0:
        raise InputShapeError(f"{name} is empty: shape {tuple(cams.shape)}")
    cams = cams.detach().float()
    if like is not None:
        n, spatial = like.shape[0], tuple(like.shape[2:])
        if cams.shape[0] != n or tuple(cams.shape[1:]) != spatial:
            raise InputShapeError(
                f"{name} have shape {tuple(cams.shape)} but the images are {tuple(like.shape)}; expected "
                f"{(n, *spatial)}: one map per image at the input's resolution (upsample with "
                "camlens.postprocess.upsample)"
            )
        cams = cams.to(like.device)
    return torch.nan_to_num(cams, nan=0.0, posinf=0.0, neginf=0.0)


def as_classes(targets: Any, n: int, device: torch.device) -> torch.Tensor | None:
    """Target classes ``(N,)`` long, or ``None`` (= each image's top class on the clean image).

    Accepts ``None``, an int (same class for all), a sequence of ints, a tensor/array of ints, or
    targets with a ``category`` attribute (e.g. :class:`camlens.targets.ClassifierOutputTarget`).
    """
    if targets is None:
        return None
    if isinstance(targets, (int, np.integer)) and not isinstance(targets, bool):
        return torch.full((n,), int(targets), dtype=torch.long, device=device)
    if isinstance(targets, np.ndarray):
        targets = torch.from_numpy(targets)
    if isinstance(targets, torch.Tensor):
        if targets.is_floating_point() or targets.dim() > 1:
            raise TargetError(f"targets must be integer class indices of shape (N,); got {targets.dtype} {tuple(targets.shape)}")
        out = targets.reshape(-1).to(device=device, dtype=torch.long)
    elif isinstance(targets, Sequence) and not isinstance(targets, str):
        cats = []
        for t in targets:
            if hasattr(t, "category"):
                t = t.category
            if isinstance(t, torch.Tensor) and t.numel() == 1:
                t = int(t.item())
            if not isinstance(t, (int, np.integer)) or isinstance(t, bool):
                raise TargetError(
                    "metrics score a class of a classifier: each target must be an int or a "
                    f"ClassifierOutputTarget; got {type(t).__name__}"
                )
            cats.append(int(t))
        out = torch.tensor(cats, dtype=torch.long, device=device)
    else:
        raise TargetError(f"targets must be None, an int or a list of ints; got {type(targets).__name__}")
    if out.numel() != n:
        raise TargetError(f"got {out.numel()} targets for a batch of {n} images; pass one class per image")
    return out


def class_scores(outputs: torch.Tensor, classes: torch.Tensor, score: str = "softmax") -> torch.Tensor:
    """``(B,)`` scores of ``classes`` in ``(B, K)`` outputs, read as ``score`` (see :data:`SCORES`)."""
    if outputs.dim() != 2:
        raise ModelOutputError(
            f"metrics need a classifier output of shape (N, num_classes); got {tuple(outputs.shape)}; "
            "pass an output_adapter that returns class scores"
        )
    num_classes = outputs.shape[1]
    if bool(((classes < 0) | (classes >= num_classes)).any()):
        bad = classes[(classes < 0) | (classes >= num_classes)][0].item()
        raise TargetError(f"class index {bad} is out of range for a model with {num_classes} outputs")
    idx = classes[:, None]
    if score == "softmax":
        return torch.softmax(outputs.float(), dim=1).gather(1, idx)[:, 0]
    if score == "logit":
        return outputs.float().gather(1, idx)[:, 0]
    if score == "correct":
        return (outputs.argmax(dim=1) == classes).float()
    raise ArgumentError(f"score must be one of {SCORES}; got {score!r}")


def _check_score(score: str) -> None:
    if score not in SCORES:
        raise ArgumentError(f"score must be one of {SCORES}; got {score!r}")


def forward(model: nn.Module, x: torch.Tensor, adapter: OutputAdapter | None) -> torch.Tensor:
    """The adapted output of ``model`` for ``x`` (no hooks, no autograd; caller holds eval mode)."""
    return forward_outputs(model, x, adapter)


def resolve_classes(
    model: nn.Module,
    x: torch.Tensor,
    targets: Any,
    *,
    batch_size: int,
    output_adapter: OutputAdapter | None = None,
    score: str = "softmax",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Classes ``(N,)`` (``targets`` or each image's top class) and their scores on the clean ``x``."""
    _check_score(score)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(f"batch_size must be a positive int; got {batch_size!r}")
    classes = as_classes(targets, x.shape[0], x.device)
    outs = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            outs.append(forward(model, x[start : start + batch_size], output_adapter))
    outputs = torch.cat(outs)
    if classes is None:
        if outputs.dim() != 2:
            raise ModelOutputError(
                f"metrics need a classifier output of shape (N, num_classes); got {tuple(outputs.shape)}"
            )
        classes = outputs.argmax(dim=1)
    return classes, class_scores(outputs, classes, score)


def score_in_chunks(
    model: nn.Module,
    total: int,
    build: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    *,
    batch_size: int,
    device: torch.device,
    output_adapter: OutputAdapter | None = None,
    score: str = "softmax",
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Score ``total`` perturbed images, ``batch_size`` at a time, without a per-image loop.

    ``build(flat_index)`` receives a ``(B,)`` long tensor of item indices and returns the
    ``(B, C, H, W)`` perturbed images and their ``(B,)`` target classes. Returns ``(total,)``.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(f"batch_size must be a positive int; got {batch_size!r}")
    _check_score(score)
    chunk: dict[str, torch.Tensor] = {}

    def inputs(idx: torch.Tensor) -> torch.Tensor:
        images, chunk["classes"] = build(idx)
        return images

    with eval_mode(model):
        return chunked(
            model,
            total,
            lambda idx, outputs: class_scores(outputs, chunk["classes"], score),
            inputs=inputs,
            batch_size=batch_size,
            device=device,
            output_adapter=output_adapter,
            progress=progress if progress is not None else False,
        )


def rank_order(maps: torch.Tensor, descending: bool = True, seed: int | None = 0) -> torch.Tensor:
    """Pixel indices ``(N, L)`` of flattened ``maps`` sorted by saliency (most salient first when
    ``descending``). Ties are broken by a random permutation drawn from ``seed`` (``None``: by pixel
    index), so a flat region is removed in random order, not row by row from the top."""
    flat = maps.reshape(maps.shape[0], -1)
    if seed is None:
        return torch.sort(flat, dim=1, descending=descending, stable=True).indices
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    keys = torch.rand(flat.shape, generator=gen).to(flat.device)
    perm = keys.argsort(dim=1)
    shuffled = flat.gather(1, perm)
    order = torch.sort(shuffled, dim=1, descending=descending, stable=True).indices
    return perm.gather(1, order)


def ranks_of(order: torch.Tensor) -> torch.Tensor:
    """Inverse permutation: ``ranks[n, order[n, k]] = k``."""
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ranks


def trapezoid_auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under ``(N, K)`` curves sampled at ``K`` equally spaced x in ``[0, 1]`` (trapezoid rule)."""
    k = curve.shape[-1]
    if k < 2:
        raise ArgumentError(f"a curve needs at least 2 points for an area; got {k}")
    return (curve[..., 1:] + curve[..., :-1]).sum(dim=-1) / (2 * (k - 1))


def check_percentiles(values: Sequence[float] | float, name: str = "percentiles") -> list[float]:
    """Validate percentiles in ``(0, 100)``; returns them as fractions in ``(0, 1)``."""
    if isinstance(values, (int, float)):
        values = [values]
    out = []
    for v in values:
        f = float(v)
        if not 0.0 < f < 100.0:
            raise ArgumentError(f"{name} are percent values in (0, 100), e.g. [10, 20, ..., 90]; got {v!r}")
        out.append(f / 100.0)
    if not out:
        raise ArgumentError(f"{name} must not be empty")
    return out
