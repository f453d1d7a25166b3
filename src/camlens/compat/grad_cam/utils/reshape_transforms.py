"""``pytorch_grad_cam.utils.reshape_transforms``.

``vit_reshape_transform`` and ``swinT_reshape_transform`` take pytorch-grad-cam's arguments but
infer the grid when ``height``/``width`` are left out (pytorch-grad-cam hard-codes 14x14 and 7x7,
which fails on other input sizes); with the same grid the result is identical.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from camlens.errors import LayerOutputError
from camlens.reshape import FPNReshape, swin_reshape_transform, vit_reshape_transform as _vit

__all__ = ["fasterrcnn_reshape_transform", "swinT_reshape_transform", "vit_reshape_transform"]


def vit_reshape_transform(tensor: torch.Tensor, height: int | None = None, width: int | None = None) -> torch.Tensor:
    """ViT tokens ``(N, 1 + h*w, C)`` -> ``(N, C, h, w)``, dropping the class token."""
    if height is None and width is None:
        return _vit(tensor)
    return _vit(tensor, height, width, num_prefix_tokens=tensor.shape[1] - int(height) * int(width))  # type: ignore[arg-type]


def swinT_reshape_transform(tensor: torch.Tensor, height: int | None = None, width: int | None = None) -> torch.Tensor:
    """Swin tokens ``(N, h*w, C)`` or ``(N, h, w, C)`` -> ``(N, C, h, w)``."""
    return swin_reshape_transform(tensor, height, width)


def fasterrcnn_reshape_transform(x: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """A feature pyramid (torchvision detectors' ``backbone`` output: a dict of ``(N, C, h_l, w_l)``
    levels with a ``"pool"`` level) -> ``|level|`` resized to the ``"pool"`` grid (bilinear) and
    concatenated along channels: :class:`camlens.reshape.FPNReshape` with ``size="pool",
    absolute=True`` (camlens's own default keeps the signs and uses the finest grid)."""
    if not isinstance(x, Mapping) or "pool" not in x:
        raise LayerOutputError(
            f"fasterrcnn_reshape_transform expects the FPN output dict with a 'pool' level; got {type(x).__name__}"
        )
    return _POOL_GRID_ABS(x)


_POOL_GRID_ABS = FPNReshape(size="pool", absolute=True)
