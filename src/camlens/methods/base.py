"""CAM base classes. A method file only does arithmetic on what the engine captured.

* :class:`BaseCAM` -- the public call (``cam(input_tensor=..., targets=...)``), ``explain``,
  layer resolution, model-state hygiene, smoothing and post-processing;
* :class:`GradientCAM` -- maps of the form ``sum_k w_k * A_k`` (or an element-wise weighting),
  where a method only supplies :meth:`GradientCAM.cam_weights`;
* :class:`ActivationCAM` -- methods that need activations but no gradients (EigenCAM);
* :class:`PerturbationCAM` -- multi-pass methods (ScoreCAM and its variants, AblationCAM): no
  gradients; channel weights from scoring many perturbed inputs with the one chunked scorer
  (:func:`camlens.scoring.score_in_chunks`), ``batch_size`` rows at a time.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .. import postprocess as pp
from ..engine import CamLensWarning, Capture, Engine, OutputAdapter, model_device
from ..errors import ArgumentError, DeviceError, InputTypeError, LayerOutputError
from ..hooks import LayerSpec, eval_mode, resolve_layers, unwrap_model
from ..model_inputs import ForwardInputs, use_inputs
from ..reshape import explaining_input
from ..scoring import score_in_chunks
from ..smoothing import Explained, explain_augmented
from ..targets import TargetFn

__all__ = ["spatial_dims", "per_channel", "BaseCAM", "GradientCAM", "ActivationCAM", "PerturbationCAM", "LayerContext", "Explanation", "check_argument"]

logger = logging.getLogger("camlens")

ReshapeTransform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class LayerContext:
    """Everything a method may use to compute one layer's raw map."""

    name: str
    module: nn.Module
    activations: torch.Tensor
    """``(N, C, *layer_spatial)`` float32 (1-3 spatial axes, as many as the input), after ``reshape_transform``."""
    gradients: torch.Tensor | None
    """``d score / d activations``, same shape as ``activations``; ``None`` for gradient-free methods."""
    raw_activations: torch.Tensor
    """The layer's output exactly as the layer returned it (before ``reshape_transform``)."""
    input_tensor: torch.Tensor
    targets: list[TargetFn]
    scores: torch.Tensor
    outputs: torch.Tensor
    index: int = 0
    """Position of this layer in ``target_layers`` (methods that share work across layers use it)."""
    hessian_vector: torch.Tensor | None = None
    """``H A`` (same shape as ``activations``) when the engine computes it (ShapleyCAM), else ``None``."""


@dataclass
class Explanation:
    """Torch-native result of :meth:`BaseCAM.explain`; every tensor is on the model's device."""

    cam: torch.Tensor
    """``(N, *spatial)`` float32 in ``[0, 1]`` at the input's resolution (``(N, H, W)`` for images,
    ``(N, L)`` for signals, ``(N, D, H, W)`` for volumes and clips)."""
    layer_maps: list[torch.Tensor]
    """Raw signed map per target layer ``(N, *layer_spatial)`` at layer resolution (before ReLU/upsampling)."""
    scores: torch.Tensor
    """Target score of each image ``(N,)`` on the (un-augmented) input."""
    targets: list[TargetFn]
    """The target explained for each image."""
    layer_names: list[str] = field(default_factory=list)

    def numpy(self) -> np.ndarray:
        """The final maps as a float32 numpy array ``(N, *spatial)``."""
        return self.cam.detach().float().cpu().numpy()

    # -- notebooks: an Explanation shows itself as a grid (rows: images; columns: CAM, each layer)
    def figure(self, images: torch.Tensor | np.ndarray | None = None, **kwargs: Any) -> Any:
        """A matplotlib figure of the maps, laid over ``images`` when given (see
        :func:`camlens.image.maps_figure`); needs matplotlib."""
        from ..image import maps_figure

        return maps_figure(self, images, **kwargs)

    def _repr_png_(self) -> bytes | None:
        """Jupyter: the maps as a PNG heat-map grid with the targets named (``None`` without matplotlib)."""
        try:
            from ..image import figure_png

            return figure_png(self.figure())
        except ImportError:
            return None

    def _repr_html_(self) -> str | None:
        """Jupyter: the PNG grid plus one line naming the layers and the batch."""
        import base64
        import html

        png = self._repr_png_()
        if png is None:
            return None
        layers = ", ".join(self.layer_names) or f"{len(self.layer_maps)} layer(s)"
        caption = html.escape(f"Explanation of {self.cam.shape[0]} image(s) at {layers}, maps {tuple(self.cam.shape[1:])}")
        data = base64.b64encode(png).decode("ascii")
        return f'<figure><img src="data:image/png;base64,{data}"/><figcaption>{caption}</figcaption></figure>'


def _warn_blank_gradients(grads: torch.Tensor, raw: torch.Tensor, name: str) -> None:
    """Warn when the reshaped gradient map is identically zero for some image although the raw one
    is not (the reshape dropped the only tokens the target depends on, e.g. a ViT class token).
    All-zero raw gradients are reported by the engine already."""
    if isinstance(raw, dict):  # a feature pyramid: any level's gradient counts
        raw = torch.cat([v.flatten(1) for v in raw.values()], dim=1)
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


# Constructor options a wrapping method (FinerCAM, RefineCAM) keeps for itself as well as handing
# them to its base method; every other option goes to the base method only.
WRAPPER_OPTIONS = ("output_adapter", "batch_size", "combine", "progress", "target_layer", "allow_nonfinite")


def wrapper_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The options of ``kwargs`` a wrapping method's own :class:`BaseCAM` constructor takes."""
    return {k: kwargs[k] for k in WRAPPER_OPTIONS if k in kwargs}


def build_base_method(wrapper: "BaseCAM", base_method: type["BaseCAM"], model: nn.Module, kwargs: dict[str, Any]) -> "BaseCAM":
    """``base_method`` on the wrapper's resolved layers and reshape, with the user's other options;
    an unknown option is reported under the wrapper's name (the class the user built)."""
    passed = {k: v for k, v in kwargs.items() if k != "target_layer"}
    try:
        return base_method(model, wrapper.target_layers, reshape_transform=wrapper.reshape_transform, **passed)
    except InputTypeError as exc:
        raise InputTypeError(f"{type(wrapper).__name__}: {exc} (arguments are passed on to the base method)") from None


def check_argument(owner: str, name: str, value: Any, kind: str, choices: Sequence[Any] = ()) -> Any:
    """Check one constructor argument; returns it (numpy ints as ``int``) or raises a camlens error.

    ``kind``: ``"positive_int"``, ``"optional_positive_int"`` (``None`` allowed), ``"bool"``,
    ``"number"`` (a finite real, returned as ``float``), ``"callable"`` (``None`` allowed) or
    ``"choice"`` (one of ``choices``).
    """
    what = f"{owner}: {name}"
    if kind in ("positive_int", "optional_positive_int"):
        if value is None and kind == "optional_positive_int":
            return None
        expected = "None or a positive int" if kind == "optional_positive_int" else "a positive int"
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise InputTypeError(f"{what} must be {expected}; got {value!r} ({type(value).__name__})")
        if value < 1:
            raise ArgumentError(f"{what} must be {expected} (1 or more); got {value!r}")
        return int(value)
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise InputTypeError(f"{what} must be True or False; got {value!r} ({type(value).__name__})")
        return bool(value)
    if kind == "number":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InputTypeError(f"{what} must be a real number; got {value!r} ({type(value).__name__})")
        if not np.isfinite(value):
            raise ArgumentError(f"{what} must be a finite number; got {value!r}")
        return float(value)
    if kind == "callable":
        if value is not None and not callable(value):
            raise InputTypeError(f"{what} must be a callable or None; got {value!r} ({type(value).__name__})")
        return value
    if kind == "choice":
        if not isinstance(value, str) or value not in choices:
            raise ArgumentError(f"{what} must be one of {', '.join(map(repr, choices))}; got {value!r}")
        return value
    raise ArgumentError(f"check_argument: unknown argument kind {kind!r}")  # pragma: no cover - a bug in camlens


def _spatial_names(k: int) -> str:
    """``"l"``, ``"h, w"`` or ``"d, h, w"`` for ``k`` spatial axes."""
    return {1: "l", 2: "h, w", 3: "d, h, w"}.get(k, "*spatial")


def spatial_dims(t: torch.Tensor) -> tuple[int, ...]:
    """The spatial axes of a ``(N, C, *spatial)`` tensor: ``(2, ..., t.dim() - 1)``.

    Methods reduce over these (``grads.mean(dim=spatial_dims(grads), keepdim=True)``) so the same
    code serves signals ``(N, C, L)``, images ``(N, C, H, W)`` and volumes ``(N, C, D, H, W)``."""
    return tuple(range(2, t.dim()))


def per_channel(weights: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` weights shaped ``(N, C, 1, ...)`` to broadcast against ``like`` ``(N, C, *spatial)``."""
    return weights.reshape(*weights.shape[:2], *([1] * (like.dim() - 2)))


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
            :func:`camlens.engine.default_output_adapter`; Ultralytics YOLO detectors:
            :class:`camlens.yolo.YOLOOutputAdapter`).
        batch_size: images per forward pass for perturbation methods (settable later as
            ``cam.batch_size``).
        combine: how maps of several layers are combined: ``"mean"`` (default), ``"max"``, ``"sum"``.
        progress: show progress bars on long perturbation runs.
        allow_nonfinite: explain inputs holding NaN or inf as they are; by default such an input
            raises :class:`~camlens.errors.NonFiniteInputError`.

    Every argument is checked here, when the object is built: a wrong type raises
    :class:`~camlens.errors.InputTypeError`, a wrong value :class:`~camlens.errors.ArgumentError`.

    Arguments of pytorch-grad-cam's ``BaseCAM`` are accepted where camlens can honour them and
    rejected with a :class:`~camlens.errors.ArgumentError` where it cannot (never silently ignored):

    * ``uses_gradients``: a property of the method in camlens; passing the method's own value is
      accepted, the other value is rejected (a gradient method cannot run without gradients, and a
      gradient-free method has none to use);
    * ``compute_input_gradient=False`` is accepted (camlens never computes input gradients for a
      CAM); ``True`` is rejected: use :class:`camlens.GuidedBackprop` for input gradients;
    * ``tta_transforms=None`` is accepted; ``aug_smooth=True`` always uses camlens's fixed six
      augmentations (:mod:`camlens.smoothing`, the same set as pytorch-grad-cam's default), so
      other transforms are rejected.
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    uses_gradients: ClassVar[bool] = True
    multi_pass: ClassVar[bool] = False
    """True for methods that run many forward passes per image (perturbation, noise, windows)."""
    apply_relu: ClassVar[bool] = True
    """ReLU each layer's raw map before upsampling (CAM and FullGrad keep the signed/absolute map)."""
    engine_options: ClassVar[dict[str, Any]] = {}
    """Extra :class:`~camlens.engine.Engine` switches a method needs (FullGrad: the input gradient and
    optional layers; ShapleyCAM: Hessian-vector products)."""
    figure_options: ClassVar[dict[str, Any]] = {}
    """Constructor options the docs gallery uses for this method's figure (multi-pass methods: fewer
    samples or channels, so the docs build stays short); stated under the figure."""

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
        allow_nonfinite: bool = False,
        **compat: Any,
    ) -> None:
        owner = type(self).__name__
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self._check_compat(compat)
        if target_layers is not None and target_layer is not None:
            raise ArgumentError(f"{owner}: pass either target_layers or target_layer, not both")
        if use_cuda is not None:
            check_argument(owner, "use_cuda", use_cuda, "bool")
        check_argument(owner, "reshape_transform", reshape_transform, "callable")
        check_argument(owner, "output_adapter", output_adapter, "callable")
        batch_size = check_argument(owner, "batch_size", batch_size, "positive_int")
        check_argument(owner, "combine", combine, "choice", ("mean", "max", "sum"))
        progress = check_argument(owner, "progress", progress, "bool")
        allow_nonfinite = check_argument(owner, "allow_nonfinite", allow_nonfinite, "bool")
        self.model = unwrap_model(model)  # compiled / DataParallel / DDP: explain the eager original (README)
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
        self.engine = Engine(
            self.model, self.layers, output_adapter, allow_nonfinite=allow_nonfinite, **self.engine_options
        )

    @classmethod
    def unsupported_reason(cls, model: nn.Module) -> str | None:
        """Why this method cannot explain ``model`` at all (``None``: it can). Methods tied to an
        architecture (LeGrad: attention blocks) override it; ``camlens explain --method all`` skips
        the methods that give a reason."""
        return None

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
        *,
        forward_args: tuple[Any, ...] | None = None,
        forward_kwargs: dict[str, Any] | None = None,
        input_name: str | None = None,
    ) -> np.ndarray:
        """Explain a batch ``(N, C, *spatial)``: float32 numpy ``(N, *spatial)`` in ``[0, 1]`` at the
        input's resolution (``(N, H, W)`` for images, ``(N, L)`` signals, ``(N, D, H, W)`` volumes).

        Give ``targets`` (one callable per image) or the older ``target_category`` (``None``:
        each image's top class; an int: that class for all; a list: one per image).

        Models with more inputs than the image: ``forward_args`` / ``forward_kwargs`` are passed to
        the model after the image, ``model(x, *forward_args, **forward_kwargs)``; with ``input_name``
        the image is passed by name, ``model(*forward_args, **{input_name: x}, **forward_kwargs)``
        (HuggingFace: ``input_name="pixel_values"``). Values with a leading batch axis of ``N`` go
        with their image into every perturbed, noisy or augmented copy (:mod:`camlens.model_inputs`).
        """
        extra = {
            k: v
            for k, v in (("forward_args", forward_args), ("forward_kwargs", forward_kwargs), ("input_name", input_name))
            if v is not None
        }
        return self.explain(
            input_tensor,
            targets,
            target_category=target_category,
            aug_smooth=aug_smooth,
            eigen_smooth=eigen_smooth,
            **extra,
        ).numpy()

    def explain(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[TargetFn] | None = None,
        *,
        target_category: int | Sequence[int] | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        forward_args: tuple[Any, ...] | None = None,
        forward_kwargs: dict[str, Any] | None = None,
        input_name: str | None = None,
    ) -> Explanation:
        """Like ``__call__`` but returns an :class:`Explanation` of tensors on the model's device,
        with the raw per-layer maps and the target scores."""
        if targets is not None and target_category is not None:
            raise ArgumentError("pass either targets or target_category, not both")
        x = self.engine.prepare_input(input_tensor)
        extra = ForwardInputs.build(x.shape[0], forward_args, forward_kwargs, input_name)
        if targets is not None:
            targets = list(targets)
        step = functools.partial(self._explain_batch, eigen_smooth=eigen_smooth)
        with eval_mode(self.model), torch.inference_mode(False), use_inputs(extra):
            if aug_smooth:
                cam, raw, scores, chosen = explain_augmented(step, x, targets, target_category)
            else:
                cam, raw, scores, chosen = step(x, targets, target_category=target_category)
        return Explanation(cam, raw, scores, chosen, self.target_layer_names)

    # ---------------------------------------------------------------- overridable
    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        """Weights of the activations, one convention for every family: ``(N, C, 1, 1)`` per
        channel or ``(N, C, h, w)`` element-wise."""
        raise NotImplementedError

    def weighted_activations(self, ctx: LayerContext) -> torch.Tensor:
        """``(N, C, h, w)`` weighted activations ``w * A``; the map is their channel sum."""
        return self.cam_weights(ctx) * ctx.activations

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        """Raw signed map ``(N, h, w)`` of one layer: the channel sum of :meth:`weighted_activations`,
        or with ``eigen_smooth`` their projection on the first principal component. Methods
        override :meth:`cam_weights` (or this, for other maps)."""
        weighted = self.weighted_activations(ctx)
        if eigen_smooth:
            return pp.eigen_projection(weighted)
        return weighted.sum(dim=1)

    # ---------------------------------------------------------------- internals
    def _explain_batch(
        self,
        x: torch.Tensor,
        targets: Sequence[TargetFn] | None,
        *,
        eigen_smooth: bool,
        target_category: Any = None,
        resolve_targets: Callable[[torch.Tensor], Sequence[TargetFn]] | None = None,
    ) -> Explained:
        """Capture, per-layer maps, finish: ``(maps (N, H, W), raw maps per layer, scores, targets)``."""
        cap = self.engine.run(
            x, targets, target_category=target_category, need_gradients=self.uses_gradients,
            resolve_targets=resolve_targets,
        )  # fmt: skip
        with explaining_input(x.shape[2:]):  # token reshapes lay out tokens on this input's grid
            raw = self._layer_maps(cap, x, eigen_smooth)
        return self._finish(raw, tuple(x.shape[2:])), raw, cap.scores, cap.targets

    def _layer_maps(self, cap: Capture, x: torch.Tensor, eigen_smooth: bool) -> list[torch.Tensor]:
        maps = []
        for i, (name, module) in enumerate(self.layers):
            acts = self._to_maps(cap.activations[i], name, "activations", x.dim())
            grads = None
            if cap.gradients is not None:
                grads = self._to_maps(cap.gradients[i], name, "gradients", x.dim())
                if self.reshape_transform is not None:  # the engine checked the raw gradients
                    _warn_blank_gradients(grads, cap.gradients[i], name)
            hvp = None
            if cap.hessian_vector is not None:
                hvp = self._to_maps(cap.hessian_vector[i], name, "Hessian-vector products", x.dim())
            ctx = LayerContext(
                name=name,
                module=module,
                activations=acts,
                gradients=grads,
                raw_activations=cap.activations[i],
                input_tensor=x,
                targets=cap.targets,
                scores=cap.scores,
                outputs=cap.outputs,
                index=i,
                hessian_vector=hvp,
            )
            maps.append(self.layer_map(ctx, eigen_smooth))
        return maps

    def _to_maps(self, tensor: torch.Tensor, name: str, what: str, input_dim: int = 4) -> torch.Tensor:
        """The layer's ``tensor`` (after ``reshape_transform``) as float ``(N, C, *layer_spatial)`` with
        as many spatial axes as the input ``(N, C, *spatial)`` has (``input_dim - 2``)."""
        if self.reshape_transform is not None:
            tensor = self.reshape_transform(tensor)
        elif isinstance(tensor, dict):
            raise LayerOutputError(
                f"target layer {name!r} returns a feature pyramid (levels {list(tensor)}), not one map; pass "
                "reshape_transform=camlens.reshape.FPNReshape() (all levels on one grid) or FPNLevel('<level>'), "
                "or omit target_layers to let camlens choose"
            )
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != input_dim:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            spatial = _spatial_names(input_dim - 2)
            hint = (
                f"the reshape_transform must return (N, C, {spatial})"
                if self.reshape_transform is not None
                else "for token outputs (N, tokens, C) pass reshape_transform=camlens.reshape.TokenReshape(...) "
                f"or a callable returning (N, C, {spatial}); for a {input_dim - 2}-D input choose a layer that "
                f"keeps its {input_dim - 2} spatial axes"
            )
            raise LayerOutputError(
                f"{what} of target layer {name!r} have shape {shape}, expected (N, C, {spatial}) for an input "
                f"with {input_dim - 2} spatial axes; {hint}"
            )
        return tensor.float()

    def _finish(self, raw_maps: list[torch.Tensor], size: tuple[int, ...]) -> torch.Tensor:
        per_layer = []
        for m in raw_maps:
            m = pp.relu(m) if self.apply_relu else m
            per_layer.append(pp.minmax_normalize(pp.upsample(m, size)))
        if len(per_layer) == 1:
            return per_layer[0]
        return pp.minmax_normalize(pp.combine(per_layer, self.combine))

    def _check_compat(self, compat: dict[str, Any]) -> None:
        """Honour or reject pytorch-grad-cam's constructor arguments (see the class docstring)."""
        who = type(self).__name__
        unknown = set(compat) - {"compute_input_gradient", "uses_gradients", "tta_transforms"}
        if unknown:
            own = sorted(getattr(self, "options", {}))
            hint = f"; {who}'s own options are {own}" if own else ""
            raise InputTypeError(f"{who}() got unexpected keyword argument(s): {sorted(unknown)}{hint}")
        if "uses_gradients" in compat and bool(compat["uses_gradients"]) != self.uses_gradients:
            need = "needs gradients" if self.uses_gradients else "uses no gradients"
            raise ArgumentError(
                f"{who} {need}; got uses_gradients={compat['uses_gradients']!r}. camlens sets this per method: "
                "drop the argument"
            )
        if compat.get("compute_input_gradient"):
            raise ArgumentError(
                f"{who} does not compute gradients with respect to the input; got compute_input_gradient=True. "
                "Drop the argument, or use camlens.GuidedBackprop for input gradients"
            )
        if compat.get("tta_transforms") is not None:
            raise ArgumentError(
                f"{who} does not take tta_transforms; got {type(compat['tta_transforms']).__name__}. "
                "aug_smooth=True uses camlens's fixed six augmentations (flip x 0.9/1.0/1.1): drop the argument"
            )

    @staticmethod
    def _move_to_cuda(model: nn.Module) -> None:
        warnings.warn(
            "use_cuda is deprecated: camlens runs on the model's device; move the model yourself "
            "with model.cuda() and drop use_cuda",
            DeprecationWarning,
            stacklevel=3,
        )
        if not torch.cuda.is_available():
            raise DeviceError("use_cuda=True but CUDA is not available on this machine; drop use_cuda to run on CPU")
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


class ActivationCAM(BaseCAM):
    """Methods computed from activations alone: the forward pass records no autograd graph."""

    uses_gradients: ClassVar[bool] = False


class PerturbationCAM(BaseCAM):
    """Multi-pass methods: ``map = sum_k w_k * A_k`` with ``w`` from the scores of perturbed inputs.

    The activations are captured once (one forward pass, no autograd); a method then scores its
    perturbed inputs -- rows such as (image, channel) pairs -- with :meth:`score_rows`, which runs
    them ``batch_size`` at a time without capture hooks or autograd, through the output adapter,
    with a progress bar (``progress=False`` turns it off). A subclass implements
    :meth:`cam_weights` (``(N, C, 1, 1)``, as every family) and lists its own constructor options
    in ``options`` (name -> default); they are set as attributes, then :meth:`configure` checks
    them and sets up per-instance state.
    """

    uses_gradients: ClassVar[bool] = False
    multi_pass: ClassVar[bool] = True
    options: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        model: nn.Module,
        target_layers: LayerSpec | Sequence[LayerSpec] | None = None,
        use_cuda: bool | None = None,
        reshape_transform: ReshapeTransform | None = None,
        **kwargs: Any,
    ) -> None:
        own = {name: kwargs.pop(name, default) for name, default in self.options.items()}
        super().__init__(model, target_layers, use_cuda, reshape_transform, **kwargs)
        for name, value in own.items():
            setattr(self, name, value)
        self.configure()

    def configure(self) -> None:
        """Validate (and normalise) the method's options, raising a camlens error on bad values,
        and set up per-instance state."""

    def score_rows(
        self,
        total: int,
        score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        inputs: Callable[[torch.Tensor], torch.Tensor] | None = None,
        run: Callable[[torch.Tensor], Any] | None = None,
        images: Callable[[torch.Tensor], torch.Tensor] | None = None,
        desc: str = "",
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """``(total,)`` scores of ``total`` rows (see :func:`camlens.scoring.score_in_chunks`)."""
        return score_in_chunks(
            self.model,
            total,
            score,
            inputs=inputs,
            run=run,
            images=images,
            batch_size=self.batch_size,
            device=device if device is not None else model_device(self.model),
            output_adapter=self.engine.output_adapter,
            dtype=dtype,
            progress=self.progress,
            desc=desc,
        )
