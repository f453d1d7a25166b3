"""Extra model inputs: models called as ``model(x, *forward_args, **forward_kwargs)``.

A CAM explains the image ``x``; a model may also need other inputs (metadata, a text embedding, an
attention mask, flags). :class:`ForwardInputs` holds them for one call and says how the model is
called:

* ``model(x, *args, **kwargs)`` by default;
* ``model(*args, **{input_name: x}, **kwargs)`` with ``input_name`` (HuggingFace models take
  ``pixel_values=``).

Every value whose leading axis has the batch size ``N`` (a tensor, or a tuple/list/dict of them, one
level deep) is *batched*: whenever camlens runs the model on rows derived from the images -- masked
copies (ScoreCAM), ablated copies (AblationCAM), noisy copies (SmoothGrad-CAM++), augmented copies
(``aug_smooth``) -- each row gets its own image's values (indexed along the leading axis). Other
values (scalars, flags, tensors of another leading size) are passed unchanged.

The inputs of the running call live in a context variable (per thread), set by
:meth:`camlens.methods.base.BaseCAM.explain` with :func:`use_inputs`; code that builds a batch of
rows says which image each row comes from with :func:`rows_of`. :func:`camlens.engine.call_model`
applies them. A batch whose row count is not ``N`` with no :func:`rows_of` raises
:class:`~camlens.errors.InputShapeError` instead of pairing rows with the wrong extra inputs.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import InputShapeError, InputTypeError

__all__ = ["ForwardInputs", "use_inputs", "rows_of", "active_inputs", "invoke"]


def _take(value: Any, n: int, index: torch.Tensor | None) -> Any:
    if isinstance(value, torch.Tensor):
        if index is not None and value.dim() > 0 and value.shape[0] == n:
            return value[index.to(value.device)]
        return value
    if isinstance(value, (tuple, list)):
        return type(value)(_take(v, n, index) for v in value)
    if isinstance(value, Mapping):
        return {k: _take(v, n, index) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class ForwardInputs:
    """The extra inputs of one call for a batch of ``n`` images (see the module docstring)."""

    n: int
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_name: str | None = None

    @classmethod
    def build(cls, n: int, args: Any = None, kwargs: Any = None, input_name: Any = None) -> "ForwardInputs | None":
        """Checked inputs, or ``None`` when there is nothing extra (the plain ``model(x)``)."""
        if args is not None and not isinstance(args, (tuple, list)):
            raise InputTypeError(
                f"forward_args must be a tuple of extra positional inputs; got {type(args).__name__} "
                "(for one extra input write forward_args=(value,))"
            )
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise InputTypeError(f"forward_kwargs must be a dict of keyword inputs; got {type(kwargs).__name__}")
        if input_name is not None and (not isinstance(input_name, str) or not input_name.isidentifier()):
            raise InputTypeError(f"input_name must be the name of the model's image argument (e.g. 'pixel_values'); got {input_name!r}")
        kwargs = dict(kwargs or {})
        if input_name is not None and input_name in kwargs:
            raise InputTypeError(
                f"forward_kwargs holds {input_name!r}, which is input_name (the explained image); pass the image "
                "as input_tensor and drop it from forward_kwargs"
            )
        if not args and not kwargs and input_name is None:
            return None
        return cls(n, tuple(args or ()), kwargs, input_name)

    def take(self, index: torch.Tensor | None) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` for rows whose images are ``index`` (``None``: the ``n`` images themselves)."""
        return _take(self.args, self.n, index), _take(self.kwargs, self.n, index)

    def call(self, model: nn.Module, x: torch.Tensor, index: torch.Tensor | None) -> Any:
        args, kwargs = self.take(index)
        if self.input_name is not None:
            return model(*args, **{self.input_name: x}, **kwargs)
        return model(x, *args, **kwargs)


_ACTIVE: contextvars.ContextVar[tuple[ForwardInputs, torch.Tensor | None] | None] = contextvars.ContextVar(
    "camlens_forward_inputs", default=None
)


@contextlib.contextmanager
def use_inputs(inputs: ForwardInputs | None) -> Iterator[None]:
    """Make ``inputs`` the extra inputs of model calls in this block (``None``: no extra inputs)."""
    token = _ACTIVE.set(None if inputs is None else (inputs, None))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def rows_of(images: torch.Tensor | None) -> Iterator[None]:
    """Model calls in this block run on rows; row ``i`` comes from image ``images[i]`` of the batch
    the enclosing block works on (nested blocks compose). A no-op without extra inputs."""
    state = _ACTIVE.get()
    if state is None or images is None:
        yield
        return
    inputs, outer = state
    index = torch.as_tensor(images).long().flatten().cpu()
    if outer is not None:
        index = outer[index]
    token = _ACTIVE.set((inputs, index))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_inputs() -> ForwardInputs | None:
    """The extra inputs of the running call, if any."""
    state = _ACTIVE.get()
    return None if state is None else state[0]


def invoke(model: nn.Module, x: torch.Tensor) -> Any:
    """``model(x)`` with the extra inputs of the running call (see the module docstring)."""
    state = _ACTIVE.get()
    if state is None:
        return model(x)
    inputs, index = state
    rows = x.shape[0] if x.dim() else 0
    if index is None and rows != inputs.n:
        raise InputShapeError(
            f"camlens: a batch of {rows} rows was run with extra model inputs made for {inputs.n} images, and "
            "nothing says which image each row comes from; this method does not support forward_args / "
            "forward_kwargs yet: call it without extra inputs"
        )
    if index is not None and index.numel() != rows:
        raise InputShapeError(  # pragma: no cover - a bug in camlens
            f"camlens: {rows} rows but {index.numel()} image indices for the extra model inputs"
        )
    return inputs.call(model, x, index)
