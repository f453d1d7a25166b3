"""LeGrad on tiny random ViTs (torchvision and timm) against a naive per-layer, per-image reference
that recomputes the softmax attention explicitly; agreement with torchcam 0.5.0; errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from camlens import LeGrad
from camlens import postprocess as pp
from camlens.errors import CamLensError, InputTypeError, LayerNotFoundError
from camlens.targets import ClassifierOutputTarget

from testnets import SmallCNN, hooks_of

CLASSES = [0, 3, 1]


def tv_vit(seed: int = 0) -> torchvision.models.VisionTransformer:
    torch.manual_seed(seed)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=5
    )
    with torch.no_grad():  # torchvision starts the head at zero: give it random weights
        model.heads.head.weight.normal_(0, 0.5)
        model.heads.head.bias.normal_(0, 0.1)
    return model.eval()


def timm_vit(seed: int = 0, **kw) -> nn.Module:
    vision_transformer = pytest.importorskip("timm.models.vision_transformer")
    torch.manual_seed(seed)
    model = vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=5, **kw
    )
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
    return model.eval()


@pytest.fixture
def x32() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))


def _attention(x_norm, w_qkv, b_qkv, heads):
    """Explicit softmax attention; returns (A as a leaf, V) for one image (1, T, C)."""
    _, t, _ = x_norm.shape
    qkv = F.linear(x_norm, w_qkv, b_qkv)
    q, k, v = qkv.chunk(3, dim=-1)
    d = q.shape[-1] // heads
    split = lambda z: z.reshape(1, t, heads, d).transpose(1, 2)  # noqa: E731
    a = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(d), dim=-1)
    return a.detach().requires_grad_(True), split(v).detach()


def _relevance_by_loops(grad: torch.Tensor) -> np.ndarray:
    """1/(H T) sum_h sum_i max(g[h, i, j], 0) for every key j, by loops."""
    g = grad[0].double().numpy()
    heads, t, _ = g.shape
    return np.array([sum(max(g[h, i, j], 0.0) for h in range(heads) for i in range(t)) / (heads * t) for j in range(t)])


def naive_torchvision(model, x, classes, readout=None):
    readout = readout or (lambda z: model.heads(model.encoder.ln(z)[:, 0]))
    out = []
    for n in range(x.shape[0]):
        z = model._process_input(x[n : n + 1])
        z = torch.cat([model.class_token, z], dim=1) + model.encoder.pos_embedding
        layers = []
        for block in model.encoder.layers:
            mha = block.self_attention
            a, v = _attention(block.ln_1(z), mha.in_proj_weight, mha.in_proj_bias, mha.num_heads)
            u = (a @ v).transpose(1, 2).reshape(z.shape)
            z1 = z.detach() + mha.out_proj(u)
            z_out = z1 + block.mlp(block.ln_2(z1))
            (grad,) = torch.autograd.grad(readout(z_out)[0, classes[n]], a)
            layers.append(_relevance_by_loops(grad)[1:])
            z = z_out.detach()
        torch.testing.assert_close(model.heads(model.encoder.ln(z)[:, 0]), model(x[n : n + 1]), rtol=1e-4, atol=1e-5)
        out.append(layers)
    return np.array(out)  # (N, L, patches)


def naive_timm(model, x, classes):
    out = []
    for n in range(x.shape[0]):
        z = model.norm_pre(model._pos_embed(model.patch_embed(x[n : n + 1])))
        layers = []
        for block in model.blocks:
            att = block.attn
            a, v = _attention(block.norm1(z), att.qkv.weight, att.qkv.bias, att.num_heads)
            u = (a @ v).transpose(1, 2).reshape(z.shape)
            z1 = z.detach() + block.ls1(att.proj(att.norm(u)))
            z_out = z1 + block.ls2(block.mlp(block.norm2(z1)))
            (grad,) = torch.autograd.grad(model.forward_head(model.norm(z_out))[0, classes[n]], a)
            layers.append(_relevance_by_loops(grad)[model.num_prefix_tokens :])
            z = z_out.detach()
        torch.testing.assert_close(model.forward_head(model.norm(z)), model(x[n : n + 1]), rtol=1e-4, atol=1e-5)
        out.append(layers)
    return np.array(out)


def _check(exp, ref):
    n, layers, p = ref.shape
    side = int(math.isqrt(p))
    for l in range(layers):
        np.testing.assert_allclose(exp.layer_maps[l].numpy(), ref[:, l].reshape(n, side, side), rtol=1e-4, atol=1e-8)
    merged = pp.minmax_normalize(pp.upsample(torch.as_tensor(ref.mean(axis=1).reshape(n, side, side)).float(), (32, 32)))
    np.testing.assert_allclose(exp.cam.numpy(), merged.numpy(), atol=1e-5)


def test_torchvision_vit_matches_naive_reference(x32):
    model = tv_vit()
    exp = LeGrad(model).explain(x32, [ClassifierOutputTarget(c) for c in CLASSES])
    assert exp.layer_names == ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]
    assert exp.cam.shape == (3, 32, 32) and exp.layer_maps[0].shape == (3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(exp.scores, model(x32)[range(3), CLASSES])
    ref = naive_torchvision(model, x32, CLASSES)
    assert ref.max() > 0
    _check(exp, ref)


def test_timm_vit_matches_naive_reference(x32):
    model = timm_vit()
    exp = LeGrad(model).explain(x32, [ClassifierOutputTarget(c) for c in CLASSES])
    assert exp.layer_names == ["blocks.0", "blocks.1"]
    _check(exp, naive_timm(model, x32, CLASSES))


def test_timm_deit_distilled_and_avg_pool(x32):
    vision_transformer = pytest.importorskip("timm.models.deit")
    torch.manual_seed(1)
    deit = vision_transformer.VisionTransformerDistilled(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=5
    ).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default readout reproduces the model's output: no warning
        exp = LeGrad(deit).explain(x32, target_category=1)
        assert exp.layer_maps[0].shape == (3, 4, 4)  # class + distillation token dropped
        avg = LeGrad(timm_vit(global_pool="avg", class_token=False)).explain(x32, target_category=2)
    assert avg.layer_maps[1].shape == (3, 4, 4)
    assert float(avg.cam.max()) == pytest.approx(1.0)


def test_single_and_chosen_layers(x32):
    model = tv_vit()
    full = LeGrad(model).explain(x32, target_category=CLASSES)
    last = LeGrad(model, ["encoder.layers[-1]"]).explain(x32, target_category=CLASSES)
    torch.testing.assert_close(last.layer_maps[0], full.layer_maps[1])  # per-layer maps do not interact


def test_matches_torchcam_with_its_token_mean_readout(x32):
    methods = pytest.importorskip("torchcam.methods", reason="torchcam is not installed")
    if not hasattr(methods, "LeGrad"):
        pytest.skip("this torchcam has no LeGrad")
    model = tv_vit()
    names = ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]
    with methods.LeGrad(model, names) as extractor:
        scores = model(x32)
        theirs = extractor(class_idx=CLASSES, scores=scores)[0].detach()
    assert not any(p.grad is not None for p in model.parameters())
    mean_readout = lambda z: model.heads(model.encoder.ln(z.mean(dim=1)))  # noqa: E731  (torchcam's projection)
    exp = LeGrad(model, names, readout=mean_readout).explain(x32, target_category=CLASSES)
    ours = pp.minmax_normalize(torch.stack(exp.layer_maps).mean(dim=0))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    naive = naive_torchvision(model, x32, CLASSES, readout=mean_readout)
    _check(exp, naive)


def test_no_hooks_or_state_left_and_grad_mode_restored(x32):
    model = tv_vit()
    model.train()
    before = hooks_of(model)
    LeGrad(model)(x32, 1)
    assert hooks_of(model) == before
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled()

    def boom(out):
        raise RuntimeError("target exploded")

    with pytest.raises(RuntimeError, match="target exploded"):
        LeGrad(model)(x32, targets=[boom] * 3)
    assert hooks_of(model) == before and torch.is_grad_enabled()


def test_errors(x32):
    with pytest.raises(LayerNotFoundError, match="LeGrad explains vision transformers, and SmallCNN has no transformer block"):
        LeGrad(SmallCNN())
    with pytest.raises(LayerNotFoundError, match="has 0 self-attention children"):
        LeGrad(SmallCNN(), "block")
    model = tv_vit()
    inner = LeGrad(model, ["encoder.layers[0].self_attention", "encoder.layers[0].ln_1", "encoder.layers[1].ln_1"])
    assert inner.target_layer_names == ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]
    with pytest.raises(LayerNotFoundError, match="is an attention module; LeGrad needs the transformer block"):
        LeGrad(nn.Sequential(nn.MultiheadAttention(8, 2)), "0")
    with pytest.raises(InputTypeError, match="readout must be a callable"):
        LeGrad(model, readout=3)
    wrapped = nn.Sequential(model)
    with pytest.raises(CamLensError, match="pass readout="):
        LeGrad(wrapped)
    exp = LeGrad(wrapped, readout=lambda z: model.heads(model.encoder.ln(z)[:, 0])).explain(x32, target_category=CLASSES)
    torch.testing.assert_close(exp.layer_maps[1], LeGrad(model).explain(x32, target_category=CLASSES).layer_maps[1])


def test_wrong_readout_warns(x32):
    model = tv_vit()
    with pytest.warns(UserWarning, match="readout of the last block gives outputs"):
        LeGrad(model)  # no warning at construction
        cam = LeGrad(model)
        cam.engine.check_readout = True
        cam.engine.readout = lambda z: model.heads(model.encoder.ln(z)[:, 1])
        cam(x32, 0)


def test_aug_smooth_and_eigen_smooth(x32):
    cam = LeGrad(tv_vit())
    out = cam(x32, 1, aug_smooth=True)
    assert out.shape == (3, 32, 32) and np.isfinite(out).all() and out.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(cam(x32, 1, eigen_smooth=True), cam(x32, 1))  # documented: ignored


def test_constant_target_warns_and_gives_blank_maps(x32):
    with pytest.warns(UserWarning, match="does not depend on its attention"):
        exp = LeGrad(tv_vit()).explain(x32, [lambda out: torch.tensor(1.0)] * 3)
    assert float(exp.cam.abs().max()) == 0.0
