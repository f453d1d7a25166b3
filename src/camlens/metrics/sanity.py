"""Sanity check: cascading model-parameter randomisation.

Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim, "Sanity Checks for Saliency Maps", NeurIPS
2018, Sec. 3.1. The layers of a *copy* of the model are re-initialised one after another, from the
output down to the input; after each step the explanation is recomputed on the partly random copy
and compared with the trained model's map by the Spearman rank correlation

    rho_i = corr(rank(L_i^trained), rank(L_i^randomised))       (ties get their average rank).

A method that explains the *model* must lose its similarity quickly: **lower is better** (a map
that stays the same under randomisation describes the image, not the network, like an edge
detector). The user's model is never modified: the cascade runs on ``copy.deepcopy(model)``.

Re-initialisation: every parameter tensor of the layer is redrawn from ``N(0, sigma^2)``, where
``sigma`` is that tensor's own standard deviation (1e-2 if it is constant), from a seeded generator;
buffers (BatchNorm running statistics) are kept. Targets stay those of the trained model.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ArgumentError, InputShapeError
from ..hooks import LayerSpec, resolve_layers
from ..registry import get_method
from ..targets import ClassifierOutputTarget
from ._common import as_classes, as_images
from .base import Metric

__all__ = ["average_ranks", "spearman", "SanityResult", "cascading_randomisation", "ModelRandomisation"]


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks ``0..L-1`` of each row of ``(N, L)``, tied values sharing their average rank."""
    n, length = values.shape
    sorted_vals, order = values.sort(dim=1, stable=True)
    new_group = torch.ones_like(sorted_vals, dtype=torch.bool)
    new_group[:, 1:] = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    group = new_group.long().cumsum(dim=1) - 1  # (N, L) group id within the row
    flat_group = group + torch.arange(n, device=values.device)[:, None] * length
    pos = torch.arange(length, device=values.device, dtype=torch.float64).expand(n, length)
    mean_pos = torch.zeros(n * length, dtype=torch.float64, device=values.device)
    mean_pos.scatter_reduce_(0, flat_group.reshape(-1), pos.reshape(-1), reduce="mean", include_self=False)
    ranks_sorted = mean_pos[flat_group]
    ranks = torch.empty_like(ranks_sorted)
    ranks.scatter_(1, order, ranks_sorted)
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each pair of rows (maps are flattened): ``(N,)``.

    Pearson correlation of the average ranks; NaN when a map is constant.
    """
    if a.shape != b.shape:
        raise InputShapeError(f"spearman needs equal shapes; got {tuple(a.shape)} and {tuple(b.shape)}")
    ra = average_ranks(a.reshape(a.shape[0], -1))
    rb = average_ranks(b.reshape(b.shape[0], -1))
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    den = (ra.pow(2).sum(dim=1) * rb.pow(2).sum(dim=1)).sqrt()
    num = (ra * rb).sum(dim=1)
    out = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.full_like(den, float("nan")))
    return out.float()


@dataclass
class SanityResult:
    """Rank correlation between trained and progressively randomised maps."""

    layers: list[str]
    """Module randomised at each step (cumulatively, output side first)."""
    correlations: torch.Tensor
    """``(steps, N)``: Spearman correlation after randomising ``layers[:k+1]``."""
    maps: torch.Tensor
    """``(N, H, W)`` maps of the trained model."""

    @property
    def mean(self) -> torch.Tensor:
        """Mean correlation over images at each step ``(steps,)``."""
        return torch.nanmean(self.correlations, dim=1)


def _cascade(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    if layers is not None:
        names = [n for n, _ in resolve_layers(model, list(layers))]
        return names
    owners = [name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    if not owners:
        raise ArgumentError(f"{type(model).__name__} has no parameters to randomise")
    return owners[::-1]


def _randomise(module: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for p in module.parameters():
            sigma = float(p.float().std()) if p.numel() > 1 else 0.0
            if not sigma > 0:
                sigma = 1e-2
            fresh = torch.randn(p.shape, generator=gen, dtype=torch.float32) * sigma
            p.copy_(fresh.to(device=p.device, dtype=p.dtype))


def cascading_randomisation(
    model: nn.Module,
    method: str | type,
    input_tensor: torch.Tensor,
    targets: Any = None,
    *,
    target_layers: LayerSpec | Sequence[LayerSpec],
    layers: Sequence[str] | None = None,
    method_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> SanityResult:
    """Cascading randomisation of a deep copy of ``model``; the correlation curve per image.

    Args:
        model: the trained model (left untouched).
        method: a CAM class (e.g. :class:`camlens.GradCAM`) or registered name (``"gradcam"``).
        input_tensor: ``(N, C, H, W)`` images.
        targets: class indices (or ``ClassifierOutputTarget``\\s); ``None``: the trained model's top class.
        target_layers: the CAM's target layers (modules of ``model`` or dotted names).
        layers: dotted names of the modules to randomise, in order (output side first); default:
            every module owning parameters, in reverse registration order.
        method_kwargs: extra keyword arguments for the CAM class.
        seed: seed of the re-initialisation.
    """
    cls = get_method(method) if isinstance(method, str) else method
    x = as_images(input_tensor, model, metric="camlens.metrics.cascading_randomisation")
    layer_names = [n for n, _ in resolve_layers(model, target_layers)]
    kwargs = dict(method_kwargs or {})
    kwargs.setdefault("progress", False)
    classes = as_classes(targets, x.shape[0], x.device)
    cam = cls(model, target_layers=layer_names, **kwargs)
    if classes is None:
        trained = cam.explain(x)
        target_fns = trained.targets
    else:
        target_fns = [ClassifierOutputTarget(int(c)) for c in classes.tolist()]
        trained = cam.explain(x, target_fns)
    cascade = _cascade(model, layers)
    twin = copy.deepcopy(model)
    modules = dict(twin.named_modules())
    gen = torch.Generator().manual_seed(int(seed))
    rhos = []
    for name in cascade:
        _randomise(modules[name], gen)
        maps = cls(twin, target_layers=layer_names, **kwargs).explain(x, target_fns).cam
        rhos.append(spearman(trained.cam, maps))
    return SanityResult(layers=list(cascade), correlations=torch.stack(rhos), maps=trained.cam)


class ModelRandomisation(Metric):
    """Mean Spearman correlation after the *full* cascade, over every batch seen (lower is better);
    ``.curves`` holds each image's correlation after every step ``(N, steps)``."""

    name = "model_randomisation"
    higher_is_better = False

    def __init__(self, model: nn.Module, method: str | type, *, target_layers: Any, **options: Any) -> None:
        super().__init__()
        self.model = model
        self.method = method
        self.target_layers = target_layers
        self.options = options

    def per_image(self, input_tensor: torch.Tensor, targets: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        res = cascading_randomisation(
            self.model, self.method, input_tensor, targets, target_layers=self.target_layers, **self.options
        )
        return res.correlations[-1], res.correlations.t()
