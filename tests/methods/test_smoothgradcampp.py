"""Smooth Grad-CAM++: a naive loop over noisy copies on the tiny net, the reduction to Grad-CAM++,
reproducibility, bounded batches, errors, and torchcam in expectation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camlens import GradCAMPlusPlus, SmoothGradCAMpp
from camlens.errors import ArgumentError, InputTypeError
from camlens.targets import ClassifierOutputTarget

from .reference import activations_and_gradients, finish

CLASSES = [0, 3, 4]


def _noise(shape, num_samples: int, seed: int) -> list[torch.Tensor]:
    """The documented noise stream: one standard normal draw per sample, in order, from the seed."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(num_samples)]


def test_by_hand_on_noisy_copies(tiny, tiny_input):
    num_samples, std, seed = 4, 0.2, 7
    cam = SmoothGradCAMpp(tiny, [tiny.feat], num_samples=num_samples, std=std, seed=seed, batch_size=5, progress=False)
    exp = cam.explain(tiny_input, [ClassifierOutputTarget(c) for c in CLASSES])

    x = tiny_input.double()
    a, _, s = activations_and_gradients(tiny, tiny_input, CLASSES)
    noise = _noise(tiny_input.shape[1:], num_samples, seed)
    n, c, h, w = a.shape
    raw = np.zeros((n, h, w))
    for i in range(n):
        sigma = std * float(x[i].max() - x[i].min())
        grads, scores = [], []
        for m in range(num_samples):
            xm = (tiny_input[i] + sigma * noise[m].to(tiny_input.dtype))[None]
            _, gm, sm = activations_and_gradients(tiny, xm, [CLASSES[i]])
            grads.append(gm[0])
            scores.append(sm[0])
        # The paper: D^p = (1/n) sum_m d^p exp(S_m) / dA^p = (1/n) sum_m exp(S_m) g_m^p.
        ex = [np.exp(sm - max(scores)) for sm in scores]  # a common factor exp(max) cancels below
        d = {p: sum(e * gm**p for e, gm in zip(ex, grads)) / num_samples for p in (1, 2, 3)}
        for k in range(c):
            a_sum = a[i, k].sum()
            weight = 0.0
            for p in range(h):
                for q in range(w):
                    d1, d2, d3 = d[1][k, p, q], d[2][k, p, q], d[3][k, p, q]
                    denom = 2 * d2 + a_sum * d3
                    alpha = d2 / denom if denom != 0 and d2 != 0 else 0.0
                    weight += alpha * max(d1, 0.0)
            raw[i] += weight * a[i, k]
    np.testing.assert_allclose(exp.scores.numpy(), s, rtol=1e-5)
    # The raw map may differ from the paper's by one positive factor per image (see the docstring).
    got = exp.layer_maps[0].numpy()
    factor = (got * raw).sum(axis=(1, 2)) / (raw * raw).sum(axis=(1, 2))
    assert (factor > 0).all()
    np.testing.assert_allclose(got, factor[:, None, None] * raw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(exp.cam.numpy(), finish(raw), atol=1e-5)


@pytest.mark.parametrize("net", ["tiny", "small_cnn"])
def test_no_noise_one_sample_is_gradcam_plus_plus(net, request, tiny_input, image_batch):
    model = request.getfixturevalue(net)
    x = tiny_input if net == "tiny" else image_batch
    layer = model.feat if net == "tiny" else model.block
    targets = [ClassifierOutputTarget(c) for c in range(x.shape[0])]
    smooth = SmoothGradCAMpp(model, [layer], num_samples=1, std=0.0, progress=False).explain(x, targets)
    plain = GradCAMPlusPlus(model, [layer]).explain(x, targets)
    torch.testing.assert_close(smooth.layer_maps[0], plain.layer_maps[0], rtol=1e-6, atol=0)
    assert torch.equal(smooth.cam, plain.cam)


def test_noise_changes_the_map(small_cnn, image_batch):
    plain = SmoothGradCAMpp(small_cnn, [small_cnn.block], num_samples=1, std=0.0, progress=False)(image_batch, 1)
    noisy = SmoothGradCAMpp(small_cnn, [small_cnn.block], num_samples=4, std=0.3, progress=False)(image_batch, 1)
    assert np.abs(noisy - plain).max() > 0.05


def test_reproducible_with_seed_and_generator(small_cnn, image_batch):
    def make(**kw):
        return SmoothGradCAMpp(small_cnn, [small_cnn.block], num_samples=5, std=0.3, progress=False, **kw)

    np.testing.assert_array_equal(make(seed=3)(image_batch, 1), make(seed=3)(image_batch, 1))
    assert np.abs(make(seed=3)(image_batch, 1) - make(seed=4)(image_batch, 1)).max() > 1e-3
    np.testing.assert_array_equal(make()(image_batch, 1), make(seed=0)(image_batch, 1))  # default: seed 0

    cam = make(generator=torch.Generator().manual_seed(11))
    first, second = cam(image_batch, 1), cam(image_batch, 1)  # the generator advances
    assert np.abs(first - second).max() > 1e-3
    again = make(generator=torch.Generator().manual_seed(11))
    np.testing.assert_array_equal(again(image_batch, 1), first)


def test_batch_size_does_not_change_the_result(small_cnn, image_batch):
    ref = SmoothGradCAMpp(small_cnn, [small_cnn.block], num_samples=3, std=0.3, batch_size=64, progress=False)
    out = ref(image_batch, 2)
    for bs in (1, 5):
        cam = SmoothGradCAMpp(small_cnn, [small_cnn.block], num_samples=3, std=0.3, batch_size=bs, progress=False)
        np.testing.assert_allclose(cam(image_batch, 2), out, atol=1e-5)


def test_noisy_passes_are_bounded_by_batch_size(small_cnn, image_batch):
    sizes: list[int] = []
    handle = small_cnn.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        SmoothGradCAMpp(small_cnn, [small_cnn.block], num_samples=10, batch_size=6, progress=False)(image_batch, 0)
    finally:
        handle.remove()
    # one clean pass of the batch, then 4 images x 10 samples in chunks of at most 6
    assert sizes[0] == 4
    assert max(sizes[1:]) <= 6 and sum(sizes[1:]) == 40


def test_several_layers_share_one_set_of_noisy_passes(small_cnn, image_batch):
    calls: list[int] = []
    handle = small_cnn.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    try:
        cam = SmoothGradCAMpp(small_cnn, ["stem", "block"], num_samples=3, batch_size=100, progress=False)
        exp = cam.explain(image_batch, target_category=0)
    finally:
        handle.remove()
    assert calls == [4, 12]
    single = SmoothGradCAMpp(small_cnn, ["block"], num_samples=3, batch_size=100, progress=False)
    torch.testing.assert_close(exp.layer_maps[1], single.explain(image_batch, target_category=0).layer_maps[0])
    assert cam._moments is None  # nothing kept after the call


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_samples": 0}, ArgumentError, r"num_samples must be a positive int; got 0"),
        ({"num_samples": 2.5}, ArgumentError, r"num_samples must be a positive int; got 2.5"),
        ({"std": -0.1}, ArgumentError, r"std must be a number >= 0 .*got -0.1"),
        ({"generator": 3}, InputTypeError, r"generator must be a torch.Generator; got int"),
        ({"generator": torch.Generator(), "seed": 1}, ArgumentError, r"either generator or seed, not both"),
    ],
)
def test_errors(small_cnn, kwargs, error, match):
    with pytest.raises(error, match=match):
        SmoothGradCAMpp(small_cnn, [small_cnn.block], **kwargs)


class PoolMLP(nn.Module):
    """conv -> ReLU -> ``feat`` (conv) -> global average pool -> MLP (Linear, ReLU, Linear).

    Right after ``feat`` comes the pooling, so the gradient is constant over positions but depends
    on the input through the MLP's ReLU: there torchcam's ``sum_ab A_ab D3_ab`` and the paper's
    ``D3_ij sum_ab A_ab`` coincide and the noise matters."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.feat = nn.Conv2d(8, 6, 3, padding=1)
        self.head = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 4))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.rand(p.shape, generator=g) - 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feat(self.stem(x)).mean(dim=(2, 3)))


@pytest.mark.slow
def test_agrees_with_torchcam_in_expectation():
    """Where the definitions match (see PoolMLP), the maps averaged over seeds correlate with
    torchcam 0.5.0's. What still differs: torchcam weights every sample alike (no exp(S_m)),
    multiplies alpha by ReLU of the last sample's gradient instead of ReLU(D1), and takes ``std``
    as an absolute standard deviation (converted here)."""
    methods = pytest.importorskip("torchcam.methods")
    model = PoolMLP().eval()
    xb = torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    seeds, samples, abs_std = range(96), 16, 0.5
    for i in range(4):
        x, cls = xb[i : i + 1], i
        theirs, ours = [], []
        rel = abs_std / float(x.max() - x.min())
        for seed in seeds:
            torch.manual_seed(seed)
            with methods.SmoothGradCAMpp(model, "feat", num_samples=samples, std=abs_std, input_shape=(3, 12, 12)) as ex:
                theirs.append(ex(class_idx=cls, scores=model(x))[0][0].detach().numpy())
            cam = SmoothGradCAMpp(model, ["feat"], num_samples=samples, std=rel, seed=seed, progress=False)
            ours.append(cam.explain(x, [ClassifierOutputTarget(cls)]).layer_maps[0][0].clamp_min(0).numpy())
        r = np.corrcoef(np.mean(theirs, axis=0).ravel(), np.mean(ours, axis=0).ravel())[0, 1]
        assert r >= 0.95, (i, r)
