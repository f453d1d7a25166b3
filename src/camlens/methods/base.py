"""CAM base classes. A method file only does arithmetic on what the engine captured.

* :class:`BaseCAM` -- the public call (``cam(input_tensor=..., targets=...)``), ``explain``,
  layer resolution, model-state hygiene, smoothing and post-processing;
* :class:`GradientCAM` -- maps of the form ``sum_k w_k * A_k`` (or an element-wise weighting),
  where a method only supplies :meth:`GradientCAM.cam_weights`;
* :class:`ActivationCAM` -- methods that need activations but no gradients (EigenCAM);
* perturbation methods (ScoreCAM, AblationCAM) derive from :class:`BaseCAM` directly and score
  masked or ablated inputs in batches of ``batch_size``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .. import postprocess as pp
from ..engine import CamLensWarning, Capture, Engine, OutputAdapter
from ..errors import CamLensError, InputTypeError, LayerOutputError
from ..hooks import LayerSpec, eval_mode, resolve_layers
from ..smoothing import AUGMENTATIONS, IDENTITY_INDEX, augment, deaugment_mean
from ..targets import TargetFn, targets_from_categories

__all__ = ["BaseCAM", "GradientCAM", "ActivationCAM", "LayerContext", "Explanation"]

logger = logging.getLogger("camlens")

ReshapeTransform = Callable[[torch.Tensor], torch.Tensor]
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@dataclass
class LayerContext:
    """Everything a method may use to compute one layer's raw map."""

    cam: "BaseCAM"
    index: int
    name: str
    module: nn.Module
    activations: torch.Tensor
    """``(N, C, h, w)`` float32, after ``reshape_transform``."""
    gradients: torch.Tensor | None
    """``d score / d activations``, same shape as ``activations``; ``None`` for gradient-free methods."""
    raw_activations: torch.Tensor
    """The layer's output exactly as the layer returned it (before ``reshape_transform``)."""
    input_tensor: torch.Tensor
    targets: list[TargetFn]
    scores: torch.Tensor
    outputs: torch.Tensor
    hessian_vector: torch.Tensor | None = None
    """``H A`` (same shape as ``activations``) when the engine computes it (ShapleyCAM), else ``None``."""


@dataclass
class Explanation:
    """Torch-native result of :meth:`BaseCAM.explain`; every tensor is on the model's device."""

    cam: torch.Tensor
    """``(N, H, W)`` float32 in ``[0, 1]`` at the input's resolution."""
    layer_maps: list[torch.Tensor]
    """Raw signed map per target layer ``(N, h, w)`` at layer resolution (before ReLU/upsampling)."""
    scores: torch.Tensor
    """Target score of each image ``(N,)`` on the (un-augmented) input."""
    targets: list[TargetFn]
    """The target explained for each image."""
    layer_names: list[str] = field(default_factory=list)

    def numpy(self) -> np.ndarray:
        """The final maps as a float32 numpy array ``(N, H, W)``."""
        return self.cam.detach().float().cpu().numpy()


def _warn_blank_gradients(grads: torch.Tensor, raw: torch.Tensor, name: str) -> None:
    """Warn when the reshaped gradient map is identically zero for some image although the raw one
    is not (the reshape dropped the only tokens the target depends on, e.g. a ViT class token).
    All-zero raw gradients are reported by the engine already."""
    blank = grads.flatten(1).abs().amax(dim=1).eq(0) & raw.flatten(1).abs().amax(dim=1).gt(0)
    if bool(blank.any()):
        images = blank.nonzero().flatten().tolist()
        warnings.warn(
            f"the target score does not depend on the spatial map of layer {name!r} (after reshape_transform) "
            f"for image(s) {images[:8]}{'...' if len(images) > 8 else ''}: its gradient is exactly zero there, so "
            "gradient-based maps are blank. For a ViT, the last block's output reaches a class-token head only "
            "through the class token, which the reshape drops: target the last block's norm1 (timm "
            "'blocks[-1].norm1', torchvision 'encoder.layers[-1].ln_1'), or omit target_layers to let camlens choose.",
            CamLensWarning,
            stacklevel=5,
        )


class BaseCAM:
    """Base class of every CAM method.

    Args:
        model: any ``nn.Module`` taking ``(N, C, H, W)`` images. It is run in eval mode during a
            call and left exactly as found (train/eval flags, ``requires_grad``, ``.grad``, hooks).
        target_layers: one module, a dotted name (``"layer4.2"``, ``"layer4[-1]"``) or a list of
            them. ``None``: chosen automatically (see :mod:`camlens.layers`).
        use_cuda: accepted for compatibility with older code. camlens follows the model's device;
            ``True`` moves a CPU model to CUDA once (with a deprecation warning).
        reshape_transform: callable applied to each layer's activations and gradients to make
            them ``(N, C, h, w)`` (e.g. for vision-transformer tokens).
        target_layer: older single-layer spelling of ``target_layers``.
        output_adapter: turns the model's output into a ``(N, ...)`` score tensor (default:
            :func:`camlens.engine.default_output_adapter`).
        batch_size: images per forward pass for perturbation methods (settable later as
            ``cam.batch_size``).
        combine: how maps of several layers are combined: ``"mean"`` (default), ``"max"``, ``"sum"``.
        progress: show progress bars on long perturbation runs.
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    uses_gradients: ClassVar[bool] = True
    apply_relu: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec] | None = None,
        use_cuda: bool | None = None,
        reshape_transform: ReshapeTransform | None = None,
        *,
        target_layer: LayerSpec | None = None,
        output_adapter: OutputAdapter | None = None,
        batch_size: int = 32,
        combine: str = "mean",
        progress: bool = True,
        **compat: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        ignored = set(compat) - {"compute_input_gradient", "uses_gradients", "tta_transforms"}
        if ignored:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s): {sorted(ignored)}")
        if target_layers is not None and target_layer is not None:
            raise CamLensError("pass either target_layers or target_layer, not both")
        if combine not in ("mean", "max", "sum"):
            raise ValueError(f"combine must be 'mean', 'max' or 'sum'; got {combine!r}")
        self.model = model
        if use_cuda:
            self._move_to_cuda(model)
        spec = target_layers if target_layers is not None else target_layer
        self.auto_layer_description: str | None = None
        if spec is None:
            from ..layers import auto_target_layers

            choice = auto_target_layers(model)
            self.layers = list(choice.layers)
            if reshape_transform is None:
                reshape_transform = choice.reshape_transform
            self.auto_layer_description = choice.description
            logger.info("camlens: %s target layer chosen automatically: %s", type(model).__name__, choice.description)
        else:
            self.layers = resolve_layers(model, spec)
        self.reshape_transform = reshape_transform
        self.output_adapter = output_adapter
        self.batch_size = batch_size
        self.combine = combine
        self.progress = progress
        self.engine = Engine(model, self.layers, output_adapter)

    # ---------------------------------------------------------------- public API
    @property
    def target_layers(self) -> list[nn.Module]:
        """The resolved target layer modules."""
        return [m for _, m in self.layers]

    @property
    def target_layer_names(self) -> list[str]:
        """Dotted names of the target layers inside the model."""
        return [n for n, _ in self.layers]

    def __call__(
        self,
        input_tensor: torch.Tensor,
        target_category: int | Sequence[int] | None = None,
        targets: Sequence[TargetFn] | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """Explain a batch: float32 numpy ``(N, H, W)`` in ``[0, 1]`` at the input's resolution.

        Give ``targets`` (one callable per image) or the older ``target_category`` (``None``:
        each image's top class; an int: that class for all; a list: one per image).
        """
        return self.explain(
            input_tensor,
            targets,
            target_category=target_category,
            aug_smooth=aug_smooth,
            eigen_smooth=eigen_smooth,
        ).numpy()

    def explain(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[TargetFn] | None = None,
        *,
        target_category: int | Sequence[int] | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> Explanation:
        """Like ``__call__`` but returns an :class:`Explanation` of tensors on the model's device,
        with the raw per-layer maps and the target scores."""
        if targets is not None and target_category is not None:
            raise CamLensError("pass either targets or target_category, not both")
        x = self.engine.prepare_input(input_tensor)
        if targets is not None:
            targets = list(targets)
        with eval_mode(self.model), torch.inference_mode(False):
            if aug_smooth:
                return self._explain_augmented(x, targets, target_category, eigen_smooth)
            cap = self.engine.run(
                x, targets, target_category=target_category, need_gradients=self.uses_gradients
            )
            raw = self._layer_maps(cap, x, eigen_smooth)
            cam = self._finish(raw, tuple(x.shape[-2:]))
            return Explanation(cam, raw, cap.scores, cap.targets, self.target_layer_names)

    # ---------------------------------------------------------------- overridable
    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        """Raw signed map ``(N, h, w)`` of one layer. Methods override this (or ``cam_weights``)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- internals
    def _layer_maps(self, cap: Capture, x: torch.Tensor, eigen_smooth: bool) -> list[torch.Tensor]:
        maps = []
        for i, (name, module) in enumerate(self.layers):
            acts = self._to_maps(cap.activations[i], name, "activations")
            grads = None
            if cap.gradients is not None:
                grads = self._to_maps(cap.gradients[i], name, "gradients")
                if self.reshape_transform is not None:  # the engine checked the raw gradients
                    _warn_blank_gradients(grads, cap.gradients[i], name)
            hvp = None
            if cap.hessian_vector is not None:
                hvp = self._to_maps(cap.hessian_vector[i], name, "Hessian-vector products")
            ctx = LayerContext(
                cam=self,
                index=i,
                name=name,
                module=module,
                activations=acts,
                gradients=grads,
                raw_activations=cap.activations[i],
                input_tensor=x,
                targets=cap.targets,
                scores=cap.scores,
                outputs=cap.outputs,
                hessian_vector=hvp,
            )
            maps.append(self.layer_map(ctx, eigen_smooth))
        return maps

    def _to_maps(self, tensor: torch.Tensor, name: str, what: str) -> torch.Tensor:
        if self.reshape_transform is not None:
            tensor = self.reshape_transform(tensor)
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            hint = (
                "the reshape_transform must return (N, C, h, w)"
                if self.reshape_transform is not None
                else "for token outputs (N, tokens, C) pass reshape_transform=camlens.reshape.TokenReshape(...) "
                "or a callable returning (N, C, h, w)"
            )
            raise LayerOutputError(f"{what} of target layer {name!r} have shape {shape}, expected (N, C, h, w); {hint}")
        return tensor.float()

    def _finish(self, raw_maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        per_layer = []
        for m in raw_maps:
            m = pp.relu(m) if self.apply_relu else m
            per_layer.append(pp.minmax_normalize(pp.upsample(m, size)))
        if len(per_layer) == 1:
            return per_layer[0]
        return pp.minmax_normalize(pp.combine(per_layer, self.combine))

    def _explain_augmented(
        self, x: torch.Tensor, targets: list[TargetFn] | None, target_category: Any, eigen_smooth: bool
    ) -> Explanation:
        n = x.shape[0]
        k = len(AUGMENTATIONS)
        if targets is not None:
            if len(targets) != n:
                from ..errors import TargetError

                raise TargetError(
                    f"got {len(targets)} targets for a batch of {n} images; pass one target per image"
                )
            all_targets: list[TargetFn] | None = targets * k
            resolve = None
        else:
            all_targets = None

            def resolve(outputs: torch.Tensor) -> list[TargetFn]:
                # Targets are chosen on the un-augmented image and explained in every augmentation.
                ident = outputs[IDENTITY_INDEX * n : (IDENTITY_INDEX + 1) * n]
                return list(targets_from_categories(target_category, ident)) * k

        try:
            xs = augment(x)
            cap = self.engine.run(xs, all_targets, need_gradients=self.uses_gradients, resolve_targets=resolve)
            raw = self._layer_maps(cap, xs, eigen_smooth)
            scores, resolved = cap.scores, cap.targets
        except _OUT_OF_MEMORY:
            xs = cap = None  # free the failed batch before the lean path
            warnings.warn(
                "aug_smooth: the six augmented copies of the batch did not fit in memory together; "
                "running them one augmentation at a time (same result, slower)",
                CamLensWarning,
                stacklevel=4,
            )
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raw, scores, resolved = self._augmented_one_by_one(x, targets, target_category, eigen_smooth)
        cams = self._finish(raw, tuple(x.shape[-2:]))
        cam = pp.minmax_normalize(deaugment_mean(cams, n))
        sl = slice(IDENTITY_INDEX * n, (IDENTITY_INDEX + 1) * n)
        return Explanation(cam, [r[sl] for r in raw], scores[sl], resolved[sl], self.target_layer_names)

    def _augmented_one_by_one(
        self, x: torch.Tensor, targets: list[TargetFn] | None, target_category: Any, eigen_smooth: bool
    ) -> tuple[list[torch.Tensor], torch.Tensor, list[TargetFn]]:
        """The memory-lean path of aug_smooth: one forward/backward per augmentation."""
        if targets is None:  # choose the targets on the un-augmented image first
            ident = augment(x, (AUGMENTATIONS[IDENTITY_INDEX],))
            targets = self.engine.run(ident, None, target_category=target_category, need_gradients=False).targets
        per_aug = []
        for aug in AUGMENTATIONS:
            xa = augment(x, (aug,))
            cap = self.engine.run(xa, targets, need_gradients=self.uses_gradients)
            per_aug.append((self._layer_maps(cap, xa, eigen_smooth), cap.scores))
        raw = [torch.cat([maps[i] for maps, _ in per_aug]) for i in range(len(per_aug[0][0]))]
        scores = torch.cat([s for _, s in per_aug])
        return raw, scores, list(targets) * len(AUGMENTATIONS)

    @staticmethod
    def _move_to_cuda(model: nn.Module) -> None:
        warnings.warn(
            "use_cuda is deprecated: camlens runs on the model's device; move the model yourself "
            "with model.cuda() and drop use_cuda",
            DeprecationWarning,
            stacklevel=3,
        )
        if not torch.cuda.is_available():
            raise CamLensError("use_cuda=True but CUDA is not available on this machine; drop use_cuda to run on CPU")
        model.cuda()

    # ---------------------------------------------------------------- context manager
    def __enter__(self) -> "BaseCAM":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # Hooks live for one call only, so there is nothing to release; exceptions propagate.
        return None

    def release(self) -> None:
        """Compatibility no-op: camlens holds no hooks between calls."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, target_layers={self.target_layer_names})"


class GradientCAM(BaseCAM):
    """Maps of the form ``sum_k (w * A)_k`` where ``w`` comes from the gradients.

    Subclasses implement :meth:`cam_weights` (``(N, C, 1, 1)`` per-channel or ``(N, C, h, w)``
    element-wise weights) or override :meth:`weighted_activations` for other combinations. With
    ``eigen_smooth`` the weighted activations are projected on their first principal component
    instead of summed over channels.
    """

    uses_gradients: ClassVar[bool] = True

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        raise NotImplementedError

    def weighted_activations(self, ctx: LayerContext) -> torch.Tensor:
        """``(N, C, h, w)`` weighted activations; the map is their channel sum."""
        return self.cam_weights(ctx) * ctx.activations

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        weighted = self.weighted_activations(ctx)
        if eigen_smooth:
            return pp.eigen_projection(weighted)
        return weighted.sum(dim=1)


class ActivationCAM(BaseCAM):
    """Methods computed from activations alone: the forward pass records no autograd graph."""

    uses_gradients: ClassVar[bool] = False
