"""Finer-CAM (Zhang et al., CVPR 2025, arXiv:2501.11309): explain a class against its most similar classes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import ArgumentError, InputTypeError, TargetError
from ..hooks import eval_mode
from ..registry import register
from ..targets import ClassifierOutputTarget, FinerWeightedTarget, TargetFn, targets_from_categories
from ..model_inputs import ForwardInputs, use_inputs
from .base import BaseCAM, Explanation, build_base_method, wrapper_options

__all__ = ["FinerCAM"]


@register("finercam", "finer-cam")
class FinerCAM(BaseCAM):
    """Finer-CAM: any gradient method, explaining the target class *against* its most similar classes.

    The score explained is :class:`camlens.targets.FinerWeightedTarget`'s
    ``s = sum_j p_j (y_c - alpha * y_j) / sum_j p_j`` over the comparison classes ``j``, with
    ``p = softmax(y)``: the classes at ``comparison_categories`` in the order of similarity
    ``|y_j - y_c|`` (1 = the most similar other class), chosen per image from its logits. The map
    is then ``base_method``'s (Grad-CAM by default) for that score, so features shared with the
    similar classes cancel and what tells the class apart remains.

    Targets: ``ClassifierOutputTarget(c)`` (or ``target_category``) names the class explained;
    ``None`` explains each image's top class; a ``FinerWeightedTarget`` is used as given (explicit
    comparison classes). The comparisons are picked inside the one forward pass; with
    ``aug_smooth`` they are picked once on the un-augmented image (one extra plain forward).
    ``exp.scores`` holds the contrastive score ``s``.

    Args:
        base_method: a gradient CAM class (default :class:`GradCAM`).
        comparison_categories: similarity ranks of the classes compared with (default ``(1, 2, 3)``).
        alpha: comparison strength (0 gives the base method's map of the class logit).

    Same numbers as pytorch-grad-cam 1.5.7 (whose ``FinerWeightedTarget`` this one matches); the
    probability weights are part of the score, so gradients flow through them there and here.
    torchcam 0.5.0 averages the compared logits without weights (``gamma = 0.6``).

    Example::

        cam = FinerCAM(model, "layer4", alpha=0.6)
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(12)] * len(x))
    """

    paper = "Zhang et al., Finer-CAM: Spotting the Difference Reveals Finer Details for Visual Explanation, CVPR 2025"
    summary = "any gradient CAM of (target logit - alpha x its most similar classes' logits, probability-weighted)"
    formula = r"p = \operatorname{softmax}(y),\quad s = \frac{\sum_j p_j\,(y_c - \alpha\, y_j)}{\sum_j p_j}\ \ (j\text{: the classes closest to } c \text{ in } |y_j - y_c|),\qquad L^c = \operatorname{CAM}_{\text{base}}(s)"
    cost = "the base method's passes for the score s (Grad-CAM: one forward pass plus one backward pass to the target layer); the comparison classes are picked inside the same forward pass"

    def __init__(
        self,
        model: nn.Module,
        target_layers: Any = None,
        use_cuda: bool | None = None,
        reshape_transform: Any = None,
        *,
        base_method: type[BaseCAM] | None = None,
        comparison_categories: Sequence[int] = (1, 2, 3),
        alpha: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if base_method is None:
            from .gradcam import GradCAM

            base_method = GradCAM
        if not (isinstance(base_method, type) and issubclass(base_method, BaseCAM)):
            raise InputTypeError(f"base_method must be a camlens CAM class such as GradCAM; got {base_method!r}")
        if not base_method.uses_gradients or issubclass(base_method, FinerCAM):
            raise InputTypeError(
                f"FinerCAM needs a gradient method as base_method (GradCAM, LayerCAM, HiResCAM, ...): the "
                f"contrastive score reaches the map through gradients; {base_method.__name__} does not use them"
            )
        super().__init__(model, target_layers, use_cuda, reshape_transform, **wrapper_options(kwargs))
        self.base = build_base_method(self, base_method, model, kwargs)
        self.engine = self.base.engine
        FinerWeightedTarget(0, None, alpha, ranks=comparison_categories)  # validates alpha and ranks
        self.comparison_categories = tuple(int(r) for r in comparison_categories)
        self.alpha = float(alpha)

    def finer_targets(
        self, n: int, targets: Sequence[TargetFn] | None, target_category: Any
    ) -> list[FinerWeightedTarget]:
        """One :class:`FinerWeightedTarget` per image from the user's targets or ``target_category``."""
        if targets is not None:
            targets = list(targets)
            if len(targets) != n:
                raise TargetError(f"got {len(targets)} targets for a batch of {n} images; pass one target per image")
            mains: list[Any] = []
            for t in targets:
                if isinstance(t, FinerWeightedTarget):
                    mains.append(t)
                elif isinstance(t, ClassifierOutputTarget):
                    mains.append(t.category)
                else:
                    raise TargetError(
                        "FinerCAM compares classes, so each target must be a ClassifierOutputTarget(class) or a "
                        f"FinerWeightedTarget; got {type(t).__name__}"
                    )
        elif target_category is None:
            mains = [None] * n
        else:  # the library's rules (integers 0 <= class, one per image); the range is checked when scored
            mains = [t.category for t in targets_from_categories(target_category, torch.zeros(n))]  # type: ignore[attr-defined]
        return [
            m if isinstance(m, FinerWeightedTarget) else FinerWeightedTarget(m, None, self.alpha, ranks=self.comparison_categories)
            for m in mains
        ]

    def explain(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[TargetFn] | None = None,
        *,
        target_category: int | Sequence[int] | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        **extra_inputs: Any,
    ) -> Explanation:
        """``extra_inputs``: ``forward_args`` / ``forward_kwargs`` / ``input_name`` as for any CAM."""
        if targets is not None and target_category is not None:
            raise ArgumentError("pass either targets or target_category, not both")
        x = self.engine.prepare_input(input_tensor)
        finer = self.finer_targets(x.shape[0], targets, target_category)
        if aug_smooth:  # compare with the classes similar on the un-augmented image, in every augmentation
            get = extra_inputs.get
            extra = ForwardInputs.build(x.shape[0], get("forward_args"), get("forward_kwargs"), get("input_name"))
            with eval_mode(self.model), torch.inference_mode(False), use_inputs(extra):
                outputs = self.engine.forward_outputs(x)
            finer = [t.resolve(o) for t, o in zip(finer, outputs)]
        return self.base.explain(x, finer, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, **extra_inputs)
