"""Signals, images and volumes: every registered method on a 1-D, a 2-D and a 3-D toy net.

Inputs are ``(N, C, *spatial)`` with 1, 2 or 3 spatial axes; maps are ``(N, *spatial)``, raw layer
maps ``(N, *layer_spatial)``. Methods that cannot apply to a dimensionality say so with a clear error
(``nd`` entries in tests/contract_setup.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camlens import available_methods, get_method
from camlens.errors import InputShapeError
from camlens.targets import ClassifierOutputTarget

from contract_setup import settings

METHODS = available_methods()
SIZES = {1: (32,), 2: (16, 16), 3: (8, 8, 8)}
CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class NDNet(nn.Module):
    """SmallCNN for ``k`` spatial axes: conv-BN-ReLU stem, strided conv-BN block, in-place ReLU,
    global mean, linear head (6 classes)."""

    def __init__(self, k: int, num_classes: int = 6, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(CONV[k](3, 8, 3, padding=1), BN[k](8), nn.ReLU(inplace=True))
        self.block = nn.Sequential(CONV[k](8, 16, 3, stride=2, padding=1), BN[k](16))
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(16, num_classes)
        with torch.no_grad():
            for bn in (self.stem[1], self.block[1]):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.block(self.stem(x)))
        return self.fc(a.flatten(2).mean(dim=2))


def nd_settings(name: str, k: int) -> dict:
    """``contract_setup`` entry ``nd``: ``{"unsupported": {k: error regex}, "kwargs": {...}}``."""
    return settings(name).get("nd", {})


def make(name: str, model: nn.Module, **kw):
    conf = settings(name)
    kwargs = {**conf.get("kwargs", {}), **settings(name).get("nd", {}).get("kwargs", {}), **kw}
    return get_method(name)(model=model, target_layers=[model.block], progress=False, **kwargs)


@pytest.fixture(scope="module")
def nets():
    return {k: NDNet(k).eval() for k in SIZES}


def batch(k: int, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, *SIZES[k], generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_any_dimensionality(method, k, nets):
    model, x = nets[k], batch(k)
    unsupported = nd_settings(method, k).get("unsupported", {}).get(k)
    if unsupported:
        with pytest.raises((InputShapeError, ValueError, TypeError), match=unsupported):
            make(method, model)(input_tensor=x)
        return
    cam = make(method, model)
    out = cam(input_tensor=x, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(4)])
    assert out.shape == (2, *SIZES[k]) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert out.reshape(2, -1).max(axis=1).max() == pytest.approx(1.0)  # normalised, not all blank
    assert all(abs(m.max() - 1) < 1e-5 or m.max() == 0 for m in out)  # each normalised, or blank (ReLU)
    exp = cam.explain(x, [ClassifierOutputTarget(1), ClassifierOutputTarget(4)])
    assert tuple(exp.cam.shape) == (2, *SIZES[k])
    if method != "sess":  # SESS fuses its raw map at the input's resolution
        assert tuple(exp.layer_maps[0].shape) == (2, *(s // 2 for s in SIZES[k]))
    if not get_method(method).multi_pass and method != "dff":
        one = cam(input_tensor=x[1:], targets=[ClassifierOutputTarget(4)])
        np.testing.assert_allclose(out[1:], one, atol=1e-5)
