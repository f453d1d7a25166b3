"""Tiny fixed-weight nets for the perturbation-method tests (ScoreCAM, AblationCAM)."""

from __future__ import annotations

import torch
from torch import nn


def _fill(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.7)


class PNet(nn.Module):
    """(N, 2, 6, 6) -> ``feat``: 3x3 conv, stride 2 -> (N, 4, 3, 3) -> ReLU -> linear head (5 classes).

    Channel 3 of ``feat`` is constant (zero weights, bias 0.5) and channel 2 all zeros, so the
    constant-channel rules of ScoreCAM are exercised.
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.feat = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(4 * 3 * 3, 5)
        _fill(self, seed)
        with torch.no_grad():
            self.feat.weight[2:] = 0.0
            self.feat.bias[2] = 0.0
            self.feat.bias[3] = 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.feat(x)).flatten(1))


class Block(nn.Module):
    """Residual block: ``relu(x + conv2(relu(conv1(x))))``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv1(x))
        out = self.conv2(out)
        out += x
        return self.relu(out)


class ResNetish(nn.Module):
    """stem -> blocks (Sequential of 3 residual blocks) -> pool -> fc; targets like ``blocks.1``."""

    def __init__(self, c: int = 6, classes: int = 5, seed: int = 0) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(Block(c), Block(c), Block(c))
        self.fc = nn.Linear(c, classes)
        _fill(self, seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.mul_(0.4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


class Branchy(ResNetish):
    """Like :class:`ResNetish`, but data-dependent control flow makes it untraceable by torch.fx."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.blocks(self.stem(x))
        if bool(x.sum() > -1e9):
            a = a * 1.0
        return self.fc(a.mean(dim=(2, 3)))


class BatchSized(ResNetish):
    """Traceable, but a value derived from the batch size crosses the target layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        a = self.blocks(self.stem(x))
        return self.fc(a.reshape(n, a.shape[1], -1).mean(dim=2))


class TokenNet(nn.Module):
    """ViT-like: conv patches -> tokens (class token first) -> ``mix`` (N, 17, 4) -> head on all tokens."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.cls = nn.Parameter(torch.zeros(1, 1, 4))
        self.mix = nn.Linear(4, 4)
        self.head = nn.Linear(17 * 4, 5)
        _fill(self, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)  # (N, 16, 4)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1)
        t = self.mix(t)
        return self.head(torch.relu(t).flatten(1))


def token_reshape(t: torch.Tensor) -> torch.Tensor:
    """(N, 1 + 16, C) -> (N, C, 4, 4), dropping the class token."""
    return t[:, 1:].transpose(1, 2).reshape(t.shape[0], t.shape[2], 4, 4)
