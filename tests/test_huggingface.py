"""HuggingFace transformers vision models, built from small configs with random weights.

The image goes in positionally or as ``pixel_values=`` (``input_name``); the output is a
``ModelOutput`` whose ``.logits`` the engine reads; the target layer and the reshape are chosen
automatically (:data:`camlens.layers.HF_FAMILIES`); Swin stages return tuples, whose first tensor
is explained. Skipped when transformers is not installed (a test extra)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camlens import AblationCAM, EigenCAM, GradCAM, ScoreCAM
from camlens.layers import auto_target_layers
from camlens.reshape import TokenReshape
from camlens.targets import ClassifierOutputTarget
from testnets import hooks_of

transformers = pytest.importorskip("transformers", reason="transformers is not installed (the 'hf' / 'test' extra)")

_SMALL = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, num_labels=4)
_SWIN = dict(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4, num_labels=4)
_CNN = dict(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4)

# name -> (config class, kwargs, model class, input size, automatic layer, prefix tokens, token grid)
CASES = {
    "vit": ("ViTConfig", dict(image_size=16, patch_size=4, **_SMALL), "ViTForImageClassification",
            16, "vit.layers.1.layernorm_before", 1, (4, 4)),
    "deit-distilled": ("DeiTConfig", dict(image_size=16, patch_size=4, **_SMALL), "DeiTForImageClassificationWithTeacher",
                       16, "deit.layers.1.layernorm_before", 2, (4, 4)),
    "beit": ("BeitConfig", dict(image_size=16, patch_size=4, **_SMALL), "BeitForImageClassification",
             16, "beit.layers.1.layernorm_before", 1, (4, 4)),
    "dinov2": ("Dinov2Config", dict(image_size=16, patch_size=4, **_SMALL), "Dinov2ForImageClassification",
               16, "dinov2.encoder.layer.1.norm1", 1, (4, 4)),
    "dinov2-registers": ("Dinov2WithRegistersConfig", dict(image_size=16, patch_size=4, num_register_tokens=3, **_SMALL),
                         "Dinov2WithRegistersForImageClassification",
                         16, "dinov2_with_registers.encoder.layer.1.norm1", 4, (4, 4)),
    "swin": ("SwinConfig", _SWIN, "SwinForImageClassification", 32, "swin.encoder.layers.1", 0, (4, 4)),
    "swinv2": ("Swinv2Config", _SWIN, "Swinv2ForImageClassification", 32, "swinv2.encoder.layers.1", 0, (4, 4)),
    "convnext": ("ConvNextConfig", _CNN, "ConvNextForImageClassification", 64, "convnext.encoder.stages.1", None, None),
    "resnet": ("ResNetConfig", dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4),
               "ResNetForImageClassification", 32, "resnet.encoder.stages.1", None, None),
}  # fmt: skip


def _build(name: str) -> torch.nn.Module:
    config_cls, kwargs, model_cls, *_ = CASES[name]
    if not hasattr(transformers, model_cls):
        pytest.skip(f"transformers {transformers.__version__} has no {model_cls}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return getattr(transformers, model_cls)(getattr(transformers, config_cls)(**kwargs)).eval()


def _layer(model: torch.nn.Module, name: str) -> str:
    """The expected automatic layer of case ``name``; transformers 4.x names the ViT / DeiT / BEiT
    blocks ``encoder.layer.i`` where 5.x has ``layers.i``."""
    layer = CASES[name][4]
    return layer if any(n == layer for n, _ in model.named_modules()) else layer.replace(".layers.", ".encoder.layer.")


def _input(name: str, n: int = 2) -> torch.Tensor:
    size = CASES[name][3]
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", list(CASES))
def test_automatic_layer_and_reshape(name):
    model = _build(name)
    *_, prefix, grid = CASES[name]
    layer = _layer(model, name)
    choice = auto_target_layers(model)
    assert choice.names == [layer], choice.description
    assert "HuggingFace" in choice.family
    if prefix is None:
        assert choice.reshape_transform is None  # channels-first CNN stages
    else:
        assert isinstance(choice.reshape_transform, TokenReshape)
        assert (choice.reshape_transform.num_prefix_tokens, choice.reshape_transform.grid) == (prefix, grid)


@pytest.mark.parametrize("name", list(CASES))
def test_methods_with_no_layer_given_leave_nothing_behind(name):
    model = _build(name).train()  # flags must come back as they were
    flags = [m.training for m in model.modules()]
    hooks = hooks_of(model)
    x = _input(name)
    size = CASES[name][3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AblationCAM: HF models do not trace with torch.fx -> full-model path
        runs = {
            "GradCAM": GradCAM(model)(x),
            "EigenCAM": EigenCAM(model)(x),
            "ScoreCAM": ScoreCAM(model, top_k=4, batch_size=8, progress=False)(x),
            "AblationCAM": AblationCAM(model, progress=False)(x),
        }
    for method, maps in runs.items():
        assert maps.shape == (2, size, size), method
        assert np.isfinite(maps).all(), method
        assert maps.reshape(2, -1).std(axis=1).min() > 0, f"{method}: constant map"
    assert [m.training for m in model.modules()] == flags
    assert hooks_of(model) == hooks
    assert all(p.grad is None for p in model.parameters())


def _manual_gradcam(model, layer: str, x: torch.Tensor, target: int, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """Grad-CAM by hand: capture the layer's output (the first element of a tuple), differentiate
    the class logit, drop ``prefix`` tokens, lay the rest on ``grid``, weight channels by the mean
    gradient over positions, sum, ReLU."""
    module = dict(model.named_modules())[layer]
    store = {}

    def hook(m, args, out):
        tokens = out[0] if isinstance(out, tuple) else out
        tokens.retain_grad()
        store["a"] = tokens

    handle = module.register_forward_hook(hook)
    try:
        logits = model(x).logits
        logits[:, target].sum().backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    a, g = store["a"].detach(), store["a"].grad
    h, w = grid
    a = a[:, prefix:].transpose(1, 2).reshape(a.shape[0], -1, h, w)
    g = g[:, prefix:].transpose(1, 2).reshape(g.shape[0], -1, h, w)
    return F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1))


@pytest.mark.parametrize("name", ["dinov2-registers", "deit-distilled", "swin"])
def test_gradcam_equals_the_hand_computed_map(name):
    """Register / distillation tokens are dropped and a Swin stage's tuple is read at its tokens."""
    model = _build(name)
    *_, prefix, grid = CASES[name]
    layer = _layer(model, name)
    x = _input(name)
    explanation = GradCAM(model).explain(x, targets=[ClassifierOutputTarget(3)] * 2)
    want = _manual_gradcam(model, layer, x, 3, prefix, grid)
    got = torch.relu(explanation.layer_maps[0])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert float(want.flatten(1).amax(1).min()) > 0  # the check is not comparing blanks


def test_pixel_values_by_name_and_logits_output():
    model = _build("resnet")
    x = _input("resnet")
    cam = GradCAM(model)
    by_name = cam(x, targets=[ClassifierOutputTarget(1)] * 2, input_name="pixel_values")
    positional = cam(x, targets=[ClassifierOutputTarget(1)] * 2)
    np.testing.assert_allclose(by_name, positional, atol=1e-6)
    with torch.no_grad():  # the engine reads ModelOutput.logits
        logits = model(pixel_values=x).logits
    assert torch.allclose(cam.explain(x, input_name="pixel_values").scores, logits.max(dim=1).values, atol=1e-5)


def test_automatic_choice_equals_the_explicit_one():
    model = _build("vit")
    x = _input("vit")
    layer = _layer(model, "vit")
    auto = GradCAM(model)(x, input_name="pixel_values")
    explicit = GradCAM(model, layer, reshape_transform=TokenReshape(grid=(4, 4), num_prefix_tokens=1))(x)
    np.testing.assert_allclose(auto, explicit, atol=1e-6)


def test_other_input_size_falls_back_to_the_square_token_grid():
    """A ViT built for 16 px run at 24 px (interpolated position embeddings): 6x6 patches."""
    model = _build("vit")
    x = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    maps = GradCAM(model).explain(x, forward_kwargs={"interpolate_pos_encoding": True})
    assert maps.layer_maps[0].shape == (1, 6, 6) and maps.cam.shape == (1, 24, 24)


def _manual_legrad(model, x: torch.Tensor, target: int, readout, prefix: int, grid: tuple[int, int]) -> list[torch.Tensor]:
    """LeGrad by hand with eager attention: per block l, s^l = head(final norm(z^l)) read like the
    model's own head, E^l = 1/(H T) sum_h sum_i ReLU(ds^l / dA^l[h, i, :]), patch keys on the grid."""
    blocks = [m for n, m in model.named_modules() if type(m).__name__.endswith("Layer") and hasattr(m, "attention")]
    store: list[dict] = [{} for _ in blocks]
    handles = []
    for block, slot in zip(blocks, store):
        handles.append(block.attention.register_forward_hook(lambda m, a, out, slot=slot: slot.update(attn=out[1])))
        handles.append(block.register_forward_hook(lambda m, a, out, slot=slot: slot.update(z=out)))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    maps = []
    for slot in store:
        score = readout(slot["z"])[:, target].sum()
        (grad,) = torch.autograd.grad(score, slot["attn"])  # (N, H, T, T)
        heads, t = grad.shape[1], grad.shape[-1]
        e = grad.clamp_min(0).sum(dim=(1, 2)) / (heads * t)  # (N, T) over keys
        maps.append(e[:, prefix:].reshape(-1, *grid))
    model.zero_grad(set_to_none=True)
    return maps


@pytest.mark.parametrize("name", ["vit", "dinov2-registers", "deit-distilled"])
def test_legrad_equals_the_hand_computed_relevance(name):
    """LeGrad reads HuggingFace attention (q_proj / k_proj / v_proj / o_proj) from the gradient at
    o_proj's input, with the model's own head as the per-layer readout; checked against autograd
    through the explicit (eager) attention probabilities."""
    from camlens import LeGrad

    config_cls, kwargs, model_cls, *_ = CASES[name]
    if not hasattr(transformers, model_cls):
        pytest.skip(f"transformers {transformers.__version__} has no {model_cls}")
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(attn_implementation="eager", **kwargs)).eval()
    prefix, grid = CASES[name][5], CASES[name][6]
    if not all(hasattr(m, "o_proj") for n, m in model.named_modules() if n.endswith("attention")):
        pytest.skip("transformers 4.x attention layout (query/key/value): LeGrad needs readout= and q/k/v projections")
    x = _input(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the readout must reproduce the model's output (else a warning)
        explanation = LeGrad(model).explain(x, targets=[ClassifierOutputTarget(2)] * 2)
    from camlens.methods.legrad import default_readout

    want = _manual_legrad(model, x, 2, default_readout(model), prefix, grid)
    assert len(explanation.layer_maps) == len(want) == 2
    for got, expected in zip(explanation.layer_maps, want):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)
        assert float(expected.abs().max()) > 0


class _SelfAttention4x(torch.nn.Module):
    """transformers 4.x naming of a ViT self-attention (query / key / value, a tuple returned),
    sharing the weights of a transformers 5 attention (q_proj / k_proj / v_proj)."""

    def __init__(self, att) -> None:
        super().__init__()
        self.query, self.key, self.value = att.q_proj, att.k_proj, att.v_proj
        self.num_attention_heads = att.num_attention_heads

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        n, t, c = x.shape
        h = self.num_attention_heads
        q, k, v = (p(x).reshape(n, t, h, c // h).transpose(1, 2) for p in (self.query, self.key, self.value))
        a = (q @ k.transpose(-1, -2) * (c // h) ** -0.5).softmax(dim=-1)
        return ((a @ v).transpose(1, 2).reshape(n, t, c),)


class _Attention4x(torch.nn.Module):
    """transformers 4.x layout: ``attention`` (self-attention) then ``output.dense``."""

    def __init__(self, att) -> None:
        super().__init__()
        self.attention = _SelfAttention4x(att)
        self.output = torch.nn.Module()
        self.output.dense = att.o_proj

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, None]:
        return self.output.dense(self.attention(hidden_states)[0]), None


def test_legrad_reads_the_transformers_4_attention_layout():
    """The same weights in the 4.x layout (attention.query/key/value, output.dense) give the same maps."""
    from camlens import LeGrad

    model = _build("vit")
    if not hasattr(model.vit, "layers") or not hasattr(model.vit.layers[0].attention, "q_proj"):
        pytest.skip("needs the transformers 5 layout to build the 4.x one from")
    x = _input("vit")
    targets = [ClassifierOutputTarget(1)] * 2
    want = LeGrad(model).explain(x, targets=targets).layer_maps
    for layer in model.vit.layers:
        layer.attention = _Attention4x(layer.attention)
    got = LeGrad(model).explain(x, targets=targets).layer_maps
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert float(want[-1].abs().max()) > 0


@pytest.mark.parametrize(("name", "shape", "grid"), [
    ("dinov2-registers", (16, 24), (4, 6)),  # DINOv2 interpolates its position embeddings itself
    ("swin", (32, 64), (4, 8)),
    ("swin", (40, 72), (5, 9)),  # Swin pads each side up to its patch and merging sizes
])  # fmt: skip
def test_non_square_and_other_sizes_use_the_inputs_token_grid(name, shape, grid):
    model = _build(name)
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(3))
    for cam in (GradCAM(model), ScoreCAM(model, top_k=4, progress=False)):
        explanation = cam.explain(x)
        assert explanation.layer_maps[0].shape == (1, *grid)
        assert explanation.cam.shape == (1, *shape) and bool(torch.isfinite(explanation.cam).all())


def test_a_base_model_as_the_layer_is_read_at_its_last_hidden_state():
    """Target layer 'dinov2' returns a ModelOutput (a mapping): its first tensor, last_hidden_state,
    which the DINOv2 classifier reads (class token + mean of the patch tokens), is explained."""
    model = _build("dinov2")
    x = _input("dinov2")
    reshape = TokenReshape(grid=(4, 4), num_prefix_tokens=1)
    by_output = GradCAM(model, "dinov2", reshape_transform=reshape).explain(x)
    by_norm = GradCAM(model, "dinov2.layernorm", reshape_transform=reshape).explain(x)  # the same tensor
    torch.testing.assert_close(by_output.layer_maps[0], by_norm.layer_maps[0])
    assert float(by_output.layer_maps[0].abs().max()) > 0
