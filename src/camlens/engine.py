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
* the model's output goes through an *output adapter* (tensors pass through; dicts give
  ``"logits"`` or ``"out"`` or their only tensor; objects give ``.logits``; tuples their first
  tensor) and then through the targets, giving one score per image.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import InputShapeError, InputTypeError, LayerNotRunError, LayerOutputError, ModelOutputError
from .hooks import HookSet
from .targets import TargetFn, score_targets, targets_from_categories

__all__ = ["Capture", "Engine", "default_output_adapter", "model_device", "prepare_images", "CamLensWarning"]

OutputAdapter = Callable[[Any], torch.Tensor]
TargetResolver = Callable[[torch.Tensor], Sequence[TargetFn]]


class CamLensWarning(UserWarning):
    """Something camlens computed is probably not what the user wanted (e.g. all-zero gradients)."""


def default_output_adapter(output: Any) -> torch.Tensor:
    """Turn a model's output into a score tensor ``(N, ...)``.

    Tensors pass through; mappings give ``"logits"``, else ``"out"`` (torchvision segmentation),
    else their only tensor value; objects with a ``.logits`` tensor (HuggingFace) give it;
    tuples and lists give their first tensor (e.g. a main head before auxiliary heads).
    """
    if isinstance(output, torch.Tensor):
        return output
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


def prepare_images(input_tensor: Any, model: nn.Module | None = None, name: str = "input_tensor") -> torch.Tensor:
    """Validate a float ``(N, C, H, W)`` batch; with ``model``, move it to the model's device and
    floating dtype. Returns a detached tensor (a normal one, also when given an inference tensor)."""
    if not isinstance(input_tensor, torch.Tensor):
        raise InputTypeError(
            f"{name} must be a torch.Tensor of shape (N, C, H, W); got {type(input_tensor).__name__}"
            " (convert with torch.as_tensor(...) and add a batch axis)"
        )
    if input_tensor.dim() != 4:
        hint = " (add a batch axis with x.unsqueeze(0))" if input_tensor.dim() == 3 else ""
        raise InputShapeError(
            f"{name} must have 4 dimensions (N, C, H, W); got shape {tuple(input_tensor.shape)}{hint}"
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
        x = x.to(device=model_device(model, x.device), dtype=model_dtype(model) or x.dtype)
    if x.is_inference():
        with torch.inference_mode(False):
            x = x.clone()
    return x.detach()


@dataclass
class Capture:
    """What one forward (and backward) pass produced. Everything is detached from autograd."""

    outputs: torch.Tensor
    """The adapted model output ``(N, ...)``."""
    scores: torch.Tensor
    """The target score of each image ``(N,)``, float32 (float64 for a float64 model)."""
    targets: list[TargetFn]
    """The target of each image (resolved from ``target_category`` when not given)."""
    activations: list[torch.Tensor]
    """Each target layer's output, as the layer returned it."""
    gradients: list[torch.Tensor] | None
    """d(score)/d(activation) per layer, same shapes as ``activations``; ``None`` when not asked."""


class Engine:
    """Runs ``model`` with capture hooks on ``layers`` (``(name, module)`` pairs)."""

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[tuple[str, nn.Module]],
        output_adapter: OutputAdapter | None = None,
    ) -> None:
        self.model = model
        self.layers = list(layers)
        self.output_adapter = output_adapter or default_output_adapter

    # ------------------------------------------------------------------ inputs
    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def prepare_input(self, input_tensor: Any) -> torch.Tensor:
        """Validate an image batch and move it to the model's device and floating dtype."""
        return prepare_images(input_tensor, self.model)

    # ------------------------------------------------------------------ running
    def forward_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Adapted model output for ``x``, without capture hooks or autograd."""
        with torch.no_grad():
            return self.output_adapter(self.model(x)).detach()

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

        def make_hook(index: int, name: str) -> Callable[..., Any]:
            def hook(module: nn.Module, args: Any, output: Any) -> Any:
                if not isinstance(output, torch.Tensor):
                    raise LayerOutputError(
                        f"target layer {name!r} ({type(module).__name__}) returned a {type(output).__name__}, "
                        "not a tensor; choose a submodule that returns a tensor"
                    )
                if not need_gradients:
                    # A copy: an in-place op after the layer (ReLU(inplace=True)) must not change it.
                    store[index] = output.detach().clone()
                    return None
                if output.requires_grad:
                    store[index] = output
                else:
                    # First target layer reached: start recording autograd from here on.
                    torch.set_grad_enabled(True)
                    store[index] = output.detach().requires_grad_(True)
                # Downstream gets a copy: in-place ops after the layer cannot touch the capture.
                return store[index].clone()

            return hook

        with HookSet() as hooks:
            for i, (name, module) in enumerate(self.layers):
                hooks.forward(module, make_hook(i, name))
            with torch.no_grad():  # the capture hook re-enables autograd at the first target layer
                raw = self.model(x)
                if need_gradients:
                    torch.set_grad_enabled(True)
                outputs = self.output_adapter(raw)
                if not isinstance(outputs, torch.Tensor):
                    raise ModelOutputError(
                        f"output_adapter returned a {type(outputs).__name__}; it must return a tensor"
                    )
                if outputs.dim() == 0 or outputs.shape[0] != x.shape[0]:
                    raise ModelOutputError(
                        f"the model output has shape {tuple(outputs.shape)}; expected a leading batch axis "
                        f"of {x.shape[0]}; pass an output_adapter that returns (N, ...) scores"
                    )
                missing = [name for i, (name, _) in enumerate(self.layers) if i not in store]
                if missing:
                    raise LayerNotRunError(
                        f"target layer(s) {missing} never ran during the forward pass of "
                        f"{type(self.model).__name__}; choose a layer that the forward pass calls "
                        "(print(model) lists modules, but not every module is used by forward())"
                    )
                if targets is None:
                    if resolve_targets is not None:
                        targets = list(resolve_targets(outputs.detach()))
                    else:
                        targets = targets_from_categories(target_category, outputs.detach())
                else:
                    targets = list(targets)
                scores = score_targets(targets, outputs)
                activations = [store[i] for i in range(len(self.layers))]
                gradients = None
                if need_gradients:
                    gradients = self._gradients(scores, activations)
        return Capture(
            outputs=outputs.detach(),
            scores=scores.detach().to(torch.promote_types(scores.dtype, torch.float32)),  # autocast, half: float32
            targets=list(targets),
            activations=[a.detach() for a in activations],
            gradients=gradients,
        )

    def _gradients(self, scores: torch.Tensor, activations: list[torch.Tensor]) -> list[torch.Tensor]:
        # Images are independent in eval mode, so d(sum of scores)/dA gives each image's own gradient.
        if scores.requires_grad:
            grads = torch.autograd.grad(scores.sum(), activations, allow_unused=True)
        else:
            grads = tuple(None for _ in activations)
        out = []
        for (name, _), act, grad in zip(self.layers, activations, grads):
            if grad is None:
                warnings.warn(
                    f"the target score does not depend on layer {name!r}: its gradient is zero, so "
                    "gradient-based maps are blank. Choose a layer on the path to the output "
                    "(e.g. for ViT the class token is read by the head: use a block's norm1, not the last norm).",
                    CamLensWarning,
                    stacklevel=4,
                )
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
        return out
