"""The engine: runs the model once and captures what CAM methods need.

How a call works (:meth:`Engine.run`):

* forward hooks (from :mod:`camlens.hooks`) capture each target layer's output for this call only;
* the forward pass starts with autograd *off*; the first target layer's hook turns it on and
  hands the rest of the network a fresh leaf copy of its output. Nothing before the target layer
  is recorded, no parameter gradient is ever requested, and the user's ``.grad`` fields are never
  touched: gradients come from :func:`torch.autograd.grad` with respect to the captured
  activations only. A GradCAM on the last block therefore costs about one plain forward pass;
* the downstream network receives a clone of the captured tensor, so an in-place op after the
  target layer (``ReLU(inplace=True)``) cannot corrupt the activations or the graph;
* the capture hooks record only the forward pass they were registered for
  (:func:`camlens.hooks.capture_scope`): a forward pass of the same model started by a target
  callable (a nested camlens call, a plain ``model(x)``) or by another thread passes through them
  untouched;
* the input must be finite (one sum reduction per call, an element-wise check only when the sum
  is not finite; ``allow_nonfinite=True`` opts out), and an exception raised by the model's forward pass reaches the caller with the same type
  and a note giving camlens's context (input shape, model, the likely fix);
* the model's output goes through an *output adapter* (tensors pass through; dicts give
  ``"logits"`` or ``"out"`` or their only tensor; objects give ``.logits``; tuples their first
  tensor; a list of per-image mappings, as torchvision detectors return, stays a list; an
  Ultralytics YOLO detector's raw predictions become such a list, :mod:`camlens.yolo`) and then
  through the targets, giving one score per image;
* a target layer may return a mapping of tensors (a feature pyramid: torchvision's FPN
  ``backbone``): each tensor is captured and gets its own gradient, and ``reshape_transform``
  (e.g. :class:`camlens.reshape.FPNReshape`) turns the mapping into one ``(N, C, h, w)`` map;
* a target layer may return a tuple (HuggingFace layers: ``(hidden_states, attention_weights)``):
  its first tensor is captured and the rest of the tuple passes through
  (:func:`camlens.hooks.layer_value`).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn

from .errors import (
    CamLensError,
    CamLensWarning,
    InputShapeError,
    InputTypeError,
    LayerNotRunError,
    LayerOutputError,
    ModelOutputError,
    NonFiniteInputError,
)
from .hooks import HookSet, capture_scope, in_capture, layer_value
from .model_inputs import invoke
from .targets import TargetFn, score_targets, targets_from_categories
from .yolo import output_adapter_for

__all__ = [
    "Capture",
    "Engine",
    "default_output_adapter",
    "detach_outputs",
    "check_adapted",
    "forward_outputs",
    "resolve_output_adapter",
    "model_device",
    "prepare_images",
    "call_model",
    "forward_error_note",
    "CamLensWarning",
]

OutputAdapter = Callable[[Any], Any]
"""Model output -> a ``(N, ...)`` score tensor, or a list of ``N`` per-image outputs (detection dicts)."""
TargetResolver = Callable[[Any], Sequence[TargetFn]]
Activation = Union[torch.Tensor, "dict[str, torch.Tensor]"]
"""What a target layer returned: a tensor, or a mapping of tensors (a feature pyramid)."""


def _is_per_image(output: Any) -> bool:
    return isinstance(output, (list, tuple)) and len(output) > 0 and all(isinstance(o, Mapping) for o in output)


def detach_outputs(outputs: Any) -> Any:
    """``outputs`` with every tensor detached (a tensor, or a list of per-image dicts of tensors)."""
    if isinstance(outputs, torch.Tensor):
        return outputs.detach()
    if isinstance(outputs, Mapping):
        return {k: detach_outputs(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return [detach_outputs(o) for o in outputs]
    return outputs


def check_adapted(outputs: Any, n: int | None = None) -> Any:
    """Check that an output adapter returned a ``(N, ...)`` tensor or a list of ``N`` per-image outputs."""
    if isinstance(outputs, torch.Tensor):
        if n is not None and (outputs.dim() == 0 or outputs.shape[0] != n):
            raise ModelOutputError(
                f"the model output has shape {tuple(outputs.shape)}; expected a leading batch axis "
                f"of {n}; pass an output_adapter that returns (N, ...) scores"
            )
        return outputs
    if isinstance(outputs, list):
        if n is not None and len(outputs) != n:
            raise ModelOutputError(
                f"the model returned {len(outputs)} per-image outputs for a batch of {n} images; "
                "pass an output_adapter that returns one output per image"
            )
        return outputs
    raise ModelOutputError(
        f"output_adapter returned a {type(outputs).__name__}; it must return a tensor "
        "(or a list with one output per image, e.g. detection dicts)"
    )


def default_output_adapter(output: Any) -> Any:
    """Turn a model's output into a score tensor ``(N, ...)`` (or a list of per-image outputs).

    Tensors pass through; a list of per-image mappings (torchvision detectors' ``boxes`` /
    ``labels`` / ``scores`` dicts) is returned as a list, one entry per image, for detection targets
    such as :class:`camlens.targets.BoxScoreTarget`; mappings give ``"logits"``, else ``"out"`` (torchvision segmentation),
    else their only tensor value; objects with a ``.logits`` tensor (HuggingFace) give it;
    tuples and lists give their first tensor (e.g. a main head before auxiliary heads).
    """
    if isinstance(output, torch.Tensor):
        return output
    if _is_per_image(output):
        return list(output)
    if isinstance(output, Mapping):
        for key in ("logits", "out"):
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
        tensors = [v for v in output.values() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0]
        raise ModelOutputError(
            f"the model returned a mapping with keys {list(output.keys())} and camlens cannot tell "
            "which one holds the scores; pass output_adapter=lambda out: out['<key>']"
        )
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ModelOutputError(
        f"the model returned a {type(output).__name__}, not a tensor; pass "
        "output_adapter=<callable turning the output into a (N, ...) score tensor>"
    )


def resolve_output_adapter(model: nn.Module, output_adapter: OutputAdapter | None) -> OutputAdapter:
    """The adapter camlens applies to ``model``'s output: the caller's, else the model's own reader
    where camlens knows one (Ultralytics YOLO: :func:`camlens.yolo.output_adapter_for`), else
    :func:`default_output_adapter`."""
    return output_adapter or output_adapter_for(model) or default_output_adapter


def forward_outputs(model: nn.Module, x: torch.Tensor, output_adapter: OutputAdapter | None = None) -> Any:
    """The adapted output of ``model`` for ``x``: no capture hooks, no autograd, detached.

    The one forward-without-hooks of the library (engine, perturbation methods and metrics use it).
    The caller holds eval mode. ``output_adapter=None``: see :func:`resolve_output_adapter`.
    """
    with torch.no_grad():
        out = resolve_output_adapter(model, output_adapter)(call_model(model, x))
    return detach_outputs(check_adapted(out))


def model_device(model: nn.Module, fallback: torch.device | None = None) -> torch.device:
    """Device of the model's first parameter (or buffer); ``fallback`` or CPU for a stateless model."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return fallback or torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """Floating dtype of the model's first floating parameter, if any."""
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def _nonfinite_message(x: torch.Tensor, name: str, opt_out: str) -> str:
    bad = ~torch.isfinite(x)
    nan = int(torch.isnan(x).sum())
    pos = int((x == float("inf")).sum())
    neg = int((x == float("-inf")).sum())
    images = bad.flatten(1).any(dim=1).nonzero().flatten().tolist()
    first = [int(i) for i in bad.nonzero()[0].tolist()]
    found = ", ".join(f"{k} {w}" for k, w in ((nan, "NaN"), (pos, "+inf"), (neg, "-inf")) if k)
    return (
        f"{name} holds non-finite values ({found}) in image(s) {images[:8]}{'...' if len(images) > 8 else ''}, "
        f"first at index {first} of shape {tuple(x.shape)} (dtype {x.dtype}); a map of such an input is "
        "blank or NaN. Expected finite pixel values: replace them (e.g. torch.nan_to_num(x)), check the "
        f"loading and normalisation (a std of 0 divides by zero){opt_out}"
    )


def prepare_images(
    input_tensor: Any,
    model: nn.Module | None = None,
    name: str = "input_tensor",
    *,
    allow_nonfinite: bool = False,
    opt_out: str = "",
) -> torch.Tensor:
    """Validate a float ``(N, C, *spatial)`` batch with 1, 2 or 3 spatial axes -- signals
    ``(N, C, L)``, images ``(N, C, H, W)``, volumes or clips ``(N, C, D, H, W)``; with ``model``, move
    it to the model's device and floating dtype. Returns a detached tensor (a normal one, also when
    given an inference tensor).

    NaN or infinite values (after the dtype conversion, i.e. as the model would see them) raise
    :class:`~camlens.errors.NonFiniteInputError` unless ``allow_nonfinite``; ``opt_out`` is added to
    the message to say how to allow them."""
    if not isinstance(input_tensor, torch.Tensor):
        raise InputTypeError(
            f"{name} must be a torch.Tensor of shape (N, C, *spatial) with 1-3 spatial axes; got "
            f"{type(input_tensor).__name__} (convert with torch.as_tensor(...) and add a batch axis)"
        )
    if input_tensor.dim() not in (3, 4, 5):
        hint = ""
        if input_tensor.dim() == 2:
            hint = " (one signal (C, L): add a batch axis with x.unsqueeze(0))"
        elif input_tensor.dim() > 5:
            hint = " (fold extra axes into the batch or channel axis)"
        raise InputShapeError(
            f"{name} must be (N, C, *spatial) with 1, 2 or 3 spatial axes -- (N, C, L), (N, C, H, W) or "
            f"(N, C, D, H, W); got shape {tuple(input_tensor.shape)}{hint}"
        )
    if not input_tensor.is_floating_point():
        raise InputTypeError(
            f"{name} must be floating point; got dtype {input_tensor.dtype} "
            "(convert with x.float() / 255 and normalise as the model expects)"
        )
    if input_tensor.shape[0] == 0 or input_tensor.numel() == 0:
        raise InputShapeError(f"{name} is empty: shape {tuple(input_tensor.shape)}")
    x = input_tensor
    if model is not None:
        _check_conv_dims(model, x, name)
        x = x.to(device=model_device(model, x.device), dtype=model_dtype(model) or x.dtype)
    # One fast reduction: a sum is finite unless some value is NaN/inf (or huge values overflow,
    # which the exact element-wise check below then clears).
    if not allow_nonfinite and not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise NonFiniteInputError(_nonfinite_message(x, name, opt_out))
    if x.is_inference():
        with torch.inference_mode(False):
            x = x.clone()
    return x.detach()


def _check_conv_dims(model: nn.Module, x: torch.Tensor, name: str) -> None:
    """A model whose first convolution is ``Conv{k}d`` takes ``k`` spatial axes; torch would read a
    batch with one axis fewer as a single unbatched sample, so the mismatch is reported here."""
    conv = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    if conv is None:
        return
    k = len(conv.kernel_size)
    got = x.dim() - 2
    if k != got:
        shapes = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}
        hint = " (add a batch axis with x.unsqueeze(0))" if got == k - 1 else ""
        raise InputShapeError(
            f"{name} has {got} spatial axes (shape {tuple(x.shape)}) but the model's first convolution "
            f"({type(conv).__name__}) expects {k}: pass {shapes.get(k, '(N, C, *spatial)')}{hint}"
        )


def _add_note(exc: BaseException, note: str, *, notes: bool = sys.version_info >= (3, 11)) -> None:
    """Add ``note`` to ``exc`` in place, keeping its type: ``add_note`` on Python 3.11+, else the
    note is appended to a string message (the first of ``args``)."""
    if notes and hasattr(exc, "add_note"):
        exc.add_note(note)
    elif exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]}\n{note}", *exc.args[1:])


def _has_note(exc: BaseException) -> bool:
    notes = list(getattr(exc, "__notes__", ()))
    if exc.args and isinstance(exc.args[0], str):
        notes.append(exc.args[0])
    return any("camlens: the model" in n for n in notes)


_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def forward_error_note(model: nn.Module, x: torch.Tensor, exc: BaseException | None = None) -> str:
    """camlens's context for an exception raised by ``model(x)``: the input, the model, the likely fix."""
    first_conv = next(
        ((n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)), None
    )
    hint = (
        "check that the input matches what the model was built for (channels, size, normalisation); "
        "calling model(x) on the same input outside camlens shows whether the model itself fails"
    )
    if isinstance(exc, _OUT_OF_MEMORY):
        hint = "the batch does not fit in memory: explain fewer images per call"
    elif first_conv is not None and first_conv[1].in_channels != x.shape[1]:
        name, conv = first_conv
        hint = (
            f"its first convolution {name!r} expects {conv.in_channels} input channels but the input has "
            f"{x.shape[1]}: pass images with {conv.in_channels} channels"
        )
        if x.shape[1] == 1 and conv.in_channels == 3:
            hint += " (for a grayscale image into an RGB model: x.expand(-1, 3, -1, -1))"
    return (
        f"camlens: the model {type(model).__name__} raised this on an input of shape {tuple(x.shape)} "
        f"(dtype {x.dtype}, device {x.device}); {hint}"
    )


def call_model(model: nn.Module, x: torch.Tensor) -> Any:
    """``model(x)`` -- with the running call's extra inputs, ``model(x, *forward_args, **forward_kwargs)``
    (see :mod:`camlens.model_inputs`); an exception from the model keeps its type and gains a note
    with camlens's context (:func:`forward_error_note`). camlens's own errors pass unchanged."""
    try:
        return invoke(model, x)
    except Exception as exc:
        if not isinstance(exc, CamLensError) and not _has_note(exc):
            _add_note(exc, forward_error_note(model, x, exc))
        raise


@dataclass
class Capture:
    """What one forward (and backward) pass produced. Everything is detached from autograd."""

    outputs: Any
    """The adapted model output ``(N, ...)`` (or a list of ``N`` per-image outputs, e.g. detections)."""
    scores: torch.Tensor
    """The target score of each image ``(N,)``, float32 (float64 for a float64 model)."""
    targets: list[TargetFn]
    """The target of each image (resolved from ``target_category`` when not given)."""
    activations: list[Activation]
    """Each target layer's output, as the layer returned it (a tensor or a mapping of tensors)."""
    gradients: list[Activation] | None
    """d(score)/d(activation) per layer, same shapes as ``activations``; ``None`` when not asked."""
    input_gradient: torch.Tensor | None = None
    """d(score)/d(input) ``(N, C, H, W)`` when the engine was built with ``input_gradient=True``."""
    hessian_vector: list[torch.Tensor] | None = None
    """Per layer the Hessian-vector product ``H A = d/dA <dS/dA, A>`` (``hessian_vector=True``)."""


def _twice_differentiable(on: bool) -> Any:
    """For a double backward: fused attention kernels (flash, memory-efficient) have no second
    derivative, so scaled_dot_product_attention runs its plain-ops (math) kernel instead."""
    if not on:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


class Engine:
    """Runs ``model`` with capture hooks on ``layers`` (``(name, module)`` pairs).

    Options for methods that need more than first-order gradients at the target layers (all off
    by default; each costs nothing when off):

    * ``input_gradient``: record autograd from the input on (not only from the first target
      layer) and return ``d score / d input`` as ``Capture.input_gradient`` (FullGrad);
    * ``hessian_vector``: also return, per layer, ``H A = d/dA <dS/dA, A>`` with ``dS/dA`` held
      fixed in direction ``A`` -- one double backward through the recorded tail (ShapleyCAM);
    * ``optional_layers``: a layer that never runs gets activation ``None`` and one the score does
      not depend on gets gradient ``None``, instead of an error or a warning (FullGrad sweeps
      every bias layer, and some, like Inception's auxiliary head, are idle in eval mode).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[tuple[str, nn.Module]],
        output_adapter: OutputAdapter | None = None,
        *,
        allow_nonfinite: bool = False,
        input_gradient: bool = False,
        hessian_vector: bool = False,
        optional_layers: bool = False,
    ) -> None:
        self.model = model
        self.layers = list(layers)
        self.output_adapter = resolve_output_adapter(model, output_adapter)
        self.allow_nonfinite = allow_nonfinite
        self.input_gradient = input_gradient
        self.hessian_vector = hessian_vector
        self.optional_layers = optional_layers

    # ------------------------------------------------------------------ inputs
    def prepare_input(self, input_tensor: Any) -> torch.Tensor:
        """Validate an image batch and move it to the model's device and floating dtype; non-finite
        values are an error unless ``allow_nonfinite``."""
        return prepare_images(
            input_tensor,
            self.model,
            allow_nonfinite=self.allow_nonfinite,
            opt_out="; to explain the input as it is, build the CAM with allow_nonfinite=True",
        )

    # ------------------------------------------------------------------ running
    def forward_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Adapted model output for ``x``, without capture hooks or autograd (:func:`forward_outputs`)."""
        return forward_outputs(self.model, x, self.output_adapter)

    def run(
        self,
        x: torch.Tensor,
        targets: Sequence[TargetFn] | None = None,
        *,
        target_category: Any = None,
        need_gradients: bool = True,
        resolve_targets: TargetResolver | None = None,
    ) -> Capture:
        """One forward pass (and, when ``need_gradients``, one backward to the activations).

        ``targets`` gives one callable per image; if ``None``, ``resolve_targets(outputs)`` or the
        older ``target_category`` convention (None = top class) picks them from the output.
        """
        store: dict[int, torch.Tensor] = {}
        token = object()  # this call's forward pass; the hooks ignore every other one

        def capture(output: torch.Tensor) -> torch.Tensor:
            if not need_gradients:
                # A copy: an in-place op after the layer (ReLU(inplace=True)) must not change it.
                return output.detach().clone()
            if output.requires_grad:
                return output
            # First target layer reached: start recording autograd from here on.
            torch.set_grad_enabled(True)
            return output.detach().requires_grad_(True)

        def make_hook(index: int, name: str) -> Callable[..., Any]:
            def hook(module: nn.Module, args: Any, output: Any) -> Any:
                if not in_capture(token):
                    return None
                found = layer_value(output)
                if found is None:
                    raise LayerOutputError(
                        f"target layer {name!r} ({type(module).__name__}) returned a {type(output).__name__} "
                        "holding no tensor; expected a tensor, a mapping of tensors or a tuple whose first "
                        "tensor is the map; choose a submodule that returns a tensor"
                    )
                value, put_back = found
                if isinstance(value, Mapping):
                    # A feature pyramid: capture every level; downstream gets copies, same mapping type.
                    store[index] = {k: capture(v) for k, v in value.items()}
                    if not need_gradients:
                        return None
                    copy = type(value)() if isinstance(value, dict) else {}
                    for k, v in store[index].items():
                        copy[k] = v.clone()
                    return put_back(copy)
                store[index] = capture(value)
                if not need_gradients:
                    return None
                # Downstream gets a copy: in-place ops after the layer cannot touch the capture.
                # A tuple output (HuggingFace layers) keeps its other elements as they are.
                return put_back(store[index].clone())

            return hook

        from_input = need_gradients and self.input_gradient
        if from_input:
            x = x.detach().requires_grad_(True)
        with HookSet() as hooks:
            for i, (name, module) in enumerate(self.layers):
                hooks.forward(module, make_hook(i, name))
            # Autograd is off until the first target layer's hook turns it on (or on from the input).
            with torch.set_grad_enabled(from_input), _twice_differentiable(need_gradients and self.hessian_vector):
                with capture_scope(token):
                    raw = call_model(self.model, x)
                if need_gradients:
                    torch.set_grad_enabled(True)
                outputs = check_adapted(self.output_adapter(raw), x.shape[0])
                missing = [name for i, (name, _) in enumerate(self.layers) if i not in store]
                if missing and not self.optional_layers:
                    raise LayerNotRunError(
                        f"target layer(s) {missing} never ran during the forward pass of "
                        f"{type(self.model).__name__}; choose a layer that the forward pass calls "
                        "(print(model) lists modules, but not every module is used by forward())"
                    )
                if targets is None:
                    if resolve_targets is not None:
                        targets = list(resolve_targets(detach_outputs(outputs)))
                    else:
                        targets = targets_from_categories(target_category, detach_outputs(outputs))
                else:
                    targets = list(targets)
                scores = score_targets(targets, outputs, differentiable=need_gradients)
                activations = [store.get(i) for i in range(len(self.layers))]
                gradients = input_gradient = hessian_vector = None
                if need_gradients:
                    gradients, input_gradient, hessian_vector = self._gradients(
                        scores, activations, x if from_input else None
                    )
        return Capture(
            outputs=detach_outputs(outputs),
            scores=scores.detach().to(torch.promote_types(scores.dtype, torch.float32)),  # autocast, half: float32
            targets=list(targets),
            activations=[detach_outputs(a) if a is not None else None for a in activations],
            gradients=gradients,
            input_gradient=input_gradient,
            hessian_vector=hessian_vector,
        )

    def _gradients(
        self, scores: torch.Tensor, activations: list[Activation | None], x: torch.Tensor | None
    ) -> tuple[list[Any], torch.Tensor | None, list[Any] | None]:
        # Images are independent in eval mode, so d(sum of scores)/dA gives each image's own gradient.
        # A mapping-valued layer (feature pyramid) gets one gradient per tensor, in a mapping again.
        present: list[torch.Tensor] = []
        for a in activations:
            if isinstance(a, Mapping):
                present.extend(a.values())
            elif a is not None:
                present.append(a)
        inputs = present + ([x] if x is not None else [])
        if scores.requires_grad:
            found = list(
                torch.autograd.grad(scores.sum(), inputs, allow_unused=True, create_graph=self.hessian_vector)
            )
        else:
            found = [None] * len(inputs)
        input_gradient = None
        if x is not None:
            last = found.pop()
            input_gradient = torch.zeros_like(x) if last is None else last.detach()
        it = iter(found)
        grads: list[Any] = []
        for a in activations:
            if isinstance(a, Mapping):
                grads.append({k: next(it) for k in a})
            else:
                grads.append(next(it) if a is not None else None)
        hessian_vector = None
        if self.hessian_vector:
            hessian_vector = [
                None if a is None
                else {k: self._hessian_vector(a[k], g[k]) for k in a} if isinstance(a, Mapping)
                else self._hessian_vector(a, g)
                for a, g in zip(activations, grads)
            ]  # fmt: skip
        out: list[Any] = []
        for (name, _), act, grad in zip(self.layers, activations, grads):
            if isinstance(act, Mapping):
                # A pyramid: no per-level zero check (a box may draw on one level only).
                if all(g is None for g in grad.values()):
                    if self.optional_layers:
                        out.append(None)
                        continue
                    self._warn_unused(name)
                out.append({k: torch.zeros_like(act[k]) if g is None else g.detach() for k, g in grad.items()})
                continue
            if self.optional_layers:  # the method skips what did not run or does not reach the score
                out.append(None if act is None or grad is None else grad.detach())
                continue
            if grad is None:
                self._warn_unused(name)
                grad = torch.zeros_like(act)
            elif not bool(grad.detach().flatten(1).abs().amax(dim=1).gt(0).all()):
                warnings.warn(
                    f"the gradient of the target score with respect to layer {name!r} is exactly zero "
                    "for at least one image, so its gradient-based map is blank; the layer may not "
                    "influence the chosen target (e.g. patch tokens of the last ViT block when the "
                    "head reads only the class token).",
                    CamLensWarning,
                    stacklevel=4,
                )
            out.append(grad.detach())
        return out, input_gradient, hessian_vector

    @staticmethod
    def _warn_unused(name: str) -> None:
        warnings.warn(
            f"the target score does not depend on layer {name!r}: its gradient is zero, so "
            "gradient-based maps are blank. Choose a layer on the path to the output "
            "(e.g. for ViT the class token is read by the head: use a block's norm1, not the last norm).",
            CamLensWarning,
            stacklevel=5,
        )

    @staticmethod
    def _hessian_vector(act: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
        """``H A`` at one layer: the derivative of ``<dS/dA, v>`` with ``v = A`` held constant.

        Separate per layer, so it is the layer's own Hessian block (no cross-layer terms). Zero where
        the score is linear in the layer (its gradient then has no graph)."""
        if grad is None or not grad.requires_grad:
            return torch.zeros_like(act).detach()
        (hv,) = torch.autograd.grad(grad, act, grad_outputs=act.detach(), retain_graph=True, allow_unused=True)
        return torch.zeros_like(act).detach() if hv is None else hv.detach()
