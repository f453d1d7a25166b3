"""Guided Backpropagation (Springenberg et al., ICLR-W 2015) on a batch, and Guided Grad-CAM.

Guided backprop is the gradient of the target score with respect to the input, computed with a
modified ReLU backward rule: at every ReLU only *positive* gradients pass, and only where the
ReLU's input was positive::

    grad_in = (x > 0) * max(grad_out, 0)

How camlens applies the rule without touching the model: during the call a
:class:`torch.overrides.TorchFunctionMode` intercepts every ReLU *call* -- ``nn.ReLU`` modules
(which call ``F.relu``), ``F.relu``/``torch.relu``/``Tensor.relu`` and their in-place forms --
and computes it with a small autograd function carrying the guided backward rule. The mode is
entered with ``with`` and always left, error or not. The user's modules are never swapped,
their ``inplace`` flags and hooks stay as they are, no hook is registered, and the gradient comes
from :func:`torch.autograd.grad` with respect to a copy of the input, so parameters' ``.grad``
fields are untouched and repeated calls give identical results.

Limits: only ReLU is guided (ReLU6, LeakyReLU, GELU, SiLU, ``clamp(min=0)``, ... keep their
ordinary gradient, as in the original method which is defined for ReLU networks); modules
compiled with TorchScript or ``torch.compile`` run outside Python and are not intercepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .engine import Engine, OutputAdapter
from .errors import InputShapeError, InputTypeError
from .hooks import eval_mode, unwrap_model
from .targets import TargetFn, score_targets, targets_from_categories

__all__ = ["GuidedBackprop", "GuidedBackpropReLUModel", "guided_gradcam"]


def _guided_backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
    """The guided rule: pass only positive gradients, only where the ReLU's output was positive."""
    (out,) = ctx.saved_tensors
    return grad.clamp_min(0) * (out > 0).to(grad.dtype)


class _GuidedReLU(torch.autograd.Function):
    """``relu(x)`` whose backward passes only positive gradients where the output is positive."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clamp_min(0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _guided_backward(ctx, grad)


class _GuidedReLUInplace(torch.autograd.Function):
    """In-place ``relu_(x)`` with the guided backward rule."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x.clamp_min_(0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _guided_backward(ctx, grad)


_RELU = {F.relu, torch.relu, torch.Tensor.relu}
_RELU_INPLACE = {torch.relu_, torch.Tensor.relu_, getattr(F, "relu_", torch.relu_)}


class _GuidedReLUMode(TorchFunctionMode):
    """Routes every ReLU call made while active through the guided autograd functions."""

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _RELU or func in _RELU_INPLACE:
            x = args[0] if args else kwargs.get("input", kwargs.get("self"))
            if isinstance(x, torch.Tensor) and x.requires_grad:
                inplace = func in _RELU_INPLACE or bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
                return _GuidedReLUInplace.apply(x) if inplace else _GuidedReLU.apply(x)
        return func(*args, **kwargs)


class GuidedBackprop:
    """Guided backpropagation for a batch of images.

    ``__call__`` returns the guided gradients as float32 numpy ``(N, H, W, C)`` (channels last,
    ready for :func:`camlens.image.deprocess_image` one image at a time); :meth:`explain`
    returns them as a ``(N, C, H, W)`` tensor on the model's device. Images are independent
    (eval mode), so a batch gives the same gradients as one image at a time.

    Example::

        gb = GuidedBackprop(model)
        grads = gb(x, targets=[ClassifierOutputTarget(281)] * len(x))      # (N, H, W, C)
        ggc = guided_gradcam(grads, GradCAM(model, "layer4")(x))            # Guided Grad-CAM
    """

    def __init__(
        self,
        model: nn.Module,
        device: Any = None,
        *,
        output_adapter: OutputAdapter | None = None,
        use_cuda: bool | None = None,
    ) -> None:
        """``device`` and ``use_cuda`` are accepted for compatibility and ignored: the input
        follows the model's device."""
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self.model = model = unwrap_model(model)  # compiled / DataParallel / DDP: the eager original
        self.engine = Engine(model, [], output_adapter)

    def explain(
        self,
        input_tensor: torch.Tensor,
        target_category: int | Sequence[int] | None = None,
        targets: Sequence[TargetFn] | None = None,
    ) -> torch.Tensor:
        """Guided gradients of each image's target score w.r.t. its input: ``(N, C, H, W)``."""
        if targets is not None and target_category is not None:
            raise InputTypeError("pass either targets or target_category, not both")
        x = self.engine.prepare_input(input_tensor).requires_grad_(True)
        with eval_mode(self.model), torch.inference_mode(False), torch.enable_grad():
            with _GuidedReLUMode():
                outputs = self.engine.output_adapter(self.model(x))
            if targets is None:
                targets = targets_from_categories(target_category, outputs.detach())
            scores = score_targets(list(targets), outputs)
            if not scores.requires_grad:
                return torch.zeros_like(x)
            (grad,) = torch.autograd.grad(scores.sum(), x)
        return grad.detach()

    def __call__(
        self,
        input_tensor: torch.Tensor,
        target_category: int | Sequence[int] | None = None,
        targets: Sequence[TargetFn] | None = None,
    ) -> np.ndarray:
        """Guided gradients as float32 numpy ``(N, H, W, C)``."""
        grad = self.explain(input_tensor, target_category, targets)
        return grad.permute(0, 2, 3, 1).float().cpu().numpy()

    def __repr__(self) -> str:
        return f"GuidedBackprop(model={type(self.model).__name__})"


GuidedBackpropReLUModel = GuidedBackprop
"""pytorch-grad-cam's name for the same thing (note: camlens returns a batch ``(N, H, W, C)``)."""

ArrayOrTensor = Union[np.ndarray, torch.Tensor]


def guided_gradcam(guided: ArrayOrTensor, cam: ArrayOrTensor) -> ArrayOrTensor:
    """Guided Grad-CAM: guided gradients ``(N, H, W, C)`` times a CAM ``(N, H, W)`` of any method.

    Returns the type of ``guided`` (numpy or tensor, on its device). Also accepts one image:
    ``(H, W, C)`` with ``(H, W)``.
    """
    if not isinstance(guided, (np.ndarray, torch.Tensor)) or not isinstance(cam, (np.ndarray, torch.Tensor)):
        raise InputTypeError(
            f"guided_gradcam expects numpy arrays or tensors; got {type(guided).__name__} and {type(cam).__name__}"
        )
    if guided.ndim not in (3, 4) or tuple(guided.shape[:-1]) != tuple(cam.shape):
        raise InputShapeError(
            f"guided_gradcam expects guided (N, H, W, C) and cam (N, H, W) (or (H, W, C) and (H, W)); "
            f"got {tuple(guided.shape)} and {tuple(cam.shape)}. Guided gradients from GuidedBackprop() "
            "are channels-last; use the CAM of the same images"
        )
    if isinstance(guided, torch.Tensor):
        c = torch.as_tensor(cam, device=guided.device).to(guided.dtype)
        return guided * c[..., None]
    c_np = cam.detach().cpu().numpy() if isinstance(cam, torch.Tensor) else np.asarray(cam)
    return (guided * c_np[..., None]).astype(guided.dtype, copy=False)
