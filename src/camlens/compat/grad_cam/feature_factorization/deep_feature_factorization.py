"""``pytorch_grad_cam.feature_factorization.deep_feature_factorization`` on camlens's
:class:`camlens.methods.dff.DeepFeatureFactorization` (a torch NMF on the model's device, no
scikit-learn). Differences on purpose: the activations are ReLU'd before the factorisation, as in
the paper (pytorch-grad-cam subtracts each channel's minimum); concepts are found jointly for the
batch with a deterministic NNDSVDa start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from camlens.methods.dff import DeepFeatureFactorization as _DFF
from camlens.nmf import nmf
from ..utils.image import create_labels_legend, scale_cam_image, show_factorization_on_image

__all__ = ["dff", "DeepFeatureFactorization", "run_dff_on_image"]


def dff(activations: np.ndarray, n_components: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """NMF of a batch's ``(N, C, h, w)`` activations: ``(concepts (C, k), explanations (N, k, h, w))``."""
    acts = torch.as_tensor(np.asarray(activations, dtype=np.float32)).clamp_min(0)
    n, c, h, w = acts.shape
    v = acts.permute(0, 2, 3, 1).reshape(n * h * w, c)
    res = nmf(v, n_components)
    w_mat, h_mat = res.W, res.H
    explanations = w_mat.reshape(n, h, w, n_components).permute(0, 3, 1, 2)
    return h_mat.t().cpu().numpy(), explanations.cpu().numpy()


class DeepFeatureFactorization:
    """``DeepFeatureFactorization(model, target_layer, reshape_transform=None, computation_on_concepts=None)``;
    ``dff(input_tensor, n_components=16)`` returns ``(concepts (C, k), explanations: one (k, H, W)
    array per image, each concept's map scaled to [0, 1])`` and, with ``computation_on_concepts``
    (e.g. the model's classifier head), its outputs on the ``(k, C)`` concept embeddings."""

    def __init__(
        self,
        model: torch.nn.Module,
        target_layer: Any,
        reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        computation_on_concepts: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.model = model
        self.target_layer = target_layer
        self.reshape_transform = reshape_transform
        self.computation_on_concepts = computation_on_concepts

    def __call__(self, input_tensor: torch.Tensor, n_components: int = 16) -> tuple[Any, ...]:
        method = _DFF(self.model, [self.target_layer], reshape_transform=self.reshape_transform,
                      n_components=n_components, progress=False)
        fac = method.factorize(input_tensor)
        h, w = input_tensor.shape[-2:]
        maps = fac.layer_maps.detach().float().cpu().numpy()
        explanations = [scale_cam_image(m, (w, h)) for m in maps]
        concepts = fac.concepts.detach().float().cpu().numpy().T
        if self.computation_on_concepts is None:
            return concepts, explanations
        with torch.no_grad():
            emb = fac.concepts.detach().to(next(iter(self.model.parameters())).device)
            outputs = self.computation_on_concepts(emb).detach().float().cpu().numpy()
        return concepts, explanations, outputs

    def __enter__(self) -> "DeepFeatureFactorization":
        return self

    def __exit__(self, *exc: object) -> None:  # hooks live for one call: nothing to release
        return None


def run_dff_on_image(
    model: torch.nn.Module,
    target_layer: Any,
    classifier: torch.nn.Module,
    img_pil: Any,
    img_tensor: torch.Tensor,
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    n_components: int = 5,
    top_k: int = 2,
) -> np.ndarray:
    """One image: the image beside its concept overlay with a legend of each concept's ``top_k``
    classes (names from ``model.config.id2label`` when the model has them, else class indices)."""
    rgb = np.asarray(img_pil, dtype=np.float32) / 255
    _, explanations, outputs = DeepFeatureFactorization(model, target_layer, reshape_transform, classifier)(
        img_tensor[None], n_components
    )
    probs = torch.softmax(torch.from_numpy(outputs), dim=-1).numpy()
    id2label = getattr(getattr(model, "config", None), "id2label", None) or {i: str(i) for i in range(probs.shape[1])}
    labels = create_labels_legend(probs, labels=id2label, top_k=top_k)
    vis = show_factorization_on_image(rgb, explanations[0], image_weight=0.3, concept_labels=labels)
    return np.hstack((np.asarray(img_pil, dtype=np.uint8), vis))
