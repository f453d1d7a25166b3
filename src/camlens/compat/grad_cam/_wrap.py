"""How a camlens method class becomes a pytorch-grad-cam 1.5 class: the same constructor order
``(model, target_layers, reshape_transform=None, ...)`` and the same call
``cam(input_tensor, targets=None, aug_smooth=False, eigen_smooth=False) -> (N, H, W) float32``.

Everything else (the maps, their speed, the errors) is camlens's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

import camlens
from camlens.errors import DependencyError, MethodNotFoundError

#: pytorch-grad-cam constructor keywords that only tune its own machinery; camlens accepts and
#: ignores them (it never copies activations to the host and needs no gradient switch).
_PEER_ONLY = ("compute_input_gradient", "uses_gradients", "detach", "tta_transforms")


class CompatCall:
    """Mixin giving a camlens method pytorch-grad-cam's constructor order and ``__call__``."""

    def __init__(self, model: torch.nn.Module, target_layers: Any = None, reshape_transform: Any = None, **kwargs: Any):
        for key in _PEER_ONLY:
            kwargs.pop(key, None)
        super().__init__(model, target_layers=target_layers, reshape_transform=reshape_transform, **kwargs)  # type: ignore[call-arg]

    def __call__(  # type: ignore[override]
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Any] | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """``(N, H, W)`` float32 maps in ``[0, 1]``; ``targets=None`` explains each image's top class."""
        exp = self.explain(input_tensor, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)  # type: ignore[attr-defined]
        return exp.numpy()


def compat_class(camlens_name: str, peer_name: str | None = None) -> type:
    """The pytorch-grad-cam-shaped subclass of the camlens method registered as ``camlens_name``."""
    try:
        base = camlens.get_method(camlens_name)
    except MethodNotFoundError as exc:  # pragma: no cover - a method camlens does not ship
        raise DependencyError(f"camlens has no method {camlens_name!r} behind pytorch-grad-cam's {peer_name}") from exc
    name = peer_name or base.__name__
    cls = type(name, (CompatCall, base), {"__doc__": f"pytorch-grad-cam's ``{name}`` on camlens's :class:`{base.__module__}.{base.__name__}`.\n\n{base.__doc__ or ''}"})
    cls.__module__ = __name__.rsplit(".", 1)[0]
    return cls
