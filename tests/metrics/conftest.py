"""Tiny fixed-weight models whose right answer is known, for the metric tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class RegionNet(nn.Module):
    """Two classes on ``(N, C, H, W)``: logit 0 = ``gain * (mean over channels of the pixels inside
    the region) summed - offset``, logit 1 = 0. Class 0's evidence lives only in ``region``
    (a boolean ``(H, W)`` mask), so the perfect explanation is the region itself."""

    def __init__(self, region: torch.Tensor, gain: float = 0.2, offset: float = 2.0) -> None:
        super().__init__()
        self.register_buffer("region", region.float())
        self.weight = nn.Parameter(torch.tensor(gain))
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = (x.mean(dim=1) * self.region).flatten(1).sum(dim=1)
        logit = self.weight * inside - self.offset
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


def square_region(h: int, w: int, top: int, left: int, size: int) -> torch.Tensor:
    r = torch.zeros(h, w, dtype=torch.bool)
    r[top : top + size, left : left + size] = True
    return r


@pytest.fixture
def region_setup():
    """A 12x12 RegionNet with a 4x4 region, positive images, and perfect / inverted / random maps."""
    torch.manual_seed(0)
    region = square_region(12, 12, 3, 5, 4)
    model = RegionNet(region)
    x = 0.5 + torch.rand(6, 3, 12, 12)  # positive pixels: deleting region pixels lowers class 0
    jitter = 0.01 * torch.rand(6, 12, 12)
    perfect = region.float().expand(6, 12, 12) * 0.9 + jitter
    inverted = 1.0 - perfect
    random = torch.rand(6, 12, 12, generator=torch.Generator().manual_seed(1))
    return model, x, perfect, inverted, random
