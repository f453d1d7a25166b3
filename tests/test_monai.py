"""MONAI 3-D networks (real model classes, random weights): automatic layer, maps (N, D, H, W).

Slow-marked (importing MONAI takes ~10 s); skipped when MONAI is not installed (a test extra)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from camlens import GradCAM, ScoreCAM

pytestmark = pytest.mark.slow
nets = pytest.importorskip("monai.networks.nets")


def _build(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return fn().eval()


def _check(maps: np.ndarray, shape: tuple[int, ...]) -> None:
    assert maps.shape == shape and np.isfinite(maps).all()
    assert maps.std() > 0.01 and maps.max() == pytest.approx(1.0)


def test_monai_densenet121_3d():
    model = _build(lambda: nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2))
    x = torch.randn(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(0))  # last map 2x2x2
    cam = GradCAM(model)
    assert cam.target_layer_names == ["features.norm5"]
    _check(cam(x), (1, 64, 64, 64))


def test_monai_resnet10_3d_gradient_and_score():
    model = _build(lambda: nets.resnet10(spatial_dims=3, n_input_channels=1, num_classes=2))
    x = torch.randn(2, 1, 32, 32, 32, generator=torch.Generator().manual_seed(1))
    cam = GradCAM(model)
    assert cam.target_layer_names == ["layer4.0"]  # the ResNet family: the last residual block
    _check(cam(x), (2, 32, 32, 32))
    _check(ScoreCAM(model, top_k=3, progress=False)(x), (2, 32, 32, 32))
