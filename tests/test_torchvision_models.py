"""Real architectures with random weights (no downloads): every gradient method and EigenCAM runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision

from camlens import CamLensWarning, available_methods, get_method
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
# LeGrad explains vision transformers only (tests/methods/test_legrad.py, tests/test_model_matrix.py); CAM applies
# only to pool + linear heads and RefineCAM needs two layers (tests/methods/test_cam.py, test_refinecam.py).
FAST = [m for m in available_methods() if not get_method(m).multi_pass and m not in ("legrad", "cam", "refinecam")]


@pytest.fixture(scope="module", params=list(ARCHS))
def arch(request):
    torch.manual_seed(0)
    model = torchvision.models.get_model(request.param, weights=None, num_classes=10).eval()
    return request.param, model


def test_every_fast_method_runs(arch):
    name, model = arch
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for method in FAST:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CamLensWarning)
            exp = get_method(method)(model, ARCHS[name]).explain(x, target_category=[1, 7])
        out = exp.numpy()
        assert out.shape == (2, 64, 64), method
        assert np.isfinite(out).all(), method
        assert out.min() >= 0 and out.max() <= 1, method
        # Random weights may leave no positive evidence (a legitimately all-zero map after ReLU),
        # but the raw signed map at layer resolution must carry spatial structure, unless the method
        # said why it cannot (FEM's 2-sigma threshold on 2x2 maps; KPCA-CAM's kernel on the ~1e-8
        # activations of a randomly initialised efficientnet / mobilenet).
        raw = exp.layer_maps[0].flatten(1)
        if not bool((raw.std(dim=1) > 0).all()):
            blank = [w for w in caught if issubclass(w.category, CamLensWarning) and "blank" in str(w.message)]
            assert blank, f"{name}/{method}: constant raw map without a warning"


def test_segmentation_model_with_mask_target():
    model = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    mask = np.zeros((64, 64))
    mask[10:30, 10:30] = 1
    out = get_method("gradcam")(model, "backbone.layer4")(x, targets=[SemanticSegmentationTarget(2, mask)])
    assert out.shape == (1, 64, 64) and np.isfinite(out).all() and out.max() == pytest.approx(1.0)
