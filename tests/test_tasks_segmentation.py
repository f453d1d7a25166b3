"""Semantic segmentation: "all pixels of class c" targets, dict / SegFormer-style outputs, torchvision segmenters."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from camlens import EigenCAM, GradCAM
from camlens.errors import TargetError
from camlens.targets import SemanticSegmentationTarget, targets_from_categories


def test_segmentation_target_without_mask_sums_the_argmax_pixels_by_hand():
    out = torch.tensor(
        [
            [[1.0, 5.0], [0.0, 2.0]],  # class 0
            [[3.0, 1.0], [4.0, 2.5]],  # class 1: argmax at (0,0), (1,0), (1,1)
        ]
    )
    assert float(SemanticSegmentationTarget(1)(out)) == 3.0 + 4.0 + 2.5
    assert float(SemanticSegmentationTarget(0)(out)) == 5.0
    assert float(SemanticSegmentationTarget(0, mask=torch.ones(2, 2))(out)) == 8.0
    with pytest.raises(TargetError, match=r"\(classes, H, W\) map per image"):
        SemanticSegmentationTarget(0)(torch.ones(4))


def test_default_targets_for_segmentation_maps_pick_each_images_most_frequent_class():
    out = torch.zeros(2, 3, 2, 2)
    out[0, 2] = 1.0  # image 0: class 2 everywhere
    out[1, 1, :, :1] = 1.0  # image 1: class 1 on two pixels, class 0 (ties -> first) on two...
    out[1, 1, 0, 1] = 1.0  # ...and one more: class 1 wins 3 to 1
    got = targets_from_categories(None, out)
    assert [t.category for t in got] == [2, 1] and all(isinstance(t, SemanticSegmentationTarget) for t in got)
    assert [t.category for t in targets_from_categories(1, out)] == [1, 1]


class TinySegmenter(nn.Module):
    """torchvision-style: ``{"out": logits at input size, "aux": ...}``; class 1's logit is the
    feature map itself, so its gradient is 1 on the class-1 pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.features.weight.fill_(1.0)

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        f = self.features(x)
        return OrderedDict([("out", torch.cat([torch.zeros_like(f), f], dim=1)), ("aux", f)])


class SegformerOutput:
    """What HuggingFace SegFormer returns: an object with ``.logits`` at 1/4 of the input size."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class TinySegformer(TinySegmenter):
    def forward(self, x: torch.Tensor) -> SegformerOutput:  # type: ignore[override]
        f = nn.functional.avg_pool2d(self.features(x), 4)
        return SegformerOutput(torch.cat([torch.zeros_like(f), f], dim=1))


@pytest.mark.parametrize("model_cls", [TinySegmenter, TinySegformer])
def test_gradcam_explains_the_class_pixels_by_hand(model_cls):
    model = model_cls().eval()
    x = -torch.ones(1, 1, 8, 8)
    x[..., :4, :4] = 1.0  # class 1 wins (logit 1 > 0) only in the top-left quarter
    e = GradCAM(model, "features").explain(x, [SemanticSegmentationTarget(1)])
    # score = sum of f over the class-1 pixels; d score / d f = 1 there (1/16 per input pixel for
    # the 1/4-resolution output), so the GradCAM weight is (area share) and the map is w * f.
    share = 16 / 64
    assert torch.allclose(e.layer_maps[0][0], share * x[0, 0] * (1 / 16 if model_cls is TinySegformer else 1.0))
    assert float(e.cam[0, :4, :4].min()) == 1.0 and float(e.cam[0, 4:].max()) == 0.0


tv = pytest.importorskip("torchvision")

SEGMENTERS = [
    ("fcn_resnet50", "backbone.layer4", False),
    ("deeplabv3_resnet50", "backbone.layer4", False),
    ("lraspp_mobilenet_v3_large", "backbone.16", False),
    ("deeplabv3_mobilenet_v3_large", "backbone.16", True),
    ("fcn_resnet101", "backbone.layer4", True),
    ("deeplabv3_resnet101", "backbone.layer4", True),
]


@pytest.mark.parametrize(
    "name,layer", [pytest.param(n, l, id=n, marks=[pytest.mark.slow] if s else []) for n, l, s in SEGMENTERS]
)
def test_torchvision_segmenter_runs_with_no_layer_given(name, layer):
    torch.manual_seed(0)
    model = getattr(tv.models.segmentation, name)(weights=None, weights_backbone=None, num_classes=3)
    grads = [p.requires_grad for p in model.parameters()]
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for method in (GradCAM, EigenCAM):
        cam = method(model)
        assert cam.target_layer_names == [layer]
        e = cam.explain(x)  # targets=None: the most frequent predicted class
        raw = e.layer_maps[0]
        assert torch.isfinite(raw).all() and float(raw.max() - raw.min()) > 0, (name, method.__name__)
        assert isinstance(e.targets[0], SemanticSegmentationTarget) and float(e.scores[0]) != 0
    assert model.training and [p.requires_grad for p in model.parameters()] == grads
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())
