"""Real architectures with random weights (no downloads): every gradient method and EigenCAM runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from camlens import available_methods, get_method
from camlens.targets import SemanticSegmentationTarget

ARCHS = {
    "resnet18": "layer4[-1]",
    "resnet50": "layer4[-1]",
    "vgg11": "features[-1]",
    "densenet121": "features[-1]",  # norm5, followed by F.relu(inplace=True)
    "mobilenet_v3_small": "features[-1]",
    "efficientnet_b0": "features[-1]",
    "convnext_tiny": "features[-1]",
}
# CAM applies only to pool + linear heads and RefineCAM needs two layers: tests/methods/test_cam.py and
# tests/methods/test_refinecam.py run them on these architectures.
FAST = [m for m in available_methods() if get_method(m).__name__ not in ("ScoreCAM", "AblationCAM", "CAM", "RefineCAM")]


@pytest.fixture(scope="module", params=list(ARCHS))
def arch(request):
    torch.manual_seed(0)
    model = torchvision.models.get_model(request.param, weights=None, num_classes=10).eval()
    return request.param, model


def test_every_fast_method_runs(arch):
    name, model = arch
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for method in FAST:
        exp = get_method(method)(model, ARCHS[name]).explain(x, target_category=[1, 7])
        out = exp.numpy()
        assert out.shape == (2, 64, 64), method
        assert np.isfinite(out).all(), method
        assert out.min() >= 0 and out.max() <= 1, method
        # Random weights may leave no positive evidence (a legitimately all-zero map after ReLU),
        # but the raw signed map at layer resolution must carry spatial structure.
        raw = exp.layer_maps[0].flatten(1)
        assert bool((raw.std(dim=1) > 0).all()), f"{name}/{method}: constant raw map"


def test_segmentation_model_with_mask_target():
    model = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    mask = np.zeros((64, 64))
    mask[10:30, 10:30] = 1
    out = get_method("gradcam")(model, "backbone.layer4")(x, targets=[SemanticSegmentationTarget(2, mask)])
    assert out.shape == (1, 64, 64) and np.isfinite(out).all() and out.max() == pytest.approx(1.0)
