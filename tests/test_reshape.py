"""Token and channels-last reshapes: exact layouts, inference from counts and models, error messages."""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest
import torch
from torch import nn

from camlens import GradCAM, HiResCAM
from camlens.errors import InputTypeError, ReshapeError
from camlens.layers import reshape_transform_for
from camlens.reshape import (
    ChannelsLast,
    TokenReshape,
    explaining_input,
    model_patch_size,
    model_token_layout,
    swin_reshape_transform,
    vit_reshape_transform,
)


def tokens(n: int, prefix: int, h: int, w: int, c: int) -> torch.Tensor:
    return torch.arange(n * (prefix + h * w) * c, dtype=torch.float32).reshape(n, prefix + h * w, c)


def expected_grid(x: torch.Tensor, prefix: int, h: int, w: int) -> torch.Tensor:
    """Naive loop: out[n, c, i, j] = x[n, prefix + i*w + j, c]."""
    n, _, c = x.shape
    out = torch.empty(n, c, h, w)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                out[b, :, i, j] = x[b, prefix + i * w + j, :]
    return out


# ---------------------------------------------------------------------- TokenReshape layout
@pytest.mark.parametrize(
    "prefix,h,w",
    [(1, 3, 3), (0, 2, 2), (2, 4, 4), (5, 3, 3), (1, 2, 3), (1, 3, 2)],
)
def test_token_reshape_layout_matches_naive_loop(prefix, h, w):
    x = tokens(2, prefix, h, w, 5)
    out = TokenReshape(grid=(h, w), num_prefix_tokens=prefix)(x)
    assert out.shape == (2, 5, h, w)
    torch.testing.assert_close(out, expected_grid(x, prefix, h, w), rtol=0, atol=0)


def test_prefix_inferred_from_explicit_grid():
    x = tokens(1, 5, 3, 3, 4)  # class + 4 registers
    reshape = TokenReshape(grid=3)
    assert reshape.layout(14) == (5, (3, 3))
    torch.testing.assert_close(reshape(x), expected_grid(x, 5, 3, 3), rtol=0, atol=0)


@pytest.mark.parametrize("prefix,side", [(1, 4), (0, 5), (2, 3), (5, 6)])
def test_square_grid_and_prefix_inferred_from_token_count(prefix, side):
    x = tokens(1, prefix, side, side, 3)
    reshape = TokenReshape()
    assert reshape.layout(x.shape[1]) == (prefix, (side, side))
    torch.testing.assert_close(reshape(x), expected_grid(x, prefix, side, side), rtol=0, atol=0)


def test_explicit_prefix_with_inferred_square_grid():
    x = tokens(1, 2, 3, 3, 2)  # 11 tokens: 2 prefix + 3x3
    torch.testing.assert_close(TokenReshape(num_prefix_tokens=2)(x), expected_grid(x, 2, 3, 3), rtol=0, atol=0)


def test_wrong_grid_error_names_expected_and_received_counts_and_the_fix():
    x = torch.zeros(1, 50, 8)
    with pytest.raises(ReshapeError, match=re.escape("ViT reshape expected 1 + 14x14 = 197 tokens, got 50; pass grid=(7, 7)")):
        TokenReshape(grid=(14, 14), num_prefix_tokens=1)(x)
    with pytest.raises(ReshapeError, match=re.escape("expected 1 + 14x14 = 197 tokens, got 50; pass grid=(7, 7)")):
        TokenReshape(grid=14)(x)  # prefix unknown: the class-token convention is assumed in the message


def test_wrong_prefix_error_suggests_prefix():
    x = torch.zeros(1, 18, 8)  # 2 prefix + 4x4 (DeiT distilled)
    with pytest.raises(ReshapeError, match=re.escape("got 18; pass grid=(4, 4), num_prefix_tokens=2")):
        TokenReshape(grid=(4, 4), num_prefix_tokens=1)(x)


def test_non_square_count_without_grid_says_how_to_fix():
    x = torch.zeros(1, 1 + 6, 4)  # 2x3 patches: cannot be inferred
    with pytest.raises(ReshapeError, match=r"got 7; 7 - 1 = 6 patch tokens is not a square: pass grid=\(h, w\) with h\*w = 6"):
        TokenReshape()(x)
    out = TokenReshape(grid=(2, 3))(x)  # the fix works
    assert out.shape == (1, 4, 2, 3)


def test_token_reshape_rejects_maps_and_bad_arguments():
    with pytest.raises(ReshapeError, match=r"expects tokens of shape \(N, tokens, C\); got shape \(1, 4, 2, 2\); this looks like"):
        TokenReshape()(torch.zeros(1, 4, 2, 2))
    with pytest.raises(InputTypeError, match="expects a tensor"):
        TokenReshape()(np.zeros((1, 5, 2)))  # type: ignore[arg-type]
    with pytest.raises(ReshapeError, match="num_prefix_tokens must be a non-negative int"):
        TokenReshape(num_prefix_tokens=-1)
    with pytest.raises(ReshapeError, match=r"grid must be a pair of positive ints"):
        TokenReshape(grid=(3, 0))
    with pytest.raises(InputTypeError, match="grid must be an int or a pair"):
        TokenReshape(grid="7x7")  # type: ignore[arg-type]


def test_non_strict_grid_falls_back_to_square_count():
    reshape = TokenReshape(grid=(14, 14), num_prefix_tokens=1, strict=False)  # as built from a 224 model
    x = tokens(1, 1, 4, 4, 3)  # the model was run at 64x64
    torch.testing.assert_close(reshape(x), expected_grid(x, 1, 4, 4), rtol=0, atol=0)
    with pytest.raises(ReshapeError, match=re.escape("ViT reshape expected 1 + 14x14 = 197 tokens, got 7")):
        reshape(torch.zeros(1, 7, 3))  # 6 patches: neither the model grid nor a square


def test_non_strict_grid_with_a_stride_follows_the_input_being_explained():
    """A 224-px model (14x14) run on a 64x96 input: 4x6 patches of 16 px, laid out from the input."""
    reshape = TokenReshape(grid=(14, 14), num_prefix_tokens=5, strict=False, stride=16)
    x = tokens(2, 5, 4, 6, 3)
    with explaining_input((64, 96)):
        torch.testing.assert_close(reshape(x), expected_grid(x, 5, 4, 6), rtol=0, atol=0)
    with explaining_input((96, 64)):  # the same count on the transposed input: 6x4
        torch.testing.assert_close(reshape(x), expected_grid(x, 5, 6, 4), rtol=0, atol=0)
    with explaining_input((70, 100)), pytest.raises(ReshapeError):  # 4x6 by floor, 5x7 by ceil: 24 fits
        reshape(tokens(1, 5, 5, 6, 3))  # 30 patches fit neither
    with explaining_input((70, 100)):  # a model that pads (Swin): ceil(70/16) x ceil(100/16) = 5 x 7
        x = tokens(1, 5, 5, 7, 3)
        torch.testing.assert_close(reshape(x), expected_grid(x, 5, 5, 7), rtol=0, atol=0)
    with pytest.raises(ReshapeError, match="is not a square"):  # outside a CAM call: no input size known
        reshape(tokens(1, 5, 4, 6, 3))
    strict = TokenReshape(grid=(14, 14), num_prefix_tokens=5, stride=16)  # a grid the user gave is kept
    with explaining_input((64, 96)), pytest.raises(ReshapeError, match="expected 5 \\+ 14x14"):
        strict(x)


def test_non_square_input_to_a_vit_built_for_squares():
    """GradCAM on a timm ViT (dynamic image size) at 64x96: the automatic reshape reads the patch size
    and lays the 4x6 patch tokens out from the input; the same as an explicit grid."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=1, dynamic_img_size=True).eval()
    assert model_patch_size(vit) == (16, 16)
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    auto = GradCAM(vit).explain(x)
    explicit = GradCAM(vit, "blocks[-1].norm1", reshape_transform=TokenReshape(grid=(4, 6), num_prefix_tokens=1))(x)
    assert auto.layer_maps[0].shape == (2, 4, 6)
    np.testing.assert_allclose(auto.numpy(), explicit, atol=1e-6)


def test_reshape_is_differentiable_and_follows_device_dtype():
    x = tokens(1, 1, 2, 2, 3).double().requires_grad_(True)
    out = TokenReshape()(x)
    assert out.dtype == torch.float64
    out.sum().backward()
    assert x.grad is not None and x.grad[:, 0].abs().sum() == 0 and x.grad[:, 1:].eq(1).all()


# ---------------------------------------------------------------------- ready-made functions
def test_vit_reshape_transform_is_a_drop_in_function():
    x = tokens(2, 1, 3, 3, 4)
    torch.testing.assert_close(vit_reshape_transform(x), expected_grid(x, 1, 3, 3), rtol=0, atol=0)
    y = tokens(1, 1, 2, 3, 4)
    torch.testing.assert_close(vit_reshape_transform(y, 2, 3), expected_grid(y, 1, 2, 3), rtol=0, atol=0)
    partial = functools.partial(vit_reshape_transform, height=2, width=3)
    torch.testing.assert_close(partial(y), expected_grid(y, 1, 2, 3), rtol=0, atol=0)
    with pytest.raises(ReshapeError, match="pass both height and width"):
        vit_reshape_transform(y, 2)


def test_swin_reshape_transform_channels_last_and_tokens():
    x = torch.randn(2, 3, 4, 5)  # (N, h, w, C)
    torch.testing.assert_close(swin_reshape_transform(x), x.permute(0, 3, 1, 2), rtol=0, atol=0)
    t = torch.randn(2, 9, 5)  # (N, h*w, C)
    torch.testing.assert_close(swin_reshape_transform(t), t.reshape(2, 3, 3, 5).permute(0, 3, 1, 2), rtol=0, atol=0)
    t6 = torch.randn(1, 6, 5)
    torch.testing.assert_close(swin_reshape_transform(t6, 2, 3), t6.reshape(1, 2, 3, 5).permute(0, 3, 1, 2), rtol=0, atol=0)
    with pytest.raises(ReshapeError, match="got 6 tokens, which is not a square grid; pass grid=\\(h, w\\) with h\\*w = 6"):
        swin_reshape_transform(t6)
    with pytest.raises(ReshapeError, match=re.escape("Swin reshape expected 3x3 = 9 tokens, got 6")):
        ChannelsLast(grid=3)(t6)
    with pytest.raises(ReshapeError, match=re.escape("expected a channels-last grid (N, 7, 7, C), got shape (2, 3, 4, 5); pass grid=(3, 4)")):
        ChannelsLast(grid=7)(x)
    with pytest.raises(ReshapeError, match="expects a channels-last grid"):
        swin_reshape_transform(torch.zeros(2, 3))


def test_channels_last_with_known_width_passes_channels_first_maps_through():
    reshape = ChannelsLast(channels=8)
    nchw = torch.randn(1, 8, 3, 3)
    assert reshape(nchw) is nchw
    nhwc = torch.randn(1, 3, 3, 8)
    torch.testing.assert_close(reshape(nhwc), nhwc.permute(0, 3, 1, 2), rtol=0, atol=0)


# ---------------------------------------------------------------------- from models
def test_layout_from_timm_models():
    timm = pytest.importorskip("timm")
    cases = [
        ("vit_tiny_patch16_224", dict(img_size=64), (4, 4), 1),
        ("vit_tiny_patch16_224", dict(img_size=(64, 96)), (4, 6), 1),
        ("deit_tiny_distilled_patch16_224", dict(img_size=64), (4, 4), 2),
        ("vit_tiny_patch16_224", dict(img_size=64, reg_tokens=4), (4, 4), 5),
        ("vit_tiny_patch16_224", dict(img_size=64, class_token=False, global_pool="avg"), (4, 4), 0),
    ]
    for name, kw, grid, prefix in cases:
        model = timm.create_model(name, pretrained=False, num_classes=3, depth=1, **kw)
        assert model_token_layout(model) == (grid, prefix), (name, kw)
        reshape = TokenReshape.from_model(model)
        assert (reshape.grid, reshape.num_prefix_tokens) == (grid, prefix)
        with torch.no_grad():
            feats = model.forward_features(torch.randn(1, 3, 16 * grid[0], 16 * grid[1]))
        assert reshape(feats).shape == (1, model.embed_dim, *grid)
        assert isinstance(reshape_transform_for(model), TokenReshape)


def test_layout_from_torchvision_vit_non_default_size():
    tv = pytest.importorskip("torchvision")
    model = tv.models.VisionTransformer(image_size=48, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=8)
    assert model_token_layout(model) == ((3, 3), 1)
    reshape = reshape_transform_for(model)
    assert isinstance(reshape, TokenReshape) and reshape.grid == (3, 3)


def test_from_model_rejects_non_vit_and_cnn_needs_no_reshape():
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ReshapeError, match="cannot read a token layout from Sequential"):
        TokenReshape.from_model(cnn)
    tv = pytest.importorskip("torchvision")
    assert reshape_transform_for(tv.models.resnet18()) is None
    swin = tv.models.swin_t()
    reshape = reshape_transform_for(swin)
    assert isinstance(reshape, ChannelsLast) and reshape.channels == 768


# ---------------------------------------------------------------------- through a CAM
class PatchNet(nn.Module):
    """1x1 conv 'features' -> tokens with a class token -> identity 'tokens' layer -> head on patches.

    GradCAM on ``tokens`` with a TokenReshape must equal GradCAM on ``features`` exactly: the
    reshape is applied to the activations and to the gradients alike.
    """

    def __init__(self, layout: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layout = layout
        self.features = nn.Conv2d(3, 4, 1)
        self.tokens = nn.Identity()
        self.cls = nn.Parameter(torch.randn(1, 1, 4))
        self.head = nn.Linear(4 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # (N, 4, 2, 3)
        n = f.shape[0]
        if self.layout == "tokens":
            t = torch.cat([self.cls.expand(n, -1, -1), f.flatten(2).transpose(1, 2)], dim=1)
            t = self.tokens(t)
            patches = t[:, 1:, :]  # (N, 6, 4)
        else:  # channels-last
            t = self.tokens(f.permute(0, 2, 3, 1))  # (N, 2, 3, 4)
            patches = t.reshape(n, 6, 4)
        return self.head((patches * patches).flatten(1))


@pytest.mark.parametrize("method", [GradCAM, HiResCAM])
def test_reshaped_token_cam_equals_cnn_cam(method):
    x = torch.randn(2, 3, 2, 3, generator=torch.Generator().manual_seed(3))
    for layout, reshape in (("tokens", TokenReshape(grid=(2, 3))), ("nhwc", swin_reshape_transform)):
        model = PatchNet(layout)
        ref = method(model, "features").explain(x, target_category=[1, 4])
        got = method(model, "tokens", reshape_transform=reshape).explain(x, target_category=[1, 4])
        torch.testing.assert_close(got.layer_maps[0], ref.layer_maps[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got.cam, ref.cam, rtol=1e-5, atol=1e-6)
