"""ScoreCAM: hand-computed values (naive loop) on a tiny fixed-weight net, bounded memory, exactness rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camlens import ScoreCAM
from camlens import postprocess as pp
from camlens.errors import CamLensError
from camlens.targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

from ._perturb_nets import PNet, ResNetish, TokenNet, token_reshape

CLASSES = [1, 4, 0]


@pytest.fixture
def pnet() -> PNet:
    return PNet().eval()


@pytest.fixture
def x6() -> torch.Tensor:
    return torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(5))


def naive_scorecam(model, layer_fn, x, classes, softmax_outputs=True, reshape=None):
    """Score-CAM by the paper, one image and one channel at a time. Returns raw maps (N, h, w)."""
    maps = []
    with torch.no_grad():
        for i in range(x.shape[0]):
            xi = x[i : i + 1]
            a = layer_fn(xi)
            if reshape is not None:
                a = reshape(a)
            a = a[0].double()
            scores = []
            for k in range(a.shape[0]):
                ak = a[k]
                if ak.max() == ak.min():
                    mask = torch.zeros(x.shape[-2:], dtype=torch.float64)
                else:
                    up = F.interpolate(ak[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
                    mask = (up - up.min()) / (up.max() - up.min())
                out = model(xi * mask.float())[0].double()
                if softmax_outputs:
                    out = torch.exp(out) / torch.exp(out).sum()
                scores.append(out[classes[i]])
            s = torch.stack(scores)
            w = torch.exp(s) / torch.exp(s).sum()
            maps.append(sum(w[k] * a[k] for k in range(a.shape[0])))
    return torch.stack(maps)


def finish(raw: torch.Tensor, size) -> np.ndarray:
    out = []
    for m in raw:
        m = F.interpolate(m.clamp_min(0).float()[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
        out.append(((m - m.min()) / (m.max() - m.min())).numpy())
    return np.stack(out)


def test_matches_naive_reference(pnet, x6):
    cam = ScoreCAM(pnet, "feat", batch_size=5, progress=False)
    exp = cam.explain(x6, [ClassifierOutputTarget(c) for c in CLASSES])
    ref = naive_scorecam(pnet, pnet.feat, x6, CLASSES)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(exp.cam.numpy(), finish(ref, (6, 6)), atol=1e-5)
    # the paper's weights are not uniform: the map is not simply the channel mean
    with torch.no_grad():
        mean_map = pnet.feat(x6).mean(dim=1)
    assert not torch.allclose(exp.layer_maps[0], mean_map, atol=1e-4)


def test_raw_logit_scores_when_softmax_off(pnet, x6):
    cam = ScoreCAM(pnet, "feat", batch_size=4, progress=False, score_softmax=False)
    exp = cam.explain(x6, [ClassifierOutputTarget(c) for c in CLASSES])
    ref = naive_scorecam(pnet, pnet.feat, x6, CLASSES, softmax_outputs=False)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)


def test_softmax_target_is_not_softmaxed_twice(pnet, x6):
    cam = ScoreCAM(pnet, "feat", progress=False)
    a = cam.explain(x6, [ClassifierOutputTarget(c) for c in CLASSES]).layer_maps[0]
    b = cam.explain(x6, [ClassifierOutputSoftmaxTarget(c) for c in CLASSES]).layer_maps[0]
    mixed = [ClassifierOutputSoftmaxTarget(1), ClassifierOutputTarget(4), ClassifierOutputSoftmaxTarget(0)]
    c = cam.explain(x6, mixed).layer_maps[0]
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(a, c, atol=1e-6, rtol=1e-6)


def test_constant_channels_scored_once_and_exactly(pnet, x6):
    """Channels 2 (all zero) and 3 (constant 0.5) share one all-zero-image forward; no NaN."""
    batches = []
    handle = pnet.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    try:
        cam = ScoreCAM(pnet, "feat", batch_size=4, progress=False)
        exp = cam.explain(x6, [ClassifierOutputTarget(c) for c in CLASSES])
    finally:
        handle.remove()
    # capture (3 images) + one zero image + 3 images x 2 informative channels in chunks of 4
    assert batches == [3, 1, 4, 2]
    assert torch.isfinite(exp.layer_maps[0]).all()
    ref = naive_scorecam(pnet, pnet.feat, x6, CLASSES)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)


def test_memory_bounded_by_batch_size_and_capture_hooks_silent():
    """256 channels, batch_size 16: no forward ever sees more than 16 masked images, and the
    target layer carries no capture hook while masked inputs are scored."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 256, 3, stride=4, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(3)
    )
    x = torch.randn(1, 3, 16, 16)
    model(x)  # materialise the lazy layer
    model.eval()
    seen, capture_hooks = [], []
    layer = model[0]
    h1 = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    h2 = layer.register_forward_pre_hook(lambda m, args: capture_hooks.append(len(m._forward_hooks)))
    try:
        cam = ScoreCAM(model, layer, batch_size=16, progress=False)
        out = cam(x, targets=[ClassifierOutputTarget(2)])
    finally:
        h1.remove()
        h2.remove()
    assert np.isfinite(out).all()
    assert seen[0] == 1 and max(seen[1:]) <= 16 and len(seen) > 10
    assert sum(seen[1:]) <= 256 + 1  # every (image, channel) pair at most once (+1 zero image)
    assert capture_hooks[0] == 1 and all(n == 0 for n in capture_hooks[1:])
    assert len(capture_hooks) == len(seen)


def test_batch_size_settable_and_results_independent_of_it(pnet, x6):
    cam = ScoreCAM(pnet, "feat", batch_size=1, progress=False)
    a = cam(x6, CLASSES)
    cam.batch_size = 64
    b = cam(x6, CLASSES)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_top_k_keeps_only_k_channels():
    model = ResNetish().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    exact = ScoreCAM(model, "blocks.1", progress=False).explain(x, target_category=2).layer_maps[0]
    all_k = ScoreCAM(model, "blocks.1", top_k=6, progress=False).explain(x, target_category=2).layer_maps[0]
    torch.testing.assert_close(exact, all_k)
    one = ScoreCAM(model, "blocks.1", top_k=1, progress=False).explain(x, target_category=2).layer_maps[0]
    with torch.no_grad():
        a = model.blocks[1](model.blocks[0](model.stem(x)))
    top = a.mean(dim=(2, 3)).argmax(dim=1)
    torch.testing.assert_close(one, a[torch.arange(2), top])  # softmax over one channel = weight 1
    with pytest.raises(CamLensError, match="top_k must be None"):
        ScoreCAM(model, "blocks.1", top_k=0)


def test_eigen_smooth_projects_weighted_activations(pnet, x6):
    cam = ScoreCAM(pnet, "feat", progress=False)
    targets = [ClassifierOutputTarget(c) for c in CLASSES]
    exp = cam.explain(x6, targets, eigen_smooth=True)
    ref = naive_scorecam(pnet, pnet.feat, x6, CLASSES)  # only for the weights' effect on the sum
    with torch.no_grad():
        acts = pnet.feat(x6)
    from camlens.methods.base import LayerContext

    cap = cam.engine.run(x6, targets, need_gradients=False)
    ctx = LayerContext("feat", pnet.feat, acts, None, acts, x6, cap.targets, cap.scores, cap.outputs)
    w = cam.cam_weights(ctx)
    assert w.shape == (3, 4, 1, 1)  # one convention for every family: (N, C, 1, 1)
    torch.testing.assert_close((w * acts).sum(1), ref.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(exp.layer_maps[0], pp.eigen_projection(w * acts), atol=1e-5, rtol=1e-5)


def test_reshape_transform_tokens_equal_reference():
    model = TokenNet().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    cam = ScoreCAM(model, "mix", reshape_transform=token_reshape, batch_size=3, progress=False)
    exp = cam.explain(x, [ClassifierOutputTarget(0), ClassifierOutputTarget(3)])

    def mix_out(xi):
        t = model.patch(xi).flatten(2).transpose(1, 2)
        return model.mix(torch.cat([model.cls.expand(xi.shape[0], -1, -1), t], dim=1))

    ref = naive_scorecam(model, mix_out, x, [0, 3], reshape=token_reshape)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)


def test_several_layers_and_aug_smooth_run():
    model = ResNetish().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    cam = ScoreCAM(model, ["blocks.0", "blocks.2"], batch_size=16, progress=False)
    exp = cam.explain(x, target_category=1)
    assert len(exp.layer_maps) == 2 and exp.cam.shape == (2, 8, 8)
    out = cam(x, 1, aug_smooth=True)
    assert out.shape == (2, 8, 8) and np.isfinite(out).all() and out.max() == pytest.approx(1.0)


def test_raising_target_leaves_model_as_found(pnet, x6):
    from testnets import hooks_of

    calls = []

    def bad(out):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("target exploded")
        return out[0]

    pnet.train()
    before = hooks_of(pnet)
    with pytest.raises(RuntimeError, match="target exploded"):
        ScoreCAM(pnet, "feat", batch_size=2, progress=False)(x6[:1], targets=[bad])
    assert hooks_of(pnet) == before
    assert all(m.training for m in pnet.modules())
