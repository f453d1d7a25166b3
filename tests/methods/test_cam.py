"""CAM (Zhou et al. 2016): hand-computed maps on a tiny GAP + linear net, head checks, errors, torchcam parity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camlens import CAM
from camlens.errors import InputTypeError, LayerNotFoundError, LayerOutputError, TargetError
from camlens.targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget, RawScoresOutputTarget

CLASSES = [0, 3, 4]


class GapNet(nn.Module):
    """(N, 2, 4, 4) -> 1x1 conv ``feat`` (3 channels) [-> ReLU] -> global average pool -> Linear(3, 5)."""

    def __init__(self, relu: bool = False, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.feat = nn.Conv2d(2, 3, 1)
        self.fc = nn.Linear(3, 5)
        self.relu = relu
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.feat(x)
        if self.relu:
            a = F.relu(a)
        return self.fc(a.mean(dim=(2, 3)))


@pytest.fixture
def x4() -> torch.Tensor:
    return torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))


def naive_cam(model: GapNet, x: torch.Tensor, classes: list[int], relu: bool) -> np.ndarray:
    """sum_k w_ck F_k by explicit loops (F = the 1x1 conv's output, ReLU'd if the head does)."""
    w = model.feat.weight.detach().numpy()[:, :, 0, 0]
    b = model.feat.bias.detach().numpy()
    fc = model.fc.weight.detach().numpy()
    xs = x.numpy()
    n, cin, h, wd = xs.shape
    out = np.zeros((n, h, wd))
    for i in range(n):
        for k in range(w.shape[0]):
            for p in range(h):
                for q in range(wd):
                    f = sum(w[k, j] * xs[i, j, p, q] for j in range(cin)) + b[k]
                    if relu:
                        f = max(f, 0.0)
                    out[i, p, q] += fc[classes[i], k] * f
    return out


def minmax(raw: np.ndarray) -> np.ndarray:
    out = np.zeros_like(raw)
    for i in range(raw.shape[0]):
        lo, hi = raw[i].min(), raw[i].max()
        out[i] = (raw[i] - lo) / (hi - lo) if hi > lo else 0.0
    return out


@pytest.mark.parametrize("relu", [False, True])
def test_cam_by_hand(relu, x4):
    model = GapNet(relu=relu).eval()
    exp = CAM(model, "feat").explain(x4, [ClassifierOutputTarget(c) for c in CLASSES])
    raw = naive_cam(model, x4, CLASSES, relu)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), raw, rtol=1e-5, atol=1e-5)
    # As in the paper (and torchcam), the signed map is normalised without a ReLU.
    np.testing.assert_allclose(exp.cam.numpy(), minmax(raw), atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(exp.scores.numpy(), model(x4)[torch.arange(3), CLASSES].numpy(), rtol=1e-5)


def test_map_decomposes_the_score(x4):
    """For a GAP + linear net the spatial mean of the CAM plus the bias is the class score."""
    model = GapNet().eval()
    exp = CAM(model, "feat").explain(x4, [ClassifierOutputTarget(c) for c in CLASSES])
    bias = model.fc.bias.detach()[CLASSES]
    torch.testing.assert_close(exp.layer_maps[0].mean(dim=(1, 2)) + bias, exp.scores, rtol=1e-5, atol=1e-5)


def test_fc_layer_found_automatically_or_given(x4):
    model = GapNet().eval()
    auto = CAM(model, "feat")
    assert auto.fc_name == "fc"
    by_name = CAM(model, "feat", fc_layer="fc")(x4, 2)
    by_module = CAM(model, "feat", fc_layer=model.fc)(x4, 2)
    np.testing.assert_array_equal(auto(x4, 2), by_name)
    np.testing.assert_array_equal(by_name, by_module)


def test_softmax_target_gives_the_class_map(x4):
    model = GapNet().eval()
    cam = CAM(model, "feat")
    np.testing.assert_allclose(cam(x4, targets=[ClassifierOutputSoftmaxTarget(2)] * 3), cam(x4, 2), atol=1e-6)


def test_non_class_target_is_rejected(x4):
    with pytest.raises(TargetError, match="ClassifierOutputTarget"):
        CAM(GapNet().eval(), "feat")(x4, targets=[RawScoresOutputTarget()] * 3)


def test_layer_that_is_not_pooled_into_the_classifier_is_rejected(x4):
    model = nn.Sequential(nn.Conv2d(2, 4, 1), nn.Conv2d(4, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 5)).eval()
    with pytest.raises(LayerOutputError, match="'4' takes 3 features but target layer '0' has 4 channels"):
        CAM(model, "0")(x4, 1)


def test_head_that_is_not_pool_plus_linear_is_rejected(x4):
    # conv -> GAP -> LayerNorm -> Linear: the channel counts match but the head is not pool + linear.
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(3), nn.Linear(3, 5)).eval()
    with torch.no_grad():
        model[3].weight.uniform_(0.5, 2.0)
    with pytest.raises(LayerOutputError, match="global average pooling \\+ a linear layer"):
        CAM(model, "0")(x4, 1)


def test_vision_transformer_is_rejected():
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(2, 3)
            self.head = nn.Linear(3, 5)

        def forward(self, x):
            t = self.embed(x.flatten(2).transpose(1, 2))  # (N, 16, 3) tokens
            return self.head(t[:, 0])

    from camlens.reshape import TokenReshape

    model = Tokens().eval()
    with pytest.raises(LayerOutputError, match="vision transformer"):
        CAM(model, "embed", reshape_transform=TokenReshape(num_prefix_tokens=0, grid=(4, 4)))(torch.randn(1, 2, 4, 4), 1)


def test_several_layers_fail_clearly(x4):
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.Conv2d(3, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 5)).eval()
    with pytest.raises(LayerOutputError, match="does not reproduce the model's output"):
        CAM(model, ["0", "1"])(x4, 1)
    assert CAM(model, ["1"])(x4, 1).shape == (3, 4, 4)


def test_model_without_linear_and_bad_fc_layer():
    with pytest.raises(LayerNotFoundError, match="no nn.Linear"):
        CAM(nn.Sequential(nn.Conv2d(2, 3, 1)), "0")
    with pytest.raises(InputTypeError, match="must be an nn.Linear"):
        CAM(GapNet(), "feat", fc_layer="feat")


def test_aug_smooth_and_eigen_smooth(x4):
    cam = CAM(GapNet().eval(), "feat")
    for kw in ({"aug_smooth": True}, {"eigen_smooth": True}):
        out = cam(x4, 1, **kw)
        assert out.shape == (3, 4, 4) and np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


def test_matches_torchcam():
    torchcam = pytest.importorskip("torchcam.methods", reason="torchcam is not installed")
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cats = [1, 4, 7]
    ours = CAM(model, "layer4").explain(x, [ClassifierOutputTarget(c) for c in cats])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extractor = torchcam.CAM(model, "layer4", "fc", input_shape=(3, 64, 64))
        with torch.no_grad():
            scores = model(x)
        theirs = extractor(class_idx=cats, scores=scores, normalized=False)[0]
        extractor.remove_hooks()
    for i in range(3):
        assert np.corrcoef(ours.layer_maps[0][i].flatten(), theirs[i].flatten())[0, 1] >= 0.99
    torch.testing.assert_close(ours.layer_maps[0], theirs, rtol=1e-4, atol=1e-5)


def test_channels_last_grid_with_reshape(x4):
    """A Swin-like head (channels-last maps, pooled over positions, then linear) works with ChannelsLast."""
    from camlens.reshape import ChannelsLast

    class Last(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.feat = nn.Conv2d(2, 3, 1)
            self.norm = nn.LayerNorm(3)
            self.fc = nn.Linear(3, 5)

        def forward(self, x):
            a = self.norm(self.feat(x).permute(0, 2, 3, 1))  # (N, h, w, C)
            return self.fc(a.mean(dim=(1, 2)))

    model = Last().eval()
    exp = CAM(model, "norm", reshape_transform=ChannelsLast()).explain(x4, [ClassifierOutputTarget(2)] * 3)
    with torch.no_grad():
        a = model.norm(model.feat(x4).permute(0, 2, 3, 1))
    expected = (a * model.fc.weight[2]).sum(dim=-1)
    torch.testing.assert_close(exp.layer_maps[0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name, layer, works",
    [
        ("resnet18", "layer4[-1]", True),
        ("densenet121", "features[-1]", True),  # norm5, then F.relu, then pooling: the ReLU'd maps are pooled
        ("efficientnet_b0", "features[-1]", True),
        ("mobilenet_v3_small", "features[-1]", False),  # pool -> Linear -> Hardswish -> Linear
        pytest.param("vgg11", "features[-1]", False, marks=pytest.mark.slow),  # 7x7 pool -> three Linear
        pytest.param("convnext_tiny", "features[-1]", False, marks=pytest.mark.slow),  # pool -> LayerNorm -> Linear
    ],
)
def test_torchvision_heads(name, layer, works):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    cam = CAM(model, layer)
    if works:
        exp = cam.explain(x, target_category=[1, 7])
        assert exp.cam.shape == (2, 64, 64) and torch.isfinite(exp.cam).all()
        bias = cam.fc.bias.detach()[[1, 7]]
        torch.testing.assert_close(exp.layer_maps[0].mean(dim=(1, 2)) + bias, exp.scores, rtol=1e-4, atol=1e-4)
    else:
        with pytest.raises(LayerOutputError, match="CAM needs|expected the layer"):
            cam(x, 1)
