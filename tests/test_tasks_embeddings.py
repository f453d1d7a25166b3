"""Embeddings: cosine similarity to / difference from a concept, concept embeddings from examples,
"why does A match B", and CLIP-style image-text similarity (HuggingFace, optional)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from camlens import GradCAM
from camlens.errors import TargetError
from camlens.targets import DifferenceFromConceptTarget, SimilarityToConceptTarget, concept_embedding


def test_similarity_and_difference_by_hand():
    e = torch.tensor([3.0, 4.0], requires_grad=True)
    sim = SimilarityToConceptTarget([1.0, 0.0])(e)
    assert math.isclose(float(sim.detach()), 0.6, rel_tol=1e-6)
    assert math.isclose(float(DifferenceFromConceptTarget(torch.tensor([0.0, 2.0]))(e).detach()), 1 - 0.8, rel_tol=1e-6)
    # d cos / d e = c/|c||e| - cos * e/|e|^2 = (1/5, 0) - 0.6 (3, 4)/25
    (grad,) = torch.autograd.grad(sim, e)
    assert torch.allclose(grad, torch.tensor([0.2 - 0.072, -0.096]))
    with pytest.raises(TargetError, match="embedding has 2 values but the concept has 3"):
        SimilarityToConceptTarget([1.0, 0.0, 0.0])(e)
    with pytest.raises(TargetError, match="non-zero concept embedding"):
        SimilarityToConceptTarget([0.0, 0.0])


class TwoRegionEmbedder(nn.Module):
    """Embedding = (mean of the left half of the feature map, mean of the right half, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.features.weight.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)[:, 0]
        w = f.shape[-1] // 2
        left, right = f[..., :w].mean(dim=(1, 2)), f[..., w:].mean(dim=(1, 2))
        return torch.stack([left, right, torch.ones_like(left)], dim=1)


def test_concept_embedding_is_the_mean_of_unit_embeddings():
    model = TwoRegionEmbedder().train()
    x = torch.zeros(2, 1, 4, 4)
    x[0, :, :, :2] = 1.0  # embedding (1, 0, 1) -> unit (1, 0, 1) / sqrt(2)
    x[1, :, :, 2:] = 1.0  # embedding (0, 1, 1) -> unit (0, 1, 1) / sqrt(2)
    r = 1 / math.sqrt(2)
    assert torch.allclose(concept_embedding(model, x), torch.tensor([r / 2, r / 2, r]))
    assert model.training  # restored


def test_why_does_a_match_b_points_at_the_shared_region():
    model = TwoRegionEmbedder().eval()
    a = torch.zeros(1, 1, 8, 8)
    a[..., 4:] = 1.0  # A: embedding (0, 1, 1)
    b = torch.zeros(1, 1, 8, 8)
    b[..., 4:] = 1.0
    target = SimilarityToConceptTarget(torch.tensor([0.0, 1.0, 0.0]))  # B's right-half feature alone
    # cos = 1/sqrt(2); d cos / d right = 1/sqrt(2) - cos * 1/2 = 1/(2 sqrt(2)), spread over 32 pixels:
    # GradCAM's weight is that / 64 and the map is weight * A.
    e = GradCAM(model, "features").explain(a, [target])
    assert torch.allclose(e.layer_maps[0][0], a[0, 0] / (2 * math.sqrt(2) * 64))
    assert float(e.cam[0, :, 4:].min()) == 1.0 and float(e.cam[0, :, :4].max()) == 0.0
    # "why does A match B": the concept is B's own embedding
    assert float(GradCAM(model, "features").explain(a, [SimilarityToConceptTarget(concept_embedding(model, b))]).scores[0]) > 0.999




class ClipImageTower(nn.Module):
    """Image side of a CLIP model as a plain ``images -> (N, D)`` embedding model."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.clip.get_image_features(pixel_values=x)
        return out if isinstance(out, torch.Tensor) else out.pooler_output


def tiny_clip() -> nn.Module:
    transformers = pytest.importorskip("transformers", reason="transformers is not installed (the 'hf' extra)")
    torch.manual_seed(0)
    common = dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, projection_dim=8)
    cfg = transformers.CLIPConfig(
        text_config=dict(common, num_hidden_layers=1, vocab_size=64, max_position_embeddings=16, bos_token_id=0, eos_token_id=1),
        vision_config=dict(common, num_hidden_layers=2, image_size=32, patch_size=8),
        projection_dim=8,
    )
    return transformers.CLIPModel(cfg).eval()


def test_clip_image_text_similarity_with_automatic_layer():
    from camlens.reshape import TokenReshape

    clip = tiny_clip()
    with torch.no_grad():
        text = clip.get_text_features(input_ids=torch.tensor([[0, 5, 9, 1]]))
    text = text if isinstance(text, torch.Tensor) else text.pooler_output
    model = ClipImageTower(clip)
    cam = GradCAM(model)
    assert cam.target_layer_names == ["clip.vision_model.encoder.layers.1.layer_norm1"]
    assert isinstance(cam.reshape_transform, TokenReshape) and cam.reshape_transform.grid == (4, 4)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    e = cam.explain(x, [SimilarityToConceptTarget(text[0])])
    with torch.no_grad():
        want = torch.cosine_similarity(model(x), text)
    assert torch.allclose(e.scores, want, atol=1e-5)
    raw = e.layer_maps[0]
    assert raw.shape == (1, 4, 4) and torch.isfinite(raw).all() and float(raw.std()) > 0
    assert all(p.grad is None for p in clip.parameters()) and all(not m._forward_hooks for m in clip.modules())
