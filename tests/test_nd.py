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
    """The method on ``model`` with contract_setup's layers and kwargs (layers: ``model.block``)."""
    conf = settings(name)
    kwargs = {**conf.get("kwargs", {}), **settings(name).get("nd", {}).get("kwargs", {}), **kw}
    layers = conf["layers"](model) if "layers" in conf else [model.block]
    return get_method(name)(model=model, target_layers=layers, progress=False, **kwargs)


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
    if method not in ("sess", "fullgrad"):  # these fuse their one raw map at the input's resolution
        block, stem = tuple(s // 2 for s in SIZES[k]), SIZES[k]  # layer resolutions of 'block' and 'stem'
        assert exp.layer_maps and all(tuple(m.shape) in {(2, *block), (2, *stem)} for m in exp.layer_maps)
        assert tuple(exp.layer_maps[0].shape) == (2, *block)  # 'block' comes first in every setting
    else:
        assert tuple(exp.layer_maps[0].shape) == (2, *SIZES[k])
    if not get_method(method).multi_pass and method != "dff":
        one = cam(input_tensor=x[1:], targets=[ClassifierOutputTarget(4)])
        np.testing.assert_allclose(out[1:], one, atol=1e-5)


# ---------------------------------------------------------------- models with several inputs
class ImageAndMeta(nn.Module):
    """``fc(pool(features(x))) + scale * meta @ W``: an image plus per-image metadata and a flag."""

    def __init__(self) -> None:
        super().__init__()
        net = NDNet(2, seed=3)
        self.stem, self.block, self.act = net.stem, net.block, net.act
        self.meta = nn.Linear(5, 6, bias=False)
        self.fc = net.fc

    def forward(self, x: torch.Tensor, meta: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
        assert meta.shape[0] == x.shape[0]  # the extra input is batched along with the image
        # metadata also reweights the first 5 feature channels
        gate = torch.cat([torch.sigmoid(meta), meta.new_ones(meta.shape[0], 3)], dim=1)[:, :, None, None]
        a = self.act(self.block(self.stem(x) * gate))
        return self.fc(a.flatten(2).mean(dim=2)) + scale * self.meta(meta)


class Bound(nn.Module):
    """``model(x, meta, scale=...)`` with ``meta`` fixed: the one-input reference."""

    def __init__(self, model: nn.Module, meta: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.model, self.m, self.scale = model, meta, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.m.expand(x.shape[0], -1), scale=self.scale)


@pytest.mark.filterwarnings("ignore:AblationCAM cannot run only the layers after")  # the reference Bound
@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("legrad", "sess", "cam")])
def test_extra_inputs_go_with_their_image(method):
    # cam is left out: its head is not pool + linear here (the metadata adds to the logits), which
    # CAM refuses by design (tests/methods/test_cam.py)
    """Every copy the method runs (masked, ablated, noisy, augmented) gets its own image's metadata:
    the batch with forward_args equals each image explained alone with its metadata bound."""
    model = ImageAndMeta().eval()
    x = batch(2, n=2, seed=1)
    meta = torch.randn(2, 5, generator=torch.Generator().manual_seed(2)) * 3
    targets = [ClassifierOutputTarget(1), ClassifierOutputTarget(4)]
    smooth = {"aug_smooth": True} if not get_method(method).multi_pass and method != "dff" else {}
    got = make(method, model)(x, targets=targets, forward_args=(meta,), forward_kwargs={"scale": 2.0}, **smooth)
    if method == "dff":  # factorises the whole batch jointly: compare with the whole batch bound
        cam = get_method(method)(model=Bound(model, meta, 2.0).eval(), target_layers=[model.block], progress=False)  # fmt: skip
        np.testing.assert_allclose(got, cam(x, targets=targets), atol=2e-5)
    for i in range(2 if method != "dff" else 0):
        bound = Bound(model, meta[i : i + 1], 2.0).eval()
        spec = settings(method)["layers"](model) if "layers" in settings(method) else [model.block]
        layers = None if spec is None else [model.get_submodule(n) if isinstance(n, str) else n for n in spec]
        cam = get_method(method)(model=bound, target_layers=layers, progress=False,
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


# ---------------------------------------------------------------- hand-computed values in 3-D
class Identity3D(nn.Module):
    """``A = x`` (a 1x1x1 Conv3d with identity weights, 2 channels); logits ``z = W mean(A) + b``."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv3d(2, 2, 1, bias=False)
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.feat.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0], [-1.0, 1.0]]))
            self.fc.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.feat(x).flatten(2).mean(dim=2))


VOLUME = torch.tensor(
    [[[[[1.0, 2.0], [0.0, -1.0]], [[3.0, 0.5], [2.0, 1.0]]],
      [[[0.0, 1.0], [4.0, 2.0]], [[-1.0, 0.0], [1.0, 3.0]]]]]
)  # (1, 2, 2, 2, 2)  # fmt: skip


def _minmax(a: np.ndarray) -> np.ndarray:
    span = a.max() - a.min()
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)


def test_gradcam_3d_by_hand():
    model = Identity3D().eval()
    x = VOLUME.numpy()[0]
    w = model.fc.weight.detach().numpy()[1]  # class 1: d z_1 / d A_k = W_1k / 8 at every voxel
    expected = _minmax(np.maximum(w[0] / 8 * x[0] + w[1] / 8 * x[1], 0))
    got = get_method("gradcam")(model, "feat")(VOLUME, targets=[ClassifierOutputTarget(1)])
    assert got.shape == (1, 2, 2, 2)
    np.testing.assert_allclose(got[0], expected, atol=1e-6)


def test_scorecam_3d_by_hand():
    model = Identity3D().eval()
    x = VOLUME.numpy()[0]
    W, b = model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy()
    s = []
    for k in range(2):
        masked = x * _minmax(x[k])[None]  # mask = min-max of channel k (same resolution: no upsampling)
        z = W @ masked.reshape(2, -1).mean(axis=1) + b
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        s.append(p[2])
    weights = np.exp(np.array(s) - max(s)) / np.exp(np.array(s) - max(s)).sum()
    expected = _minmax(np.maximum(weights[0] * x[0] + weights[1] * x[1], 0))
    got = get_method("scorecam")(model, "feat", progress=False)(VOLUME, targets=[ClassifierOutputTarget(2)])
    np.testing.assert_allclose(got[0], expected, atol=1e-6)


def test_upsample_linear_and_trilinear_half_pixel_centres():
    from camlens.postprocess import upsample

    # output i samples the input at (i + 0.5) * 2 / 4 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped at the ends)
    np.testing.assert_allclose(upsample(torch.tensor([[0.0, 1.0]]), (4,)).numpy(), [[0, 0.25, 0.75, 1]])
    vol = torch.tensor([0.0, 1.0]).reshape(1, 2, 1, 1).expand(1, 2, 2, 3)
    up = upsample(vol, (4, 2, 3))
    np.testing.assert_allclose(up[0, :, 1, 2].numpy(), [0, 0.25, 0.75, 1])
    with pytest.raises(ValueError, match=r"1, 2 or 3 spatial axes.*\(1, 2, 2, 3\).*\(4, 2\)"):
        upsample(vol, (4, 2))


def test_layer_with_other_dimensionality_is_explained_clearly():
    from camlens.errors import LayerOutputError

    model = NDNet(3).eval()
    flat = nn.Module()
    cam = get_method("gradcam")(model, "fc")
    with pytest.raises(LayerOutputError, match=r"expected \(N, C, d, h, w\) for an input with 3 spatial axes"):
        cam(batch(3))
    del flat


def test_two_d_model_given_a_volume_says_so():
    with pytest.raises(InputShapeError, match=r"3 spatial axes.*Conv2d.*\(N, C, H, W\)"):
        get_method("gradcam")(NDNet(2), "block")(batch(3))


# ---------------------------------------------------------------- a volume model with a known answer
class OctantModel(nn.Module):
    """Features everywhere, but the head reads only the first octant (d, h, w < half)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.feat = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.fc.weight[0].copy_(torch.tensor([1.0, 0.5, 2.0, 1.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.feat(x)
        h = a.shape[-1] // 2
        return self.fc(a[:, :, :h, :h, :h].flatten(2).mean(dim=2))


@pytest.mark.parametrize("method", ["layercam", "hirescam", "gradcamelementwise"])
def test_volume_map_peaks_in_the_octant_the_model_reads(method):
    """Element-wise methods keep the gradient's location: zero outside the octant the head reads.
    (GradCAM-style channel weights spread over every position where a channel fires, by design.)"""
    x = torch.rand(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    cam = get_method(method)(OctantModel().eval(), "feat")(x, targets=[ClassifierOutputTarget(0)] * 2)
    for m in cam:
        d, h, w = np.unravel_index(m.argmax(), m.shape)
        assert max(d, h, w) < 4, (method, (d, h, w))
        assert m[:4, :4, :4].mean() > 5 * (m.sum() - m[:4, :4, :4].sum()) / (8**3 - 4**3)


# ---------------------------------------------------------------- torchvision video ResNet
def test_r3d_18_no_layer_given():  # ~1.5 s on an idle 2-core machine
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(num_classes=5).eval()
    x = torch.randn(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    for name, kw in [("gradcam", {}), ("scorecam", {"top_k": 3, "batch_size": 3}), ("ablationcam", {"batch_size": 128})]:
        cam = get_method(name)(model, progress=False, **kw)
        assert cam.target_layer_names == ["layer4.1"]  # the ResNet family: layer4[-1], the output of layer4
        out = cam(x)
        assert out.shape == (1, 8, 64, 64) and np.isfinite(out).all()
        assert out.std() > 0.01, name


# ---------------------------------------------------------------- metrics on volumes
def test_deletion_on_a_volume_by_hand():
    """A model whose class-0 logit is the mean of the first octant (class 1: 0): deleting the voxels of
    that octant first (the saliency says so) drops the softmax score to 0.5 after 1/8 of the voxels."""
    from camlens.metrics import deletion, insertion

    class Octant(nn.Module):
        def forward(self, x):
            m = x[:, 0, :2, :2, :2].flatten(1).mean(dim=1)
            return torch.stack([m, torch.zeros_like(m)], dim=1)

    x = torch.full((1, 1, 4, 4, 4), 3.0)
    cam = torch.zeros(1, 4, 4, 4)
    cam[:, :2, :2, :2] = 1.0
    res = deletion(Octant(), x, cam, targets=[0], steps=8, seed=None)
    assert res.curve.shape == (1, 9)
    assert res.curve[0, 0].item() == pytest.approx(torch.softmax(torch.tensor([3.0, 0.0]), 0)[0].item(), abs=1e-6)
    assert res.curve[0, 1:].tolist() == pytest.approx([0.5] * 8, abs=1e-6)
    np.testing.assert_allclose(res.fractions.numpy(), np.arange(9) / 8)
    ins = insertion(Octant(), x, cam, targets=[0], steps=8, baseline="mean", seed=None)  # mean of a constant = x
    assert ins.curve.shape == (1, 9)
    signal = insertion(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), torch.randn(2, 1, 16), torch.rand(2, 16), steps=4)
    assert signal.curve.shape == (2, 5)  # signals too (blur baseline along the one axis)


def test_image_only_metrics_say_so():
    from camlens.metrics import road

    with pytest.raises(InputShapeError, match=r"camlens.metrics.road needs input_tensor as images \(N, C, H, W\).*3 spatial axes"):
        road(NDNet(3).eval(), batch(3), torch.rand(2, 8, 8, 8))


# ---------------------------------------------------------------- the CLI on .npy arrays
MODEL_FILE = """
import torch
from torch import nn


def load_model():
    torch.manual_seed(0)
    k = {k}
    conv = {{1: nn.Conv1d, 3: nn.Conv3d}}[k]
    return nn.Sequential(conv(2, 4, 3, padding=1), nn.ReLU(), conv(4, 4, 3, padding=1), nn.ReLU(),
                         nn.Flatten(2), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3))
"""


@pytest.mark.parametrize("k, shape, written", [(3, (2, 6, 8, 8), "_slices.png"), (1, (2, 40), "_strip.png")])
def test_cli_explains_npy_volume_and_signal(tmp_path, capsys, k, shape, written):
    pytest.importorskip("PIL")
    from PIL import Image

    from camlens.app.cli import main

    (tmp_path / "net.py").write_text(MODEL_FILE.format(k=k))
    arr = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    np.save(tmp_path / "scan.npy", arr)
    out = tmp_path / "out"
    rc = main(["explain", str(tmp_path / "scan.npy"), "--model-file", str(tmp_path / "net.py"), "--target-layer", "3",
               "-m", "gradcam", "-m", "scorecam", "-o", str(out)])  # fmt: skip
    assert rc == 0
    assert ("volume" if k == 3 else "signal") in capsys.readouterr().out  # inferred from the shape
    for name in ("gradcam", "scorecam"):
        m = np.load(out / f"scan_{name}_cam.npy")
        assert m.shape == shape[1:] and m.min() >= 0
        assert m.max() == pytest.approx(1.0) or (name == "gradcam" and m.max() == 0)  # ScoreCAM is never blank here
        png = np.asarray(Image.open(out / f"scan_{name}{written}"))
        assert png.ndim == 3 and png.shape[2] in (3, 4)
    if k == 3:  # 6 slices in 2 rows of 3 columns of 8x8 overlays
        assert png.shape[:2] == (16, 24)


def test_infer_kind_and_slice_montage():
    from camlens.app.arrays import infer_kind
    from camlens.image import slice_montage

    assert [infer_kind(s) for s in [(100,), (2, 100), (3, 32, 32), (16, 32, 32), (1, 8, 32, 32)]] == [
        "signal", "signal", "image", "volume", "volume"]  # fmt: skip
    with pytest.raises(InputShapeError, match="one sample per file"):
        infer_kind((1, 1, 2, 2, 2))
    vol, cam = np.zeros((4, 2, 3)), np.zeros((4, 2, 3))
    cam[2] = 1.0
    grid = slice_montage(vol, cam, num_slices=None, columns=4)
    assert grid.shape == (2, 12, 3) and grid.dtype == np.uint8
    assert (grid[:, 6:9] != grid[:, :3]).any()  # slice 2 (the hot one) differs from slice 0
    with pytest.raises(InputShapeError, match=r"cam must be \(D, H, W\)"):
        slice_montage(vol, cam[:2])


def test_guided_backprop_volumes_and_extra_inputs():
    from camlens.guided_backprop import GuidedBackprop, guided_gradcam

    model, x = NDNet(3).eval(), batch(3)
    g = GuidedBackprop(model)(x, target_category=1)
    assert g.shape == (2, 8, 8, 8, 3)  # channels last
    assert guided_gradcam(g, get_method("gradcam")(model, "block")(x, target_category=1)).shape == g.shape
    two = ImageAndMeta().eval()
    x2, meta = batch(2), torch.randn(2, 5)
    got = GuidedBackprop(two)(x2, target_category=2, forward_args=(meta,), forward_kwargs={"scale": 2.0})
    want = GuidedBackprop(Bound(two, meta[1:], 2.0))(x2[1:], target_category=2)
    np.testing.assert_allclose(got[1:], want, atol=1e-6)
