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


# ---------------------------------------------------------------- models with several inputs
class ImageAndMeta(nn.Module):
    """``fc(pool(features(x))) + scale * meta @ W``: an image plus per-image metadata and a flag."""

    def __init__(self) -> None:
        super().__init__()
        self.net = NDNet(2, seed=3)
        self.meta = nn.Linear(5, 6, bias=False)

    def forward(self, x: torch.Tensor, meta: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
        assert meta.shape[0] == x.shape[0]  # the extra input is batched along with the image
        # metadata also reweights the first 5 feature channels
        gate = torch.cat([torch.sigmoid(meta), meta.new_ones(meta.shape[0], 3)], dim=1)[:, :, None, None]
        a = self.net.act(self.net.block(self.net.stem(x) * gate))
        return self.net.fc(a.flatten(2).mean(dim=2)) + scale * self.meta(meta)

    @property
    def block(self) -> nn.Module:
        return self.net.block


class Bound(nn.Module):
    """``model(x, meta, scale=...)`` with ``meta`` fixed: the one-input reference."""

    def __init__(self, model: nn.Module, meta: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.model, self.m, self.scale = model, meta, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.m.expand(x.shape[0], -1), scale=self.scale)


@pytest.mark.filterwarnings("ignore:AblationCAM cannot run only the layers after")  # the reference Bound
@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("legrad", "sess")])
def test_extra_inputs_go_with_their_image(method):
    """Every copy the method runs (masked, ablated, noisy, augmented) gets its own image's metadata:
    the batch with forward_args equals each image explained alone with its metadata bound."""
    model = ImageAndMeta().eval()
    x = batch(2, n=2, seed=1)
    meta = torch.randn(2, 5, generator=torch.Generator().manual_seed(2)) * 3
    targets = [ClassifierOutputTarget(1), ClassifierOutputTarget(4)]
    smooth = {"aug_smooth": True} if not get_method(method).multi_pass and method != "dff" else {}
    got = make(method, model)(x, targets=targets, forward_args=(meta,), forward_kwargs={"scale": 2.0}, **smooth)
    if method == "dff":  # factorises the whole batch jointly: compare with the whole batch bound
        cam = get_method(method)(model=Bound(model, meta, 2.0).eval(), target_layers=[model.block], progress=False)
        np.testing.assert_allclose(got, cam(x, targets=targets), atol=2e-5)
    for i in range(2 if method != "dff" else 0):
        bound = Bound(model, meta[i : i + 1], 2.0).eval()
        cam = get_method(method)(model=bound, target_layers=[model.block], progress=False,
                                 **{**settings(method).get("kwargs", {})})  # fmt: skip
        want = cam(x[i : i + 1], targets=[targets[i]], **smooth)
        np.testing.assert_allclose(got[i : i + 1], want, atol=2e-5, err_msg=f"{method} image {i}")
    # the metadata matters: without it (zeros) the maps differ
    other = make(method, model)(x, targets=targets, forward_args=(torch.zeros_like(meta),), forward_kwargs={"scale": 2.0}, **smooth)
    assert not np.allclose(got, other, atol=1e-4)


class PixelValuesModel(nn.Module):
    """A HuggingFace-style model: ``model(pixel_values=..., output_hidden_states=...)`` returning an
    object with ``.logits``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = NDNet(3, seed=4)

    def forward(self, *, pixel_values: torch.Tensor, output_hidden_states: bool = False):
        assert output_hidden_states is False
        return type("Out", (), {"logits": self.net(pixel_values)})()


def test_input_name_passes_the_image_by_keyword():
    model = PixelValuesModel().eval()
    x = batch(3, n=2)
    got = make("gradcam", model.net)(x, targets=[ClassifierOutputTarget(2)] * 2)
    cam = get_method("gradcam")(model, target_layers=["net.block"], progress=False)
    out = cam(x, targets=[ClassifierOutputTarget(2)] * 2, input_name="pixel_values",
              forward_kwargs={"output_hidden_states": False})  # fmt: skip
    np.testing.assert_allclose(out, got, atol=1e-6)
    sc = get_method("scorecam")(model, target_layers=["net.block"], progress=False, top_k=4, batch_size=3)
    ref = get_method("scorecam")(model.net, target_layers=["block"], progress=False, top_k=4, batch_size=3)
    np.testing.assert_allclose(sc(x, input_name="pixel_values"), ref(x), atol=1e-6)


def test_extra_input_errors():
    model = ImageAndMeta().eval()
    cam = make("gradcam", model)
    x = batch(2, n=2)
    with pytest.raises(TypeError, match=r"forward_args must be a tuple.*forward_args=\(value,\)"):
        cam(x, forward_args=torch.zeros(2, 5))
    with pytest.raises(TypeError, match="forward_kwargs must be a dict"):
        cam(x, forward_args=(torch.zeros(2, 5),), forward_kwargs=[1])
    with pytest.raises(TypeError, match="input_name"):
        cam(x, input_name="pixel values")
    with pytest.raises(ValueError, match="SESS .*does not take extra model inputs"):
        get_method("sess")(model, target_layers=[model.block], progress=False)(x, forward_args=(torch.zeros(2, 5),))
