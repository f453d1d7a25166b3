"""``pytorch_grad_cam.ablation_cam``."""

from __future__ import annotations

from typing import Any

import torch

from camlens.errors import ArgumentError
from ._wrap import compat_class
from .ablation_layer import AblationLayer

_Base = compat_class("ablationcam", "AblationCAM")


class AblationCAM(_Base):  # type: ignore[misc, valid-type]
    """pytorch-grad-cam's ``AblationCAM(model, target_layers, reshape_transform=None,
    ablation_layer=AblationLayer(), batch_size=32, ratio_channels_to_ablate=1.0)`` on camlens.

    Differences, on purpose: every channel is ablated exactly (camlens re-runs only the network's
    tail, or uses the closed form, so ``ratio_channels_to_ablate`` below 1 is not needed and is
    refused); the ablated channel is set to 0 as in the paper (pytorch-grad-cam uses
    ``min(activations) - 1e7`` when the activations are not non-negative).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        target_layers: Any = None,
        reshape_transform: Any = None,
        ablation_layer: torch.nn.Module | None = None,
        batch_size: int = 32,
        ratio_channels_to_ablate: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if ablation_layer is not None and not isinstance(ablation_layer, AblationLayer):
            raise ArgumentError(
                f"ablation_layer must be one of camlens.compat.grad_cam.ablation_layer's classes; got "
                f"{type(ablation_layer).__name__}: camlens ablates through a hook, custom ablation modules are not run"
            )
        if float(ratio_channels_to_ablate) != 1.0:
            raise ArgumentError(
                f"ratio_channels_to_ablate={ratio_channels_to_ablate}: camlens ablates every channel exactly "
                "(it re-runs only the network's tail, so the shortcut is not needed); drop the argument"
            )
        super().__init__(model, target_layers, reshape_transform, batch_size=batch_size, **kwargs)
