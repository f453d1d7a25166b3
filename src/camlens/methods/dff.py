"""Deep Feature Factorization (Collins et al., ECCV 2018, arXiv:1806.10206)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .. import postprocess as pp
from ..engine import CamLensWarning
from ..errors import ArgumentError, InputTypeError, LayerNotFoundError
from ..hooks import eval_mode, find_submodule
from ..nmf import check_options, nmf
from ..registry import register
from ..reshape import explaining_input
from .base import ActivationCAM, LayerContext

__all__ = ["DeepFeatureFactorization", "Factorization"]

Head = nn.Module | Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Factorization:
    """What :meth:`DeepFeatureFactorization.factorize` found in one batch (tensors on the model's device).

    ``k`` concepts shared by the whole batch of ``N`` images.
    """

    concepts: torch.Tensor
    """``(k, C)`` concept embeddings: the (non-negative) feature vector each concept contributes
    where it is strongest."""
    maps: torch.Tensor
    """``(N, k, H, W)`` each concept's strength at the input's resolution (bilinear), divided by
    the image's largest strength over all concepts: in ``[0, 1]`` and comparable across concepts."""
    layer_maps: torch.Tensor
    """``(N, k, h, w)`` concept strengths at the layer's resolution: ``W_ij * ||H_j||``, the norm
    of concept ``j``'s contribution to the feature vector at each position."""
    reconstruction_error: float
    """``||V - W H||_F`` of the factorised ``(N h w, C)`` activation matrix ``V``."""
    relative_error: float
    """``reconstruction_error / ||V||_F``."""
    concept_scores: torch.Tensor | None = None
    """``(k, classes)`` softmax of the head applied to each concept embedding (``None`` without a head)."""
    top_classes: torch.Tensor | None = None
    """``(k, top_k)`` the classes each concept scores highest (``None`` without a head)."""
    top_scores: torch.Tensor | None = None
    """``(k, top_k)`` their softmax scores."""
    layer_name: str = ""

    @property
    def n_components(self) -> int:
        return int(self.concepts.shape[0])

    def labels(self, categories: Sequence[str] | None = None, top_k: int | None = None) -> list[str]:
        """One legend line per concept: its top classes and their scores (or ``"concept j"``).

        ``categories``: class names indexed by class id (e.g. ImageNet's 1000 names).
        """
        out = []
        for j in range(self.n_components):
            if self.top_classes is None or self.top_scores is None:
                out.append(f"concept {j + 1}")
                continue
            parts = []
            for c, s in list(zip(self.top_classes[j].tolist(), self.top_scores[j].tolist()))[:top_k]:
                name = categories[c] if categories is not None and 0 <= c < len(categories) else str(c)
                parts.append(f"{name} {s:.2f}")
            out.append(", ".join(parts))
        return out


@register("dff", "deepfeaturefactorization", "deep-feature-factorization")
class DeepFeatureFactorization(ActivationCAM):
    """Deep Feature Factorization: non-negative matrix factorisation of a layer's activations.

    The activations ``A`` ``(N, C, h, w)`` of the whole batch, clipped at 0, become one matrix
    ``V`` of ``N h w`` rows (positions) and ``C`` columns (channels), factorised as
    ``V ~= W H`` with ``W >= 0`` ``(N h w, k)`` and ``H >= 0`` ``(k, C)`` (HALS,
    :func:`camlens.nmf.nmf`, on the model's device, deterministic). Row ``j`` of ``H`` is concept
    ``j``'s embedding; column ``j`` of ``W``, reshaped to ``(N, h, w)``, is where it appears: the
    concepts are shared by every image of the batch, so the result depends on the batch.

    * :meth:`factorize` returns a :class:`Factorization`: per-concept maps at the input's
      resolution, the embeddings and, with a ``head``, the classes each concept scores highest
      (the head applied to each embedding as if it were a pooled feature vector, then softmax);
    * ``cam(x)`` / :meth:`explain` return one map per image, like every method: the strength of
      the dominant concept at each position, ``max_j W[(n, y, x), j] * ||H_j||`` (the norm of its
      contribution to the feature vector there), upsampled and min-max normalised. Targets are resolved (and their scores reported) but do not change the maps:
      DFF is class-agnostic. ``eigen_smooth`` is ignored (the factorisation is already a
      low-rank projection). With several target layers each is factorised on its own.

    Where camlens follows the paper rather than pytorch-grad-cam 1.5.7: the paper factorises
    ReLU activations (non-negative by construction); camlens clips at 0, pytorch-grad-cam
    subtracts each channel's minimum instead (the same for post-ReLU layers). pytorch-grad-cam's
    NMF starts from a random init (scikit-learn, ``init="random"``); camlens from NNDSVDa
    (``init="nndsvda"``, no random numbers; ``"random"`` with ``seed`` is available).
    pytorch-grad-cam normalises each concept map on its own; ``Factorization.maps`` share one
    scale per image so that concepts can be compared.

    Args:
        n_components: number of concepts ``k`` (default 4).
        head: names the concepts: a module or callable taking ``(k, C)`` features to
            ``(k, classes)`` logits, a dotted name of a submodule (``"fc"``), ``"auto"`` (the
            model's last ``nn.Linear`` taking ``C`` features, if there is one; a warning
            otherwise) or ``None`` (default).
        top_k: classes listed per concept (default 3).
        max_iter: NMF iterations at most (see :func:`camlens.nmf.nmf`).
        tol: NMF stopping tolerance (see :func:`camlens.nmf.nmf`).
        init: NMF initialisation, ``"nndsvda"`` or ``"random"`` (see :func:`camlens.nmf.nmf`).
        seed: seed of the ``"random"`` initialisation.

    Example::

        from camlens.image import show_factorization_on_image

        dff = DeepFeatureFactorization(model, "layer4", n_components=4, head="fc")
        fac = dff.factorize(x)               # fac.maps (N, 4, H, W): concepts shared by the batch
        categories = [f"class {i}" for i in range(1000)]   # e.g. ImageNet's class names
        overlay = show_factorization_on_image(rgb_float_image, fac.maps[0].cpu().numpy(),
                                              labels=fac.labels(categories))
        maps = dff(input_tensor=x)           # (N, H, W): strength of the dominant concept
    """

    paper = "Collins et al., Deep Feature Factorization for Concept Discovery, ECCV 2018"
    summary = "NMF of the batch's activations into concepts; map = strength of the dominant concept"
    formula = r"V = \big[\max(A, 0)\big]_{(Nhw)\times C} \approx W H,\quad W \ge 0,\ H \ge 0,\qquad L_n(p) = \max_j\, W_{(n,p),\,j}\,\lVert H_j \rVert"
    cost = "one forward pass without gradients and a non-negative matrix factorisation (HALS, up to max_iter iterations) of the whole batch's (N h w) x C activation matrix; no backward pass"
    uses_gradients: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        target_layers: Any = None,
        use_cuda: bool | None = None,
        reshape_transform: Any = None,
        *,
        n_components: int = 4,
        head: Head | str | None = None,
        top_k: int = 3,
        max_iter: int = 200,
        tol: float = 1e-4,
        init: str = "nndsvda",
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, target_layers, use_cuda, reshape_transform, **kwargs)
        check_options(n_components, max_iter, tol, init)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ArgumentError(f"top_k must be a positive int; got {top_k!r}")
        if isinstance(head, str) and head != "auto" and find_submodule(model, head) is None:
            raise LayerNotFoundError(
                f"head {head!r} is not a submodule of {type(model).__name__}; pass a module, a callable, "
                "a dotted name such as 'fc', 'auto' or None"
            )
        if head is not None and not isinstance(head, str) and not callable(head):
            raise InputTypeError(f"head must be a module, a callable, a name, 'auto' or None; got {type(head).__name__}")
        self.n_components = n_components
        self.head = head
        self.top_k = top_k
        self.nmf_options = {"max_iter": max_iter, "tol": tol, "init": init, "seed": seed}

    # ------------------------------------------------------------------ maths
    def _factor(self, acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, float]:
        """``(W (N, k, h, w), H (k, C), error, relative error)`` of activations ``(N, C, h, w)``."""
        n, c, *spatial = acts.shape  # any number of spatial axes: every position is one sample
        v = acts.clamp_min(0).movedim(1, -1).reshape(-1, c)
        res = nmf(v, self.n_components, **self.nmf_options)
        norm = float(torch.linalg.norm(v))
        # Strength of concept j at position i: the norm of its contribution W_ij H_j to the feature
        # vector there (free of NMF's scale ambiguity W H = (W / s)(s H)). Its embedding is scaled
        # to the feature vector it contributes where it is strongest (what the head names).
        strengths = (res.W * res.H.norm(dim=1)).reshape(n, *spatial, -1).movedim(-1, 1)
        peak = res.W.amax(dim=0)
        concepts = res.H * torch.where(peak > 0, peak, torch.ones_like(peak))[:, None]
        return strengths, concepts, res.error, res.error / norm if norm > 0 else 0.0

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        strengths, _, _, _ = self._factor(ctx.activations)
        return strengths.amax(dim=1)

    # ------------------------------------------------------------------ concepts
    def _resolve_head(self, channels: int) -> Head | None:
        if self.head is None:
            return None
        if self.head == "auto":
            linears = [m for m in self.model.modules() if isinstance(m, nn.Linear) and m.in_features == channels]
            if not linears:
                warnings.warn(
                    f"head='auto': {type(self.model).__name__} has no nn.Linear taking {channels} features, so the "
                    "concepts are not named; pass head=<module or callable mapping (k, C) to (k, classes)>",
                    CamLensWarning,
                    stacklevel=3,
                )
                return None
            return linears[-1]
        if isinstance(self.head, str):
            return find_submodule(self.model, self.head)
        return self.head

    def factorize(self, input_tensor: torch.Tensor) -> Factorization:
        """Factorise the target layer's activations of a batch into ``n_components`` concepts.

        Needs exactly one target layer. Returns a :class:`Factorization` (tensors on the model's device).
        """
        if len(self.layers) != 1:
            raise ArgumentError(
                f"factorize() works on one target layer; got {len(self.layers)} ({self.target_layer_names}); "
                "create the DeepFeatureFactorization with one target layer"
            )
        x = self.engine.prepare_input(input_tensor)
        name = self.target_layer_names[0]
        with eval_mode(self.model), torch.inference_mode(False):
            cap = self.engine.run(x, None, need_gradients=False)
            with explaining_input(x.shape[2:]):
                acts = self._to_maps(cap.activations[0], name, "activations", x.dim())
            del cap
            strengths, concepts, err, rel = self._factor(acts)
            up = pp.upsample(strengths.flatten(0, 1), tuple(x.shape[2:])).reshape(*strengths.shape[:2], *x.shape[2:])
            peak = up.flatten(1).amax(dim=1).clamp_min(torch.finfo(up.dtype).tiny)
            peak = peak.reshape(-1, *([1] * (up.dim() - 1)))
            fac = Factorization(concepts=concepts, maps=(up / peak).clamp(0, 1), layer_maps=strengths,
                                reconstruction_error=err, relative_error=rel, layer_name=name)
            head = self._resolve_head(acts.shape[1])
            if head is not None:
                fac.concept_scores, fac.top_classes, fac.top_scores = self._name_concepts(head, concepts)
        return fac

    def _name_concepts(self, head: Head, concepts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        params = list(head.parameters()) if isinstance(head, nn.Module) else []
        feats = concepts.to(params[0].dtype) if params else concepts
        with torch.no_grad():
            if isinstance(head, nn.Module):
                with eval_mode(head):
                    logits = head(feats)
            else:
                logits = head(feats)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != concepts.shape[0]:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ArgumentError(
                f"the head mapped the ({concepts.shape[0]}, {concepts.shape[1]}) concept embeddings to {shape}; "
                f"expected ({concepts.shape[0]}, classes): pass a head that takes pooled {concepts.shape[1]}-channel features"
            )
        scores = torch.softmax(logits.float(), dim=1)
        top = scores.topk(min(self.top_k, scores.shape[1]), dim=1)
        return scores, top.indices, top.values
