"""The model matrix: every torchvision classification builder and a representative set of timm
models, random weights (nothing downloaded), automatic target layer, every gradient method and
EigenCAM.

For each model: the automatic choice equals the table in docs/architectures.md (written out again
below by hand), every method runs, maps are finite and in [0, 1], raw layer maps carry spatial
structure, a final map is blank only when its raw map has no positive evidence, and no
zero-gradient warning is raised for the automatic layer.

The largest models are marked ``slow`` (``pytest -m slow tests/test_model_matrix.py``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from camlens import CamLensWarning, available_methods, get_method
from camlens.layers import auto_target_layers
from camlens.reshape import ChannelsLast, TokenReshape

tv = pytest.importorskip("torchvision")

# Multi-pass methods score hundreds of perturbed inputs per image: too slow for a matrix.
METHODS = [m for m in available_methods() if get_method(m).uses_gradients or m == "eigencam"]
METHODS = [m for m in METHODS if not get_method(m).multi_pass]
# LeGrad explains vision transformers only: run on the ViT/DeiT builders below (_check_legrad).
METHODS = [m for m in METHODS if m != "legrad"]
# RefineCAM multiplies the maps of two or more layers; the automatic choice is one layer.
METHODS = [m for m in METHODS if m != "refinecam"]


def _check_legrad(model: nn.Module, x: torch.Tensor, label: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CamLensWarning)  # the default readout reproduces the model's output
        exp = get_method("legrad")(model).explain(x)
    out, raw = exp.numpy(), exp.layer_maps[-1]
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() == pytest.approx(1.0), label
    assert raw.shape[-2:] == (4, 4) and float(raw.std()) > 0, (label, raw.shape)


def _vit_name(layers: int) -> str:
    return f"encoder.layers.encoder_layer_{layers - 1}.ln_1"


# builder -> default layer name, as docs/architectures.md states it (independent of camlens.layers)
TORCHVISION_TABLE: dict[str, str] = {
    **{n: "layer4.1" for n in ("resnet18",)},
    **{n: "layer4.2" for n in ("resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                                "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2")},
    "vgg11": "features.19", "vgg11_bn": "features.27", "vgg13": "features.23", "vgg13_bn": "features.33",
    "vgg16": "features.29", "vgg16_bn": "features.42", "vgg19": "features.35", "vgg19_bn": "features.51",
    "alexnet": "features.11",
    **{f"densenet{d}": "features.norm5" for d in (121, 161, 169, 201)},
    "mobilenet_v2": "features.18", "mobilenet_v3_large": "features.16", "mobilenet_v3_small": "features.12",
    **{f"efficientnet_b{i}": "features.8" for i in range(8)},
    "efficientnet_v2_s": "features.7", "efficientnet_v2_m": "features.8", "efficientnet_v2_l": "features.8",
    **{f"convnext_{s}": "features.7" for s in ("tiny", "small", "base", "large")},
    "squeezenet1_0": "features.12", "squeezenet1_1": "features.12",
    **{f"mnasnet{s}": "layers.16" for s in ("0_5", "0_75", "1_0", "1_3")},
    **{f"regnet_{k}_{s}": "trunk_output.block4" for k, s in [
        ("x", "400mf"), ("x", "800mf"), ("x", "1_6gf"), ("x", "3_2gf"), ("x", "8gf"), ("x", "16gf"), ("x", "32gf"),
        ("y", "400mf"), ("y", "800mf"), ("y", "1_6gf"), ("y", "3_2gf"), ("y", "8gf"), ("y", "16gf"), ("y", "32gf"),
        ("y", "128gf")]},
    **{f"shufflenet_v2_{s}": "conv5" for s in ("x0_5", "x1_0", "x1_5", "x2_0")},
    "googlenet": "inception5b",
    "inception_v3": "Mixed_7c",
    "maxvit_t": "blocks.3",
    **{n: "features.7" for n in ("swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b")},
    "vit_b_16": _vit_name(12), "vit_b_32": _vit_name(12), "vit_l_16": _vit_name(24), "vit_l_32": _vit_name(24),
    "vit_h_14": _vit_name(32),
}

# Marked slow: 0.5 s or more each on an idle 2-core CPU (mostly the weight initialisation of
# 50M+ parameters); the default run then takes about 20 s. Measured with
# `pytest -m slow tests/test_model_matrix.py --durations=0`: regnet_y_128gf 11.2 s, vit_h_14 7.5 s,
# vit_l_* 3.5 s, convnext_large 2.8 s, the other large VGG/ResNeXt/RegNet/Swin 0.5-1.9 s.
TORCHVISION_SLOW = {
    "regnet_y_128gf", "regnet_y_32gf", "regnet_y_16gf", "regnet_y_8gf", "regnet_x_32gf", "regnet_x_16gf", "regnet_x_8gf",
    "vit_h_14", "vit_l_16", "vit_l_32", "vit_b_32",
    "convnext_large", "convnext_base", "convnext_small",
    "efficientnet_v2_l", "efficientnet_v2_m", "efficientnet_b7", "efficientnet_b6", "efficientnet_b5",
    "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "swin_s", "swin_b", "swin_v2_s", "swin_v2_b",
    "resnet101", "resnet152", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
    "densenet161",
}
# The default run keeps at least one builder of every family in docs/architectures.md.


def _tv_case(name: str) -> tuple[int, dict]:
    """Input size and builder kwargs: small inputs, 2x2+ final maps."""
    if name.startswith("vit_"):
        patch = int(name.rsplit("_", 1)[1])
        return 4 * patch, {"image_size": 4 * patch}  # a 4x4 patch grid
    if name == "maxvit_t":
        return 224, {}  # partition size 7 on every stage needs 224
    if name == "inception_v3":
        return 107, {}  # the smallest size with a 2x2 Mixed_7c
    if name == "alexnet":
        return 96, {}
    return 64, {}


def _tv_params() -> list:
    builders = tv.models.list_models(module=tv.models)
    return [pytest.param(n, marks=pytest.mark.slow) if n in TORCHVISION_SLOW else n for n in builders]


def _check_methods(model: nn.Module, x: torch.Tensor, label: str) -> list[str]:
    """Run every method with the automatic layer; return the names whose final map is blank."""
    blank = []
    for method in METHODS:
        cls = get_method(method)
        with warnings.catch_warnings():
            warnings.simplefilter("error", CamLensWarning)  # the automatic layer reaches the output
            cam = cls(model)
            exp = cam.explain(x)
        out = exp.numpy()
        raw = exp.layer_maps[0]
        assert out.shape == (x.shape[0], *x.shape[-2:]), (label, method)
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1, (label, method)
        assert torch.isfinite(raw).all() and raw.shape[-1] * raw.shape[-2] > 1, (label, method, raw.shape)
        assert float(raw.std()) > 0, f"{label}/{method}: constant raw map"
        if float(raw.max()) <= 0:  # every method's map is ReLU'd
            assert out.max() == 0, (label, method)  # no positive evidence: an honest blank map
            blank.append(method)
        else:
            assert out.std() > 0, f"{label}/{method}: constant map although the raw map varies"
    return blank


@pytest.mark.parametrize("name", _tv_params())
def test_torchvision_builder(name: str) -> None:
    assert name in TORCHVISION_TABLE, f"{name} is not in the documented table"
    size, kwargs = _tv_case(name)
    torch.manual_seed(0)
    model = tv.models.get_model(name, weights=None, num_classes=10, **kwargs).eval()
    if name.startswith("vit_"):
        nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zero-initialises the ViT head
    choice = auto_target_layers(model)
    assert choice.names == [TORCHVISION_TABLE[name]], choice.description
    assert choice.description.split(": ", 1)[1].startswith(TORCHVISION_TABLE[name])
    if name.startswith("vit_"):
        assert isinstance(choice.reshape_transform, TokenReshape) and choice.reshape_transform.grid == (4, 4)
    elif name.startswith("swin"):
        assert isinstance(choice.reshape_transform, ChannelsLast)
    else:
        assert choice.reshape_transform is None
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    blank = _check_methods(model, x, name)
    assert len(blank) < len(METHODS) // 2, f"{name}: most maps blank ({blank})"
    if name.startswith("vit_"):
        _check_legrad(model, x, name)


# (model name, create_model kwargs, input size, expected layer, expected prefix tokens or None)
TIMM_CASES = [
    ("vit_tiny_patch16_224", {"img_size": 64}, 64, "blocks.11.norm1", 1),
    ("deit_tiny_distilled_patch16_224", {"img_size": 64}, 64, "blocks.11.norm1", 2),
    ("vit_tiny_patch16_224", {"img_size": 64, "reg_tokens": 4}, 64, "blocks.11.norm1", 5),
    ("vit_tiny_patch16_224", {"img_size": 64, "class_token": False, "global_pool": "avg"}, 64, "blocks.11.norm1", 0),
    ("swin_tiny_patch4_window7_224", {"img_size": 64}, 64, "layers.3", None),
    ("convnext_atto", {}, 64, "stages.3", None),
    ("resnet10t", {}, 64, "layer4.0", None),
    ("efficientnet_b0", {}, 64, "bn2", None),
    ("mobilenetv3_small_050", {}, 64, "blocks", None),  # generic rule (conv_head runs after pooling)
    ("regnetx_002", {}, 64, "s4", None),  # generic rule (final_conv is an Identity)
    ("deit_tiny_patch16_224", {"img_size": 64}, 64, "blocks.11.norm1", 1),
    ("resnet18", {}, 64, "layer4.1", None),
    ("densenet121", {}, 64, "features.norm5", None),
    ("swinv2_tiny_window8_256", {"img_size": 64}, 64, "layers.3", None),
    ("inception_v3", {}, 107, "Mixed_7c", None),
]
TIMM_SLOW = [
    ("vgg11", {}, 64, "features.19", None),  # 4.0 s
    ("maxvit_nano_rw_256", {"img_size": 64}, 64, "norm", None),  # generic rule (final LayerNorm2d), 2.5 s
]


def _timm_params() -> list:
    params = [pytest.param(*c, id=f"{c[0]}-{'-'.join(f'{k}={v}' for k, v in c[1].items())}") for c in TIMM_CASES]
    params += [
        pytest.param(*c, id=f"{c[0]}-{'-'.join(f'{k}={v}' for k, v in c[1].items())}", marks=pytest.mark.slow)
        for c in TIMM_SLOW
    ]
    return params


@pytest.mark.parametrize("name,kwargs,size,layer,prefix", _timm_params())
def test_timm_model(name: str, kwargs: dict, size: int, layer: str, prefix: int | None) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs).eval()
    choice = auto_target_layers(model)
    assert choice.names == [layer], choice.description
    if prefix is not None:
        assert isinstance(choice.reshape_transform, TokenReshape)
        assert choice.reshape_transform.num_prefix_tokens == prefix and choice.reshape_transform.grid == (4, 4)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    blank = _check_methods(model, x, name)
    assert len(blank) < len(METHODS) // 2, f"{name}: most maps blank ({blank})"
    if prefix is not None:  # ViT / DeiT
        _check_legrad(model, x, name)


def test_default_run_covers_every_family() -> None:
    from camlens.layers import FAMILIES

    default = {n for n in tv.models.list_models(module=tv.models) if n not in TORCHVISION_SLOW}
    default |= {c[0] for c in TIMM_CASES}
    for family in FAMILIES:
        assert default & set(family.examples), f"no default-run model for {family.name}"
