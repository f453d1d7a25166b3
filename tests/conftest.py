"""Shared fixtures: tiny fixed-weight models whose CAMs can be computed by hand (see testnets.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from testnets import SmallCNN, TinyNet  # noqa: E402



@pytest.fixture
def tiny() -> TinyNet:
    return TinyNet().eval()


@pytest.fixture
def small_cnn() -> SmallCNN:
    return SmallCNN().eval()


@pytest.fixture
def tiny_input() -> torch.Tensor:
    return torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def image_batch() -> torch.Tensor:
    return torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
