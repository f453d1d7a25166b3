"""Automatic choice of the target layer (and the reshape it needs) for a model.

:func:`auto_target_layers` is what a CAM uses when ``target_layers`` is omitted. It tries, in order:

1. **Known families** (:data:`TASK_FAMILIES`, :data:`HF_FAMILIES`, :data:`FAMILIES`), recognised
   by class name anywhere in the model class's MRO *or* by structure (the attributes the family's
   layer path needs), on the model itself or on its outermost matching submodule (a backbone
   wrapped in ``nn.Sequential(normalise, net)`` or stored as ``self.backbone`` is found too).
   Each family gives the conventional layer and, for transformers, a reshape built from the model
   (:mod:`camlens.reshape`).
2. **Generic fallback** for unknown CNNs: one probe forward pass on a small dummy input records
   every module output; the chosen layer is the *last module to return a spatial
   ``(N, C, h, w)`` map (``h*w > 1``) whose value still influences the output* (non-zero
   gradient of a random projection of the output). Modules called more than once and
   ``nn.Identity`` are skipped.

See ``docs/architectures.md`` for the table of families, layers and reshapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from .engine import default_output_adapter, model_device, model_dtype
from .errors import CamLensError, LayerNotFoundError
from .hooks import HookSet, eval_mode, find_submodule, resolve_layers, unwrap_model
from .reshape import ChannelsLast, FPNReshape, TokenReshape
from .yolo import is_yolo_detector, yolo_target_layer

__all__ = [
    "LayerChoice",
    "Family",
    "FamilyMatch",
    "FAMILIES",
    "HF_FAMILIES",
    "TASK_FAMILIES",
    "auto_target_layers",
    "detect_family",
    "generic_target_layer",
    "reshape_transform_for",
]

ReshapeTransform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class LayerChoice:
    """The automatically chosen target layer(s) of a model."""

    layers: list[tuple[str, nn.Module]]
    """``(dotted_name, module)`` pairs, as :func:`camlens.hooks.resolve_layers` returns them."""
    reshape_transform: Optional[ReshapeTransform]
    """Applied to activations and gradients to get ``(N, C, h, w)``; ``None`` for CNN maps."""
    description: str
    """One line for humans, e.g. ``"ResNet: layer4.1 (last residual block)"``."""
    family: str
    """The family name from :data:`FAMILIES`, or ``"generic"``."""

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.layers]


# ---------------------------------------------------------------------- helpers
_POOL = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _class_names(module: nn.Module) -> set[str]:
    return {cls.__name__ for cls in type(module).__mro__}


def _seq(module: nn.Module, path: str) -> bool:
    """``path`` names a non-empty indexable container (Sequential or ModuleList)."""
    sub = find_submodule(module, path)
    return isinstance(sub, (nn.Sequential, nn.ModuleList)) and len(sub) > 0


def _has(module: nn.Module, *paths: str) -> bool:
    return all(find_submodule(module, p) is not None for p in paths)


def _last_non_pool(module: nn.Module, path: str) -> str | None:
    """Path of the last element of the Sequential at ``path`` that is not a pooling layer."""
    seq = find_submodule(module, path)
    if not isinstance(seq, nn.Sequential):
        return None
    for i in range(len(seq) - 1, -1, -1):
        if not isinstance(seq[i], _POOL):
            return f"{path}[{i}]"
    return None


def _vit_tokens(model: nn.Module) -> Optional[ReshapeTransform]:
    return TokenReshape.from_model(model)


def _swin_channels(model: nn.Module) -> Optional[ReshapeTransform]:
    channels = getattr(model, "num_features", None)
    if not isinstance(channels, int):
        norm = getattr(model, "norm", None)
        shape = getattr(norm, "normalized_shape", None)
        channels = int(shape[0]) if shape else None
    return ChannelsLast(channels=channels)


def _no_reshape(model: nn.Module) -> Optional[ReshapeTransform]:
    return None


# ---------------------------------------------------------------------- the families
@dataclass(frozen=True)
class Family:
    """One architecture family: how to recognise it and which layer to explain."""

    name: str
    """Shown in descriptions and docs, e.g. ``"ResNet / ResNeXt / WideResNet"``."""
    classes: tuple[str, ...]
    """Class names that identify the family (matched anywhere in the model class's MRO)."""
    structure: Callable[[nn.Module], bool]
    """Structural test, used for models whose class name is unknown (subclasses, copies)."""
    layer: Callable[[nn.Module], Optional[str]]
    """Path of the default layer relative to the family's root module."""
    why: str
    """Why this layer: shown in the description."""
    reshape: Callable[[nn.Module], Optional[ReshapeTransform]] = _no_reshape
    """Builds the reshape transform from the root module (``None`` for channels-first maps)."""
    examples: tuple[str, ...] = field(default=())
    """Builders known to belong to the family (documentation and tests)."""

    def matches(self, module: nn.Module) -> bool:
        """``module`` is a root of this family (by class name or by structure)."""
        try:
            if not (_class_names(module) & set(self.classes) or self.structure(module)):
                return False
            path = self.layer(module)
        except (AttributeError, TypeError, IndexError, KeyError):
            return False
        return path is not None and find_submodule(module, path) is not None


def _is_timm_vit(m: nn.Module) -> bool:
    return (
        _seq(m, "blocks")
        and _has(m, "blocks[-1].norm1")
        and find_submodule(m, "patch_embed") is not None
        and getattr(find_submodule(m, "patch_embed"), "grid_size", None) is not None
        and isinstance(getattr(m, "num_prefix_tokens", None), int)
    )


def _last_child(m: nn.Module, path: str) -> Optional[str]:
    """``path.<last child>`` (e.g. the last stage kept by an ``IntermediateLayerGetter``)."""
    parent = find_submodule(m, path)
    children = [n for n, _ in parent.named_children()] if parent is not None else []
    return f"{path}.{children[-1]}" if children else None


def _is_detector(m: nn.Module) -> bool:
    return _has(m, "backbone") and (
        _has(m, "rpn", "roi_heads") or (_has(m, "head", "anchor_generator")) or _has(m, "head", "box_coder")
    )


def _is_segmenter(m: nn.Module) -> bool:
    return _has(m, "backbone", "classifier") and type(find_submodule(m, "backbone")).__name__ == "IntermediateLayerGetter"


DETECTOR = Family(
    name="Object detectors (torchvision Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS, SSD)",
    classes=("GeneralizedRCNN", "RetinaNet", "FCOS", "SSD"),
    structure=_is_detector,
    layer=lambda m: "backbone",
    why="the feature pyramid (every FPN level, resized to the finest level's grid and stacked)",
    reshape=lambda m: FPNReshape(),
    examples=(
        "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
        "maskrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn",
        "ssd300_vgg16", "ssdlite320_mobilenet_v3_large",
    ),
)

SEGMENTER = Family(
    name="Semantic segmentation (torchvision FCN, DeepLabV3, LRASPP)",
    classes=("FCN", "DeepLabV3", "LRASPP"),
    structure=_is_segmenter,
    layer=lambda m: _last_child(m, "backbone"),
    why="last backbone stage, the features the segmentation head reads",
    examples=(
        "fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
        "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large",
    ),
)

def _hf_vit_tokens(m: nn.Module) -> Optional[ReshapeTransform]:
    """Token grid of a HuggingFace CLIP-style vision tower, from its config (one class token)."""
    cfg = getattr(m, "config", None)
    size, patch = getattr(cfg, "image_size", None), getattr(cfg, "patch_size", None)
    if isinstance(size, int) and isinstance(patch, int) and patch > 0:
        return TokenReshape(grid=(size // patch, size // patch), num_prefix_tokens=1)
    return TokenReshape(num_prefix_tokens=1)


HF_VISION_TOWER = Family(
    name="HuggingFace CLIP / SigLIP-style vision towers",
    classes=("CLIPVisionTransformer",),
    structure=lambda m: _has(m, "embeddings", "encoder.layers", "post_layernorm")
    and _has(m, "encoder.layers[-1].layer_norm1"),
    layer=lambda m: "encoder.layers[-1].layer_norm1",
    why="first norm of the last encoder layer: its patch tokens still reach the pooled class token",
    reshape=_hf_vit_tokens,
    examples=("transformers.CLIPModel",),
)

# ---------------------------------------------------------------------- HuggingFace transformers
# Paths differ between transformers releases (4.x: ``encoder.layer[i]``; 5.x: ``layers[i]`` for ViT,
# DeiT and BEiT): each family tries its candidates in order.
_HF_VIT_LAYERS = tuple(
    f"{blocks}[-1].{norm}"
    for norm in ("layernorm_before", "norm1")
    for blocks in ("layers", "encoder.layer", "encoder.layers")
)


def _first_path(m: nn.Module, paths: tuple[str, ...]) -> Optional[str]:
    return next((p for p in paths if find_submodule(m, p) is not None), None)


def _hf_swin_tokens(m: nn.Module) -> Optional[ReshapeTransform]:
    """A HuggingFace Swin stage gives ``(N, h*w, C)`` tokens, no class token; the last stage's grid
    is the patch grid halved at every patch merging (one per stage but the last)."""
    cfg = getattr(m, "config", None)
    size, patch, depths = getattr(cfg, "image_size", None), getattr(cfg, "patch_size", None), getattr(cfg, "depths", None)
    if isinstance(size, int) and isinstance(patch, int) and patch > 0 and depths:
        stride = patch * 2 ** (len(depths) - 1)  # every patch merging halves the grid (padding odd sides)
        if size // stride > 0:
            return TokenReshape(grid=(size // stride, size // stride), num_prefix_tokens=0, strict=False, stride=stride)
    return TokenReshape(num_prefix_tokens=0)


HF_VIT = Family(
    name="ViT / DeiT / BEiT / DINOv2 (HuggingFace transformers)",
    classes=(
        "ViTModel", "DeiTModel", "BeitModel", "Data2VecVisionModel", "Dinov2Model", "Dinov2WithRegistersModel",
        "ViTMSNModel",
    ),
    structure=lambda m: _has(m, "embeddings.patch_embeddings") and hasattr(m, "config")
    and _first_path(m, _HF_VIT_LAYERS) is not None,
    layer=lambda m: _first_path(m, _HF_VIT_LAYERS),
    why="first norm of the last encoder layer (input of its attention); the layer's own output reaches a "
    "class-token head only through the class token",
    reshape=_vit_tokens,  # TokenReshape.from_model reads HuggingFace's config and embeddings too
    examples=(
        "ViTForImageClassification", "DeiTForImageClassification", "DeiTForImageClassificationWithTeacher",
        "BeitForImageClassification", "Dinov2ForImageClassification", "Dinov2WithRegistersForImageClassification",
    ),
)

HF_SWIN = Family(
    name="Swin v1/v2 (HuggingFace transformers)",
    classes=("SwinModel", "Swinv2Model", "DonutSwinModel"),
    structure=lambda m: _has(m, "embeddings.patch_embeddings", "layernorm") and _seq(m, "encoder.layers")
    and _has(m, "encoder.layers[-1].blocks") and hasattr(m, "config"),
    layer=lambda m: "encoder.layers[-1]",
    why="last stage; it returns a tuple whose first element, the tokens (N, h*w, C), is explained: every "
    "token is average-pooled into the head",
    reshape=_hf_swin_tokens,
    examples=("SwinForImageClassification", "Swinv2ForImageClassification"),
)

HF_CNN = Family(
    name="ResNet / ConvNeXt / RegNet (HuggingFace transformers)",
    classes=("ResNetModel", "ConvNextModel", "ConvNextV2Model", "RegNetModel"),
    structure=lambda m: hasattr(m, "config") and _seq(m, "encoder.stages") and (_has(m, "embedder") or _has(m, "embeddings")),
    layer=lambda m: "encoder.stages[-1]",
    why="last stage (channels-first), before global pooling",
    examples=("ResNetForImageClassification", "ConvNextForImageClassification", "ConvNextV2ForImageClassification"),
)

HF_FAMILIES: tuple[Family, ...] = (HF_VIT, HF_SWIN, HF_CNN)
"""HuggingFace ``transformers`` vision models (a test extra, never imported here: recognised by class
name and structure); listed in ``docs/architectures.md``. Tried after :data:`TASK_FAMILIES`."""

YOLO_DETECTOR = Family(
    name="Ultralytics YOLO detectors (v3/v5/v6/v8/v9/v10/11/26 detection, segmentation and pose models)",
    classes=(),  # recognised by its Detect head (camlens.yolo), never by importing ultralytics
    structure=is_yolo_detector,
    layer=yolo_target_layer,
    why="the deepest layer every scale the Detect head reads is computed from: the stride-8 (P3) map "
    "of a PAN neck, so every box depends on it; its raw output is read by camlens.yolo.YOLOOutputAdapter",
    examples=("yolov8n.yaml", "yolo11n.yaml"),
)

TASK_FAMILIES: tuple[Family, ...] = (DETECTOR, SEGMENTER, HF_VISION_TOWER, YOLO_DETECTOR)
"""Families of models for tasks beyond classification (documented in ``docs/tasks.md``); they are
tried before :data:`FAMILIES`."""

FAMILIES: tuple[Family, ...] = (
    Family(
        name="ViT (torchvision)",
        classes=(),  # torchvision's class is also called VisionTransformer: structure tells them apart
        structure=lambda m: isinstance(find_submodule(m, "conv_proj"), nn.Conv2d) and _seq(m, "encoder.layers")
        and _has(m, "encoder.layers[-1].ln_1") and hasattr(m, "image_size") and hasattr(m, "patch_size"),
        layer=lambda m: "encoder.layers[-1].ln_1",
        why="input of the last encoder block's attention; the block's own output reaches the head "
        "only through the class token",
        reshape=_vit_tokens,
        examples=("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14"),
    ),
    Family(
        name="ViT / DeiT (timm)",
        classes=(),  # many timm classes share this layout; the structure test is the real check
        structure=_is_timm_vit,
        layer=lambda m: "blocks[-1].norm1",
        why="input of the last block's attention; the block's own output reaches a class-token head "
        "only through the class token",
        reshape=_vit_tokens,
        examples=("vit_tiny_patch16_224", "deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"),
    ),
    Family(
        name="Swin v1/v2 (torchvision)",
        classes=(),
        structure=lambda m: _seq(m, "features") and _seq(m, "features[-1]")
        and _has(m, "features[-1][-1].attn", "features[-1][-1].norm1", "permute"),
        layer=lambda m: "features[-1]",
        why="last stage = output of its last block, channels-last (N, h, w, C); every position is "
        "average-pooled into the head",
        reshape=_swin_channels,
        examples=("swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b"),
    ),
    Family(
        name="Swin v1/v2 (timm)",
        classes=("SwinTransformer", "SwinTransformerV2"),
        structure=lambda m: _seq(m, "layers") and _seq(m, "layers[-1].blocks")
        and _has(m, "layers[-1].blocks[-1].attn", "patch_embed"),
        layer=lambda m: "layers[-1]",
        why="last stage = output of its last block, channels-last (N, h, w, C); every position is "
        "average-pooled into the head",
        reshape=_swin_channels,
        examples=("swin_tiny_patch4_window7_224", "swinv2_tiny_window8_256"),
    ),
    Family(
        name="MaxViT (torchvision)",
        classes=("MaxVit",),
        structure=lambda m: _seq(m, "blocks") and _seq(m, "blocks[-1].layers") and _has(m, "stem", "classifier"),
        layer=lambda m: "blocks[-1]",
        why="last stage (channels-first), before global average pooling",
        examples=("maxvit_t",),
    ),
    Family(
        name="ResNet / ResNeXt / WideResNet",
        classes=(),
        structure=lambda m: all(_seq(m, f"layer{i}") for i in (1, 2, 3, 4)),
        layer=lambda m: "layer4[-1]",
        why="last residual block",
        examples=(
            "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
            "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
        ),
    ),
    Family(
        name="DenseNet",
        classes=("DenseNet",),
        structure=lambda m: _seq(m, "features") and _has(m, "features.norm5"),
        layer=lambda m: "features[-1]",
        why="final batch norm (norm5) of the last dense block; the ReLU after it is functional",
        examples=("densenet121", "densenet161", "densenet169", "densenet201"),
    ),
    Family(
        name="VGG / AlexNet",
        classes=("VGG", "AlexNet"),
        structure=lambda m: _seq(m, "features") and isinstance(find_submodule(m, "features[-1]"), nn.MaxPool2d)
        and _seq(m, "classifier") and all(isinstance(c, nn.Linear | nn.ReLU | nn.Dropout) for c in find_submodule(m, "classifier")),
        layer=lambda m: _last_non_pool(m, "features"),
        why="rectified output of the last convolution (Grad-CAM's conv5_3), before the final max pool: "
        "twice the resolution of features[-1] with the same channel evidence",
        examples=(
            "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "alexnet",
        ),
    ),
    Family(
        name="MNASNet",
        classes=("MNASNet",),
        structure=lambda m: _seq(m, "layers") and _has(m, "classifier") and isinstance(find_submodule(m, "layers[-1]"), nn.ReLU),
        layer=lambda m: "layers[-1]",
        why="ReLU after the final 1x1 convolution (1280 channels), before global pooling",
        examples=("mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"),
    ),
    Family(
        name="RegNet",
        classes=("RegNet",),
        structure=lambda m: _seq(m, "trunk_output") and _has(m, "stem"),
        layer=lambda m: "trunk_output[-1]",
        why="last stage (= its last block), before global pooling",
        examples=(
            "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf",
            "regnet_x_16gf", "regnet_x_32gf", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf",
            "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf", "regnet_y_32gf", "regnet_y_128gf",
        ),
    ),
    Family(
        name="ShuffleNet v2",
        classes=("ShuffleNetV2",),
        structure=lambda m: _has(m, "stage4", "conv5", "fc"),
        layer=lambda m: "conv5",
        why="final 1x1 convolution block, before global pooling",
        examples=("shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"),
    ),
    Family(
        name="GoogLeNet",
        classes=("GoogLeNet",),
        structure=lambda m: _has(m, "inception5b", "fc"),
        layer=lambda m: "inception5b",
        why="last inception module, before global pooling",
        examples=("googlenet",),
    ),
    Family(
        name="Inception v3",
        classes=("Inception3", "InceptionV3"),
        structure=lambda m: _has(m, "Mixed_7c", "fc"),
        layer=lambda m: "Mixed_7c",
        why="last inception module, before global pooling",
        examples=("inception_v3",),
    ),
    Family(
        name="ConvNeXt (timm)",
        classes=(),
        structure=lambda m: _seq(m, "stages") and _has(m, "stem", "norm_pre", "stages[-1].blocks"),
        layer=lambda m: "stages[-1]",
        why="last stage (= its last block, channels-first), before the head's pooling and norm",
        examples=("convnext_atto", "convnext_tiny"),
    ),
    Family(
        name="EfficientNet (timm)",
        classes=(),
        structure=lambda m: _seq(m, "blocks") and _has(m, "conv_stem", "conv_head", "bn2", "global_pool")
        and not isinstance(find_submodule(m, "bn2"), nn.Identity),
        layer=lambda m: "bn2",
        why="norm + activation after the head convolution, before global pooling",
        examples=("efficientnet_b0",),
    ),
    Family(
        name="MobileNet / EfficientNet / ConvNeXt / SqueezeNet (torchvision)",
        classes=(),
        structure=lambda m: _seq(m, "features") and _has(m, "classifier")
        and not isinstance(find_submodule(m, "features[-1]"), (*_POOL, nn.Flatten, nn.Linear, nn.Dropout)),
        layer=lambda m: "features[-1]",
        why="last block of `features` (head convolution, last ConvNeXt stage or last Fire module), "
        "before global pooling",
        examples=(
            "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0", "efficientnet_b1",
            "efficientnet_b2", "efficientnet_b3", "efficientnet_b4", "efficientnet_b5", "efficientnet_b6",
            "efficientnet_b7", "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l", "convnext_tiny",
            "convnext_small", "convnext_base", "convnext_large", "squeezenet1_0", "squeezenet1_1",
        ),
    ),
)


@dataclass
class FamilyMatch:
    """A family found in a model: its root submodule and the chosen layer."""

    family: Family
    root_name: str
    """Dotted name of the family's root inside the model (``""`` for the model itself)."""
    root: nn.Module
    layer_name: str
    layer: nn.Module
    reshape_transform: Optional[ReshapeTransform]


def detect_family(model: nn.Module) -> FamilyMatch | None:
    """The first known family found on ``model`` or, outermost first, on one of its submodules."""
    for root_name, root in model.named_modules():
        for family in TASK_FAMILIES + HF_FAMILIES + FAMILIES:
            if not family.matches(root):
                continue
            path = family.layer(root)
            if path is None:
                continue
            full = f"{root_name}.{path}" if root_name else path
            try:
                [(name, layer)] = resolve_layers(model, full)
            except CamLensError:
                continue
            return FamilyMatch(family, root_name, root, name, layer, family.reshape(root))
    return None


# ---------------------------------------------------------------------- generic fallback
_PROBE_SIZES = (224, 32, 28, 64, 96, 128, 256, 299, 384, 512)


def _probe_inputs(model: nn.Module) -> list[tuple[int, ...]]:
    """Candidate ``(C, *spatial)`` probe shapes for ``model``, most likely first; the number of
    spatial axes is the first convolution's (``Conv1d``: signals, ``Conv3d``: volumes and clips)."""
    channels, k = 3, 2
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            channels, k = module.in_channels, len(module.kernel_size)
            break
    if k != 2:
        sizes = (8, 16, 32, 64) if k == 3 else (256, 1000, 64, 4096)
        return [(channels, *([s] * k)) for s in sizes]
    shapes: list[tuple[int, ...]] = []
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    size = cfg.get("input_size") if isinstance(cfg, dict) else None
    if isinstance(size, (tuple, list)) and len(size) == 3:
        shapes.append(tuple(int(s) for s in size))  # type: ignore[arg-type]
    hf = getattr(getattr(model, "config", None), "image_size", None)  # HuggingFace configs
    if isinstance(hf, int) and not isinstance(hf, bool) and hf > 0:
        shapes.append((channels, hf, hf))
    shapes += [(channels, s, s) for s in _PROBE_SIZES]
    return list(dict.fromkeys(shapes))


def generic_target_layer(
    model: nn.Module, example_input: Optional[torch.Tensor] = None
) -> tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]]:
    """The generic rule: the last module to return a spatial map ``(N, C, h, w)`` with ``h*w > 1``
    that influences the model's output.

    One probe forward pass (hooks from :class:`camlens.hooks.HookSet`, model in eval mode, nothing
    left behind) on ``example_input`` or on a dummy batch of one image whose channels come from the
    first ``Conv2d`` and whose size is the first of 224, 32, 28, 64, ... the model accepts.
    Influence: the gradient of a fixed random projection of the output with respect to the map is
    not identically zero. Modules called more than once per forward (shared activations) are skipped.

    Returns ``(name, module, map_shape, probe_input_shape)``.
    """
    device, dtype = model_device(model), model_dtype(model) or torch.float32
    if example_input is not None:
        candidates: list[torch.Tensor] = [example_input.detach().to(device=device, dtype=dtype)[:1]]
    else:
        gen = torch.Generator().manual_seed(0)
        candidates = [torch.randn((1, *shape), generator=gen).to(device=device, dtype=dtype) for shape in _probe_inputs(model)]
    names = {id(m): n for n, m in model.named_modules() if n}
    errors: list[str] = []
    for x in candidates:
        records: list[tuple[str, nn.Module, torch.Tensor]] = []
        calls: dict[int, int] = {}

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            calls[id(module)] = calls.get(id(module), 0) + 1
            if (
                not isinstance(module, nn.Identity)  # same tensor as the module before it
                and isinstance(output, torch.Tensor)
                and output.dim() == x.dim()  # as many spatial axes as the input
                and output.is_floating_point()
                and output.shape[0] == x.shape[0]
                and output[0, 0].numel() > 1
                and output.requires_grad
            ):
                records.append((names[id(module)], module, output))

        with torch.inference_mode(False), torch.enable_grad(), eval_mode(model), HookSet() as hooks:
            for module in model.modules():
                if id(module) in names:
                    hooks.forward(module, hook)
            xi = x.clone().requires_grad_(True)
            try:
                out = default_output_adapter(model(xi))
            except Exception as exc:  # the model rejects this probe size: try the next one
                errors.append(f"{tuple(x.shape)}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
                continue
            if not records or not out.requires_grad:
                break
            weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.device, out.dtype)
            score = (out.float() * weights.float()).sum()
            once = [r for r in records if calls[id(r[1])] == 1]
            grads = torch.autograd.grad(score, [r[2] for r in once], allow_unused=True)
            for (name, module, output), grad in zip(reversed(once), reversed(grads)):
                if grad is not None and bool(grad.ne(0).any()):
                    return name, module, tuple(output.shape), tuple(x.shape)
            break
    if errors and len(errors) == len(candidates):
        raise LayerNotFoundError(
            f"cannot choose a target layer for {type(model).__name__} automatically: the probe forward pass "
            f"failed for every tried input size ({'; '.join(errors[:3])}{'; ...' if len(errors) > 3 else ''}); "
            "pass target_layers=[...] (a module or a dotted name such as 'layer4[-1]')"
        )
    raise LayerNotFoundError(
        f"cannot choose a target layer for {type(model).__name__} automatically: no module returns a spatial "
        "(N, C, h, w) map that influences the output; pass target_layers=[...] and, for token outputs "
        "(N, tokens, C), reshape_transform=camlens.reshape.TokenReshape(grid=(h, w), num_prefix_tokens=k)"
    )


# ---------------------------------------------------------------------- public entry point
def _describe_reshape(transform: Optional[ReshapeTransform]) -> str:
    if isinstance(transform, TokenReshape) and transform.grid is not None:
        h, w = transform.grid
        k = transform.num_prefix_tokens
        return f"; tokens -> {h}x{w} grid after {k} prefix token{'s' if k != 1 else ''}"
    if isinstance(transform, FPNReshape):
        return "; pyramid levels -> one grid (camlens.reshape.FPNReshape)"
    if isinstance(transform, ChannelsLast):
        return "; channels-last grid -> (N, C, h, w)"
    return ""


def auto_target_layers(model: nn.Module, example_input: Optional[torch.Tensor] = None) -> LayerChoice:
    """Choose the conventional target layer (and reshape) for ``model``.

    Known families (:data:`FAMILIES`) need no forward pass; other models get one probe forward
    pass (see :func:`generic_target_layer`; ``example_input`` is used for it when given).
    Raises :class:`~camlens.errors.LayerNotFoundError` with a fix when no layer can be chosen.
    A compiled or ``DataParallel``/DDP-wrapped model is looked at through its original module
    (:func:`camlens.hooks.unwrap_model`): no compilation for the probe, names without prefixes.
    """
    if not isinstance(model, nn.Module):
        raise LayerNotFoundError(f"auto_target_layers needs an nn.Module; got {type(model).__name__}")
    model = unwrap_model(model)
    found = detect_family(model)
    if found is not None:
        where = f" (found at {found.root_name!r}, a {type(found.root).__name__})" if found.root_name else ""
        description = (
            f"{found.family.name}: {found.layer_name} ({found.family.why}){where}"
            f"{_describe_reshape(found.reshape_transform)}"
        )
        return LayerChoice(
            [(found.layer_name, found.layer)], found.reshape_transform, description, found.family.name
        )
    name, module, shape, probe = generic_target_layer(model, example_input)
    description = (
        f"generic: {name} ({type(module).__name__}; the last module whose spatial map influences the output, "
        f"{tuple(shape[1:])} on a {tuple(probe[1:])} probe input)"
    )
    return LayerChoice([(name, module)], None, description, "generic")


def reshape_transform_for(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The reshape a model's conventional target layer needs: a :class:`TokenReshape` for
    ViT-style models, :class:`ChannelsLast` for Swin, ``None`` for CNNs (channels-first maps).

    Looks at the model itself and at its submodules (a wrapped backbone is found too).
    """
    found = detect_family(unwrap_model(model))
    return None if found is None else found.reshape_transform
