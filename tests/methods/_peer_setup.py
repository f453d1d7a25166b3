"""Shared setup of the peer-agreement tests of the single-pass methods: a small random resnet18."""

from __future__ import annotations

import numpy as np
import torch
import torchvision


def resnet_and_batch() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=20).eval()
    x = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    return model, x


def correlations(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Pearson correlation of each image's map in ``a`` with the same image's map in ``b``."""
    return [float(np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1]) for i in range(a.shape[0])]
