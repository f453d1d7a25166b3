"""Trivial maps every method should beat: the image-centre Gaussian (and a seeded random map).

Objects in photo datasets (ImageNet above all) are often large and centred, so a map that only
points at the centre already scores well on the pointing game. Benchmarks report it beside the
methods (``camlens evaluate`` does) so users see whether a method adds anything.
"""

from __future__ import annotations

import torch

from ..errors import ArgumentError

__all__ = ["center_baseline", "random_baseline"]


def center_baseline(
    n: int, size: tuple[int, int], *, sigma: float = 0.25, device: torch.device | str | None = None
) -> torch.Tensor:
    """``(n, H, W)`` centred Gaussian maps in ``[0, 1]`` (peak 1 at the image centre).

    ``L(r, c) = exp(-((r - r0)^2 / (2 (sigma H)^2) + (c - c0)^2 / (2 (sigma W)^2)))`` with
    ``(r0, c0) = ((H - 1) / 2, (W - 1) / 2)``; ``sigma`` is a fraction of the image side.
    """
    if sigma <= 0:
        raise ArgumentError(f"sigma must be > 0 (a fraction of the image side); got {sigma}")
    h, w = int(size[0]), int(size[1])
    r = (torch.arange(h, dtype=torch.float32, device=device) - (h - 1) / 2) / (sigma * h)
    c = (torch.arange(w, dtype=torch.float32, device=device) - (w - 1) / 2) / (sigma * w)
    g = torch.exp(-0.5 * (r[:, None] ** 2 + c[None, :] ** 2))
    g = g / g.max()
    return g.expand(n, h, w).clone()


def random_baseline(n: int, size: tuple[int, int], *, seed: int = 0, device: torch.device | str | None = None) -> torch.Tensor:
    """``(n, H, W)`` i.i.d. uniform maps in ``[0, 1)`` from ``seed`` (a chance-level explanation)."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.rand((n, int(size[0]), int(size[1])), generator=gen).to(device or "cpu")
