"""AblationCAM: naive-loop reference on tiny fixed-weight nets, tail-only path == full-model path,
fallback with a warning, ablation in the raw token layout, bounded batches, state restored."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from camlens import AblationCAM, CamLensWarning
from camlens import postprocess as pp
from camlens.errors import LayerOutputError
from camlens.reshape import raw_channel_axis
from camlens.targets import ClassifierOutputTarget

from ._perturb_nets import BatchSized, Branchy, PNet, ResNetish, TokenNet, token_reshape

CLASSES = [1, 4, 0]


def naive_ablation(model, layer, x, classes, channel_slice, reshape=None, value=0.0):
    """Ablation-CAM by the paper, one image and channel at a time, ablating through a plain hook.

    ``channel_slice(out, k)`` returns the raw-layout index of channel ``k``.
    """
    maps = []
    with torch.no_grad():
        for i in range(x.shape[0]):
            xi = x[i : i + 1]
            store = {}
            h = layer.register_forward_hook(lambda m, a, o: store.__setitem__("a", o.clone()))
            y = model(xi)[0, classes[i]].double()
            h.remove()
            raw = store["a"]
            a = (reshape(raw) if reshape is not None else raw)[0].double()
            total = torch.zeros_like(a[0])
            for k in range(a.shape[0]):

                def ablate(m, args, o, k=k):
                    o = o.clone()
                    o[channel_slice(o, k)] = value
                    return o

                h = layer.register_forward_hook(ablate)
                yk = model(xi)[0, classes[i]].double()
                h.remove()
                total = total + (y - yk) / y * a[k]
            maps.append(total)
    return torch.stack(maps)


def conv_channel(o, k):
    return (slice(None), k)


def token_channel(o, k):
    return (slice(None), slice(None), k)


def targets(classes):
    return [ClassifierOutputTarget(c) for c in classes]


def test_matches_naive_reference_hand_computed():
    model = PNet().eval()
    x = torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(5))
    cam = AblationCAM(model, "feat", batch_size=5, progress=False)
    exp = cam.explain(x, targets(CLASSES))
    assert cam.last_path == {"feat": "tail"}
    ref = naive_ablation(model, model.feat, x, CLASSES, conv_channel)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)


def test_weights_by_hand_on_linear_head():
    """Linear head on a 1x1 layer: y_k = y - W[c, k] * A_k, so w_k = W[c, k] * A_k / y exactly."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.Flatten(), torch.nn.Linear(3, 4)).eval()
    x = torch.randn(2, 2, 1, 1)
    cam = AblationCAM(model, "0", progress=False)
    exp = cam.explain(x, targets([2, 3]))
    with torch.no_grad():
        a = model[0](x)[:, :, 0, 0].double()
        w = model[2].weight.double()
        y = model(x).double()[[0, 1], [2, 3]]
    expected = torch.stack([(w[c] * a[i] / y[i] * a[i]).sum() for i, c in enumerate([2, 3])])
    np.testing.assert_allclose(exp.layer_maps[0][:, 0, 0].numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", ["blocks.1", "blocks.1.conv1", "blocks.2.conv2", "stem.0"])
def test_tail_path_equals_full_model_path(layer):
    model = ResNetish().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    fast = AblationCAM(model, layer, batch_size=4, progress=False)
    slow = AblationCAM(model, layer, batch_size=4, progress=False, fast_path=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CamLensWarning)
        a = fast.explain(x, targets([0, 3]))
        b = slow.explain(x, targets([0, 3]))
    assert fast.last_path == {layer: "tail"} and slow.last_path == {layer: "full"}
    torch.testing.assert_close(a.layer_maps[0], b.layer_maps[0], atol=1e-5, rtol=1e-5)
    module = model.get_submodule(layer)
    ref = naive_ablation(model, module, x, [0, 3], conv_channel)
    np.testing.assert_allclose(a.layer_maps[0].numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)


def test_tail_skips_layers_before_target():
    model = ResNetish().eval()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    calls = []
    handle = model.stem[0].register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    try:
        AblationCAM(model, "blocks.2", batch_size=2, progress=False)(x, 1)
    finally:
        handle.remove()
    assert calls == [1]  # only the capture pass ran the stem; 6 ablations ran the tail only


@pytest.mark.parametrize("cls", [Branchy, BatchSized])
def test_fallback_warns_once_and_is_exact(cls):
    model = cls().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    cam = AblationCAM(model, "blocks.1", batch_size=5, progress=False)
    with pytest.warns(CamLensWarning, match="cannot run only the layers after 'blocks.1'"):
        a = cam.explain(x, targets([2, 0]))
    assert cam.last_path == {"blocks.1": "full"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", CamLensWarning)  # said once, not on every call
        cam.explain(x, targets([2, 0]))
    ref = naive_ablation(model, model.blocks[1], x, [2, 0], conv_channel)
    np.testing.assert_allclose(a.layer_maps[0].numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)


def test_tokens_are_ablated_on_their_channel_axis():
    model = TokenNet().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    raw = torch.zeros(2, 17, 4)
    axis, index = raw_channel_axis(raw, 4, token_reshape)
    assert axis == 2 and index.tolist() == [0, 1, 2, 3]
    for fast_path in (True, False):
        cam = AblationCAM(model, "mix", reshape_transform=token_reshape, progress=False, fast_path=fast_path)
        exp = cam.explain(x, targets([0, 3]))
        ref = naive_ablation(model, model.mix, x, [0, 3], token_channel, reshape=token_reshape)
        np.testing.assert_allclose(exp.layer_maps[0].numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)


def test_reshape_that_computes_is_rejected():
    model = TokenNet().eval()
    x = torch.randn(1, 3, 8, 8)
    cam = AblationCAM(model, "mix", reshape_transform=lambda t: token_reshape(t) * 2 + 0.5, progress=False)
    with pytest.raises(LayerOutputError, match="must only rearrange elements"):
        cam(x, 0)


def test_ablation_value_and_zero_score_guard():
    model = ResNetish().eval()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ref_score = model(x)[0, 1].clone()

    def zero_at_input(out):  # exactly 0 on the un-ablated input
        return out[1] - ref_score

    cam = AblationCAM(model, "blocks.2", progress=False, ablation_value=-1.5)
    exp = cam.explain(x, [zero_at_input])
    assert exp.scores.item() == 0.0
    with torch.no_grad():
        a = model.blocks(model.stem(x))
        yk = []
        for k in range(a.shape[1]):
            b = a.clone()
            b[:, k] = -1.5
            yk.append(model.fc(b.mean(dim=(2, 3)))[0, 1] - ref_score)
    expected = sum((0.0 - yk[k]) * a[0, k] for k in range(a.shape[1]))  # w_k = y - y_k when y == 0
    assert torch.isfinite(exp.layer_maps[0]).all()
    torch.testing.assert_close(exp.layer_maps[0][0], expected, atol=1e-5, rtol=1e-5)


def test_batches_bounded_and_capture_hooks_silent():
    model = ResNetish().eval()
    x = torch.randn(2, 3, 8, 8)
    seen, capture = [], []
    layer = model.blocks[1]
    h1 = model.blocks[2].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    h2 = layer.register_forward_pre_hook(lambda m, a: capture.append(len(m._forward_hooks)))
    try:
        AblationCAM(model, layer, batch_size=5, progress=False, fast_path=False)(x, 0)
    finally:
        h1.remove()
        h2.remove()
    assert seen[0] == 2 and max(seen[1:]) <= 5 and sum(seen[1:]) == 2 * 6
    # capture pass: only the capture hook; ablation passes: only the ablation hook (never the capture)
    assert capture == [1] * len(seen)


def test_eigen_smooth_several_layers_aug_smooth():
    model = ResNetish().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    cam = AblationCAM(model, ["blocks.0", "blocks.2"], progress=False)
    plain = cam.explain(x, targets([1, 2]))
    eig = cam.explain(x, targets([1, 2]), eigen_smooth=True)
    from camlens.methods.base import LayerContext

    cap = cam.engine.run(x, targets([1, 2]), need_gradients=False)
    acts = cap.activations[1]
    ctx = LayerContext("blocks.2", model.blocks[2], acts, None, acts, x, cap.targets, cap.scores, cap.outputs)
    w = cam.cam_weights(ctx)
    assert w.shape == (2, 6, 1, 1)  # one convention for every family: (N, C, 1, 1)
    torch.testing.assert_close(plain.layer_maps[1], (w * acts).sum(1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eig.layer_maps[1], pp.eigen_projection(w * acts), atol=1e-5, rtol=1e-5)
    out = cam(x, 1, aug_smooth=True)
    assert out.shape == (2, 8, 8) and np.isfinite(out).all()


@pytest.mark.parametrize("fast_path", [True, False])
def test_raising_target_leaves_model_as_found(fast_path):
    from testnets import hooks_of

    model = ResNetish()
    model.train()
    model.blocks[0].eval()
    flags = [m.training for m in model.modules()]
    inplace = [m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    before = hooks_of(model)
    calls = []

    def bad(out):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("target exploded")
        return out[0]

    cam = AblationCAM(model, "blocks.1", batch_size=1, progress=False, fast_path=fast_path)
    with pytest.raises(RuntimeError, match="target exploded"):
        cam(torch.randn(1, 3, 8, 8), targets=[bad])
    assert hooks_of(model) == before
    assert [m.training for m in model.modules()] == flags
    assert [m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU)] == inplace


def test_progress_bar_optional(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name == "tqdm" or name.startswith("tqdm."):
            raise ImportError("no tqdm")
        return real_import(name, *args, **kwargs)

    model = ResNetish().eval()
    x = torch.randn(1, 3, 8, 8)
    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    out = AblationCAM(model, "blocks.1", batch_size=2, progress=True)(x, 0)
    assert np.isfinite(out).all()
    monkeypatch.undo()
    import camlens.progress

    monkeypatch.setattr(camlens.progress, "_is_terminal", lambda stream: True)  # off a terminal: no bar
    AblationCAM(model, "blocks.1", batch_size=2, progress=True)(x, 0)
    assert "AblationCAM" in capsys.readouterr().err
    AblationCAM(model, "blocks.1", batch_size=2, progress=False)(x, 0)
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_resnet_tail_equals_full():
    """Exact in float64; in float32 the two paths differ only by rounding (the batch-1 capture and
    the batch-128 full passes round differently, and y - y_k is small), so the maps agree to ~1e-3."""
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for m, xx, tol in ((model, x, 1e-3), (copy.deepcopy(model).double(), x.double(), 1e-7)):
        fast = AblationCAM(m, "layer4[-1]", batch_size=128, progress=False, closed_form=False)
        a = fast.explain(xx, targets([3]))
        assert fast.last_path == {"layer4.1": "tail"}
        full = AblationCAM(m, "layer4[-1]", batch_size=128, progress=False, fast_path=False)
        b = full.explain(xx, targets([3]))
        torch.testing.assert_close(a.cam, b.cam, atol=tol, rtol=tol)


def test_core_reshape_transforms_map_to_raw_axes():
    reshape = pytest.importorskip("camlens.reshape")
    tokens = reshape.TokenReshape(grid=(4, 4), num_prefix_tokens=1)
    axis, index = raw_channel_axis(torch.zeros(2, 17, 4), 4, tokens)
    assert axis == 2 and index.tolist() == [0, 1, 2, 3]
    axis, index = raw_channel_axis(torch.zeros(2, 3, 3, 5), 5, reshape.swin_reshape_transform)
    assert axis == 3 and index.tolist() == [0, 1, 2, 3, 4]


def test_tail_check_catches_hooks_fx_inlines():
    """A user hook that changes the output of an inlined module is missed by the traced tail:
    the per-call check notices and the full model runs (with the hook)."""
    model = ResNetish().eval()
    handle = model.blocks[2].register_forward_hook(lambda m, a, o: o * 2.0 + 0.1)
    calls = []
    observer = model.blocks.register_forward_hook(lambda m, a, o: calls.append(type(o).__name__))
    try:
        x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(8))
        cam = AblationCAM(model, "blocks.1", progress=False)
        with pytest.warns(CamLensWarning, match="split model's output differs"):
            exp = cam.explain(x, targets([0, 4]))
        assert cam.last_path == {"blocks.1": "full"}
        ref = naive_ablation(model, model.blocks[1], x, [0, 4], conv_channel)
        np.testing.assert_allclose(exp.layer_maps[0].numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)
        assert "Proxy" not in calls  # tracing never called the user's hooks
    finally:
        handle.remove()
        observer.remove()
