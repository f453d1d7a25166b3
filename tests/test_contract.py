"""Contract every registered CAM method must honour (new methods are picked up automatically)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import camlens
from camlens import available_methods, get_method
from camlens.targets import ClassifierOutputTarget

from contract_setup import settings
from testnets import SmallCNN, hooks_of

METHODS = available_methods()


def build_model(name: str) -> nn.Module:
    """The method's contract model (``model`` in contract_setup), SmallCNN by default."""
    return settings(name).get("model", SmallCNN)()


def make(name: str, model: nn.Module, **kw):
    conf = settings(name)
    layers = conf["layers"](model) if "layers" in conf else [model.block]
    return get_method(name)(model=model, target_layers=layers, progress=False, **{**conf.get("kwargs", {}), **kw})


@pytest.fixture(params=METHODS)
def method(request) -> str:
    reason = settings(request.param).get("skip", {}).get(request.node.originalname)
    if reason:
        pytest.skip(f"{request.param}: {reason}")
    return request.param


@pytest.fixture
def small_cnn(method) -> nn.Module:
    """The model each contract test runs on (SmallCNN unless contract_setup names another), in eval mode."""
    return build_model(method).eval()


def test_registry_is_not_empty_and_exports_classes():
    for name in ["gradcam", "gradcam++", "xgradcam", "hirescam", "gradcamelementwise", "layercam", "eigencam", "eigengradcam"]:
        assert name in METHODS
        assert getattr(camlens, get_method(name).__name__) is get_method(name)


def test_shape_range_dtype_finite(method, small_cnn, image_batch):
    out = make(method, small_cnn)(input_tensor=image_batch)
    assert isinstance(out, np.ndarray)
    assert out.shape == (4, 16, 16)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.reshape(4, -1).max(axis=1).min() == pytest.approx(1.0)  # normalised, non-constant


def test_explain_returns_tensors_on_model_device(method, small_cnn, image_batch):
    exp = make(method, small_cnn).explain(image_batch, [ClassifierOutputTarget(1)] * 4)
    assert exp.cam.device == next(small_cnn.parameters()).device
    assert exp.cam.dtype == torch.float32
    assert exp.cam.shape == (4, 16, 16)
    assert exp.layer_maps[0].shape == (4, 8, 8)
    assert exp.scores.shape == (4,)
    with torch.no_grad():
        expected = small_cnn(image_batch)[:, 1]
    torch.testing.assert_close(exp.scores, expected, rtol=1e-5, atol=1e-5)


def test_batch_equals_one_by_one(method, small_cnn, image_batch):
    cam = make(method, small_cnn)
    targets = [ClassifierOutputTarget(c) for c in (0, 1, 2, 5)]
    batched = cam(input_tensor=image_batch, targets=targets)
    single = np.concatenate([cam(input_tensor=image_batch[i : i + 1], targets=[targets[i]]) for i in range(4)])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_deterministic(method, small_cnn, image_batch):
    cam = make(method, small_cnn)
    np.testing.assert_array_equal(cam(image_batch, 3), cam(image_batch, 3))


def test_model_state_left_as_found(method, image_batch):
    model = build_model(method)
    model.train()
    next(iter(model.children())).eval()  # mixed flags must come back exactly (SmallCNN: stem)
    list(model.parameters())[-2].requires_grad_(False)  # SmallCNN: fc.weight
    grads = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            p.grad = torch.full_like(p, 0.5)
            grads[name] = p.grad.clone()
    flags = [m.training for m in model.modules()]
    req = [p.requires_grad for p in model.parameters()]
    state = copy.deepcopy(model.state_dict())
    user_hook = list(model.children())[1].register_forward_hook(lambda *a: None)  # SmallCNN: block
    before = hooks_of(model)
    make(method, model)(input_tensor=image_batch)
    assert hooks_of(model) == before
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == req
    for name, p in model.named_parameters():
        if name in grads:
            assert torch.equal(p.grad, grads[name]), name
        else:
            assert p.grad is None
    for k, v in model.state_dict().items():  # BN running stats untouched (eval during the call)
        assert torch.equal(v, state[k]), k
    user_hook.remove()


def test_no_hooks_left_after_raising_target(method, image_batch):
    model = build_model(method)
    model.train()
    before = hooks_of(model)

    def bad_target(output):
        raise RuntimeError("target exploded")

    with pytest.raises(RuntimeError, match="target exploded"):
        make(method, model)(input_tensor=image_batch, targets=[bad_target] * 4)
    assert hooks_of(model) == before
    assert all(m.training for m in model.modules())


def test_no_hooks_left_after_raising_model(method, image_batch):
    model = build_model(method)
    before = hooks_of(model)
    with pytest.raises(RuntimeError):
        make(method, model)(input_tensor=image_batch[:, :2])  # wrong channel count: the conv raises
    assert hooks_of(model) == before


def test_inside_no_grad_and_inference_mode(method, small_cnn, image_batch):
    cam = make(method, small_cnn)
    ref = cam(image_batch, 2)
    with torch.no_grad():
        np.testing.assert_allclose(cam(image_batch, 2), ref, atol=1e-6)
        assert not torch.is_grad_enabled()
    with torch.inference_mode():
        np.testing.assert_allclose(cam(image_batch, 2), ref, atol=1e-6)
    assert torch.is_grad_enabled()


def test_smoothing_options(method, small_cnn, image_batch):
    cam = make(method, small_cnn)
    for kw in ({"aug_smooth": True}, {"eigen_smooth": True}, {"aug_smooth": True, "eigen_smooth": True}):
        out = cam(image_batch, 1, **kw)
        assert out.shape == (4, 16, 16)
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_several_layers(method, small_cnn, image_batch):
    conf = settings(method)
    cam = get_method(method)(
        model=small_cnn, target_layers=conf.get("several_layers", ["stem", "block"]), progress=False, **conf.get("kwargs", {})
    )
    exp = cam.explain(image_batch, target_category=0)
    assert [m.shape for m in exp.layer_maps] == conf.get("several_layer_shapes", [(4, 16, 16), (4, 8, 8)])
    assert exp.cam.shape == (4, 16, 16)
    assert float(exp.cam.min()) >= 0 and float(exp.cam.max()) == pytest.approx(1.0)


def test_no_memory_growth_across_calls(method, small_cnn, image_batch):
    import gc
    import weakref

    cam = make(method, small_cnn)
    refs = []
    spied = list(small_cnn.children())[1]  # SmallCNN: block
    orig = spied.forward

    def spy(x):
        out = orig(x)
        refs.append(weakref.ref(out))
        return out

    spied.forward = spy
    try:
        for _ in range(3):
            cam(image_batch, 1)
    finally:
        del spied.forward
    gc.collect()
    assert refs and all(r() is None for r in refs), "activations outlived the call"
