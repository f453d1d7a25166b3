"""SS-CAM and IS-CAM: hand-computed values (naive loops) on a tiny net, reduction to Score-CAM,
reproducibility, bounded batches, and agreement with torchcam where the definitions match."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camlens import ISCAM, SSCAM, ScoreCAM
from camlens.errors import CamLensError
from camlens.targets import ClassifierOutputTarget

from ._perturb_nets import PNet, ResNetish

CLASSES = [1, 4, 0]


@pytest.fixture
def pnet() -> PNet:
    return PNet().eval()


@pytest.fixture
def x6() -> torch.Tensor:
    return torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(5))


def targets(classes):
    return [ClassifierOutputTarget(c) for c in classes]


def naive(model, x, classes, perturbed, samples, softmax=True):
    """Score-CAM family by the papers, one image, channel and sample at a time (float64 scores).

    ``perturbed(xi, mask, k, i)`` returns the input scored for channel ``k`` and sample ``i``."""
    maps = []
    with torch.no_grad():
        for n in range(x.shape[0]):
            xi = x[n : n + 1]
            a = model.feat(xi)[0].double()
            scores = []
            for k in range(a.shape[0]):
                up = F.interpolate(a[k][None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
                span = up.max() - up.min()
                mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
                total = 0.0
                for i in range(samples):
                    out = model(perturbed(xi, mask.float(), k, i))[0].double()
                    out = torch.softmax(out, 0) if softmax else out
                    total = total + out[classes[n]]
                scores.append(total / samples)
            w = torch.softmax(torch.stack(scores), 0)
            maps.append((w[:, None, None] * a).sum(0))
    return torch.stack(maps)


def test_sscam_mask_noise_matches_naive_reference(pnet, x6):
    cam = SSCAM(pnet, "feat", num_samples=3, std=0.4, generator=7, batch_size=5, progress=False)
    got = cam.explain(x6, targets(CLASSES)).layer_maps[0]

    def noisy_mask(xi, mask, k, i):
        return xi * (mask + 0.4 * SSCAM.noise_sample(7, k, i, (6, 6), xi.device))

    ref = naive(pnet, x6, CLASSES, noisy_mask, 3)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)
    plain = ScoreCAM(pnet, "feat", progress=False).explain(x6, targets(CLASSES)).layer_maps[0]
    assert not torch.allclose(got, plain, atol=1e-4)  # the noise changes the weights


def test_sscam_input_noise_matches_naive_reference(pnet, x6):
    cam = SSCAM(pnet, "feat", num_samples=2, std=0.3, noise="input", generator=3, progress=False)
    got = cam.explain(x6, targets(CLASSES)).layer_maps[0]

    def noisy_input(xi, mask, k, i):
        return (xi + 0.3 * SSCAM.noise_sample(3, k, i, (2, 6, 6), xi.device)) * mask

    ref = naive(pnet, x6, CLASSES, noisy_input, 2)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cumulative", [False, True])
def test_iscam_matches_naive_reference(pnet, x6, cumulative):
    cam = ISCAM(pnet, "feat", num_samples=4, cumulative=cumulative, batch_size=7, progress=False)
    got = cam.explain(x6, targets(CLASSES)).layer_maps[0]

    def scaled(xi, mask, k, i):
        j = i + 1
        alpha = j * (j + 1) / (2 * 4) if cumulative else j / 4
        return xi * (alpha * mask)

    ref = naive(pnet, x6, CLASSES, scaled, 4)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)


def test_no_noise_or_one_sample_is_scorecam_exactly(pnet, x6):
    plain = ScoreCAM(pnet, "feat", progress=False).explain(x6, targets(CLASSES))
    for cam in (
        SSCAM(pnet, "feat", num_samples=1, std=0.0, progress=False),
        SSCAM(pnet, "feat", num_samples=1, std=0.0, noise="input", progress=False),
        ISCAM(pnet, "feat", num_samples=1, progress=False),
    ):
        exp = cam.explain(x6, targets(CLASSES))
        assert torch.equal(exp.layer_maps[0], plain.layer_maps[0]), type(cam).__name__
        assert torch.equal(exp.cam, plain.cam)
    several = SSCAM(pnet, "feat", num_samples=4, std=0.0, progress=False).explain(x6, targets(CLASSES))
    torch.testing.assert_close(several.layer_maps[0], plain.layer_maps[0], atol=1e-6, rtol=1e-6)


def test_sscam_reproducible_and_independent_of_batching(pnet, x6):
    def run(**kw):
        return SSCAM(pnet, "feat", num_samples=3, std=0.5, progress=False, **kw).explain(x6, targets(CLASSES)).cam

    a = run(generator=11, batch_size=2)
    torch.testing.assert_close(a, run(generator=11, batch_size=64))
    one = torch.cat([
        SSCAM(pnet, "feat", num_samples=3, std=0.5, generator=11, progress=False).explain(x6[i : i + 1], targets([c])).cam
        for i, c in enumerate(CLASSES)
    ])  # fmt: skip
    torch.testing.assert_close(a, one, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(a, run(generator=12))
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    torch.testing.assert_close(run(generator=g1), run(generator=g2))
    torch.manual_seed(9)
    b = run()
    torch.manual_seed(9)
    torch.testing.assert_close(b, run())


def test_batches_bounded_by_batch_size_not_channels_or_samples():
    """256 channels x 8 samples: no forward sees more than batch_size noisy inputs, every
    (image, channel, sample) row runs once, and the capture hook is silent while scoring."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 256, 3, stride=4, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(3)
    )
    x = torch.randn(1, 3, 16, 16)
    model(x)
    model.eval()
    for cam in (
        SSCAM(model, model[0], num_samples=8, std=0.3, generator=0, batch_size=16, progress=False),
        ISCAM(model, model[0], num_samples=8, batch_size=16, progress=False),
    ):
        seen, capture_hooks = [], []
        h1 = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
        h2 = model[0].register_forward_pre_hook(lambda m, args: capture_hooks.append(len(m._forward_hooks)))
        try:
            out = cam(x, targets=[ClassifierOutputTarget(2)])
        finally:
            h1.remove()
            h2.remove()
        assert np.isfinite(out).all()
        assert seen[0] == 1 and max(seen[1:]) <= 16
        assert 256 * 8 - 8 * 16 <= sum(seen[1:]) <= 256 * 8 + 1  # each row once (+1 zero image)
        assert capture_hooks[0] == 1 and all(n == 0 for n in capture_hooks[1:])


def test_options_are_checked(pnet):
    with pytest.raises(CamLensError, match="num_samples must be a positive int; got 0"):
        SSCAM(pnet, "feat", num_samples=0)
    with pytest.raises(CamLensError, match="std must be a number >= 0"):
        SSCAM(pnet, "feat", std=-1.0)
    with pytest.raises(CamLensError, match="noise must be 'mask' .* or 'input'"):
        SSCAM(pnet, "feat", noise="pixels")
    with pytest.raises(CamLensError, match="generator must be None, an int seed or a torch.Generator; got str"):
        SSCAM(pnet, "feat", generator="0")
    with pytest.raises(CamLensError, match="num_samples must be a positive int; got 2.5"):
        ISCAM(pnet, "feat", num_samples=2.5)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _torchcam_maps(cls, model, layer, x, classes, seeds, **kw):
    maps = []
    for seed in seeds:
        torch.manual_seed(seed)
        with cls(model, layer, input_shape=tuple(x.shape[1:]), **kw) as extractor:
            with torch.no_grad():
                out = model(x)
            maps.append(extractor(class_idx=classes, scores=out)[0].numpy())
    return np.mean(maps, axis=0)


def _camlens_maps(cam, x, classes, seeds):
    maps = []
    for seed in seeds:
        cam.generator = seed
        raw = cam.explain(x, targets(classes)).layer_maps[0].clamp_min(0)
        flat = raw.flatten(1)
        lo, hi = flat.amin(1)[:, None, None], flat.amax(1)[:, None, None]
        maps.append(((raw - lo) / (hi - lo)).numpy())
    return np.mean(maps, axis=0)


def test_sscam_agrees_with_torchcam_in_expectation():
    """Same definition (noise on the normalised mask, raw logits as scores): the mean map over seeds agrees."""
    methods = pytest.importorskip("torchcam.methods")
    model = ResNetish().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    classes = [1, 3]
    seeds = range(6)
    ref = _torchcam_maps(methods.SSCAM, model, "blocks.2", x, classes, seeds, num_samples=16, std=0.3)
    cam = SSCAM(model, "blocks.2", num_samples=16, std=0.3, score_softmax=False, progress=False)
    got = _camlens_maps(cam, x, classes, seeds)
    for n in range(2):
        assert _pearson(got[n], ref[n]) >= 0.95


def test_iscam_agrees_with_torchcam():
    """torchcam's coefficients are camlens's ``cumulative=True``; with raw logits the maps agree."""
    methods = pytest.importorskip("torchcam.methods")
    model = ResNetish().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    classes = [0, 2]
    for n_samples in (1, 4):
        ref = _torchcam_maps(methods.ISCAM, model, "blocks.2", x, classes, [0], num_samples=n_samples)
        cam = ISCAM(model, "blocks.2", num_samples=n_samples, cumulative=True, score_softmax=False, progress=False)
        got = _camlens_maps(cam, x, classes, [0])
        for n in range(2):
            assert _pearson(got[n], ref[n]) >= 0.95
