"""Tiny fixed-weight models shared by the tests (imported as ``from testnets import ...``)."""

from __future__ import annotations

import torch
from torch import nn


class SquareHead(nn.Module):
    """``y_c = sum_kij W[c, kij] * A_kij**2 + b_c``: gradients ``2 W A`` vary per position."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, in_features))
        self.bias = nn.Parameter(torch.randn(num_classes))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return (a * a).flatten(1) @ self.weight.t() + self.bias


class TinyNet(nn.Module):
    """Input (N, 2, 4, 4) -> 1x1 conv (target layer ``feat``, 3 channels) -> square head (5 classes)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.feat = nn.Conv2d(2, 3, kernel_size=1)
        self.head = SquareHead(3 * 4 * 4, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feat(x))


class SmallCNN(nn.Module):
    """A small CNN with BN, dropout, in-place ReLU after the target block and a pooled linear head."""

    def __init__(self, num_classes: int = 6, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.block = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16))
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, num_classes)
        with torch.no_grad():  # non-trivial BN statistics
            for bn in (self.stem[1], self.block[1]):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.block(self.stem(x)))
        return self.fc(self.drop(a.mean(dim=(2, 3))))


def hooks_of(model: nn.Module) -> list[int]:
    """Number of hooks of each kind on every module (for 'nothing left behind' checks)."""
    counts = []
    for m in model.modules():
        counts += [
            len(m._forward_hooks),
            len(m._forward_pre_hooks),
            len(m._backward_hooks),
            len(getattr(m, "_backward_pre_hooks", {})),
        ]
    return counts


def camlens_notes(exc: BaseException) -> list[str]:
    """camlens's context lines on a model's exception: its notes (Python 3.11+) or, on 3.10 where
    camlens appends them to the message, the message's lines starting with ``camlens:``."""
    lines = list(getattr(exc, "__notes__", [])) or str(exc).splitlines()
    return [line for line in lines if line.startswith("camlens:")]
