"""HuggingFace transformers vision models, built from small configs with random weights.

The image goes in as ``pixel_values=`` (``input_name``), the output is a ``ModelOutput`` whose
``.logits`` the engine reads. Skipped when transformers is not installed (a test extra)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from camlens import GradCAM, ScoreCAM
from camlens.reshape import TokenReshape
from camlens.targets import ClassifierOutputTarget

# Importing transformers alone takes ~10-20 s on the 2-core CI machine: slow-marked (make test-slow).
pytestmark = pytest.mark.slow
transformers = pytest.importorskip("transformers")


def _quiet(build):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return build().eval()


def test_hf_resnet_automatic_layer_and_pixel_values():
    cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4)
    model = _quiet(lambda: transformers.ResNetForImageClassification(cfg))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cam = GradCAM(model)
    assert cam.target_layer_names == ["resnet.encoder.stages.1"]  # the last stage, found by the probe
    by_name = cam(x, targets=[ClassifierOutputTarget(1)] * 2, input_name="pixel_values")
    positional = cam(x, targets=[ClassifierOutputTarget(1)] * 2)
    assert by_name.shape == (2, 32, 32)
    np.testing.assert_allclose(by_name, positional, atol=1e-6)
    with torch.no_grad():  # the engine reads ModelOutput.logits
        logits = model(pixel_values=x).logits
    assert torch.allclose(cam.explain(x, input_name="pixel_values").scores, logits.max(dim=1).values, atol=1e-5)


def test_hf_vit_tokens_with_class_token():
    cfg = transformers.ViTConfig(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32, num_labels=4)  # fmt: skip
    model = _quiet(lambda: transformers.ViTForImageClassification(cfg))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    layers = [name for name, _ in model.named_modules() if name.endswith("layernorm_before")]
    reshape = TokenReshape(grid=(4, 4), num_prefix_tokens=1)  # 16 patches after the class token
    grad = GradCAM(model, layers[-1], reshape_transform=reshape)(x, input_name="pixel_values")
    score = ScoreCAM(model, layers[-1], reshape_transform=reshape, top_k=4, progress=False)(x, input_name="pixel_values")
    for maps in (grad, score):
        assert maps.shape == (2, 16, 16) and np.isfinite(maps).all()
        assert maps.reshape(2, -1).max(axis=1).max() == pytest.approx(1.0)
