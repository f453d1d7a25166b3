"""The only place where camlens touches a model's hooks and flags.

* :func:`resolve_layers` turns modules or dotted names (``"layer4.2"``, ``"layer4[-1]"``) into
  ``(name, module)`` pairs, with close-match suggestions on a typo. Names are those of the
  original module also on wrapped models (see :func:`unwrap_model`).
* :class:`HookSet` registers hooks that live for one ``with`` block and are removed in ``finally``.
* :func:`eval_mode` runs the model in eval mode and restores every module's own flag afterwards,
  holding the model's lock (:func:`model_lock`) for the whole block: camlens calls on one model from
  several threads run one after the other, and nested calls on the same thread are allowed.
* :func:`layer_value` picks what a capture hook records from a layer's output (a tensor, a mapping
  of tensors, or the first tensor of a tuple) and how to hand a replacement back downstream.
* :func:`capture_scope` / :func:`in_capture` tell a capture hook whether the forward pass now
  running on this thread is the one it was registered for (and not, say, a nested call made by a
  target callable, or another thread's plain ``model(x)``).
"""

from __future__ import annotations

import contextlib
import difflib
import re
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Union

import torch
from torch import nn

from .errors import InputTypeError, LayerNotFoundError
from .yolo import yolo_wrapped_model

LayerSpec = Union[nn.Module, str]

__all__ = [
    "LayerSpec",
    "resolve_layers",
    "find_submodule",
    "layer_name",
    "unwrap_model",
    "HookSet",
    "eval_mode",
    "model_lock",
    "capture_scope",
    "in_capture",
    "layer_value",
]

_INDEX = re.compile(r"^([^\[\]]*)((?:\[-?\d+\])*)$")


# Wrappers whose inner module holds the real layers: class name -> attribute of the inner module.
_WRAPPERS = {
    "OptimizedModule": "_orig_mod",  # torch.compile
    "DataParallel": "module",
    "DistributedDataParallel": "module",
    "FullyShardedDataParallel": "_fsdp_wrapped_module",
}
# Wrappers that compute exactly what their inner module computes on this process; explaining
# the inner module avoids a recompilation (compile), replicas (DataParallel) and collectives (DDP).
# FSDP is not among them: its inner module holds sharded parameters, only the wrapper can run it.
_EAGER_EQUIVALENT = ("OptimizedModule", "DataParallel", "DistributedDataParallel")


def _inner(module: Any) -> nn.Module | None:
    """The module a known wrapper wraps, or ``None`` when ``module`` is no known wrapper."""
    attr = _WRAPPERS.get(type(module).__name__)
    inner = module._modules.get(attr) if attr and isinstance(module, nn.Module) else None
    return inner if isinstance(inner, nn.Module) else None


def unwrap_model(model: nn.Module) -> nn.Module:
    """The eager module inside ``torch.compile`` / ``DataParallel`` / ``DistributedDataParallel``
    wrappers (any nesting), or ``model`` itself. FSDP is kept: only its wrapper can run it. An
    ``ultralytics.YOLO`` object gives its ``DetectionModel`` (:func:`camlens.yolo.yolo_wrapped_model`).

    camlens explains the unwrapped module: the same weights, hence the same numbers, with hooks
    that always fire and no recompilation, replica threads or collective calls.

    Example::

        from torch import nn
        from camlens.hooks import unwrap_model

        net = nn.Linear(2, 2)
        assert unwrap_model(torch.compile(nn.DataParallel(net))) is net
    """
    inner = yolo_wrapped_model(model)  # ultralytics.YOLO: its forward is predict(); explain yolo.model
    model = model if inner is None else inner
    while type(model).__name__ in _EAGER_EQUIVALENT and _inner(model) is not None:
        model = _inner(model)  # type: ignore[assignment]
    return model


def layer_name(model: nn.Module, layer: nn.Module) -> str | None:
    """Dotted name of ``layer`` inside ``model`` (``""`` for the model itself), or ``None``."""
    for name, module in model.named_modules(remove_duplicate=False):
        if module is layer:
            return name
    return None


def _suggest(model: nn.Module, wanted: str) -> str:
    names = [n for n, _ in model.named_modules() if n]
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.5)
    if close:
        return "close matches: " + ", ".join(repr(c) for c in close)
    top = [n for n, _ in model.named_children()]
    return "top-level children: " + ", ".join(repr(c) for c in top[:12])


def _parse_path(path: str) -> list[tuple[str, list[int]]] | None:
    """``"layer4[-1].conv1"`` -> ``[("layer4", [-1]), ("conv1", [])]``; ``None`` if not a valid path."""
    parts = []
    for part in (p for p in path.strip().split(".") if p != ""):
        match = _INDEX.match(part)
        if match is None:
            return None
        parts.append((match.group(1), [int(i) for i in re.findall(r"-?\d+", match.group(2))]))
    return parts


def _walk(model: nn.Module, parts: list[tuple[str, list[int]]]) -> Any:
    """Follow parsed path parts from ``model``; ``None`` when a step does not exist."""
    current: Any = model
    for attr, indices in parts:
        if attr:
            # A name users know ('layer4') also works through wrappers ('_orig_mod.layer4', 'module.layer4').
            while isinstance(current, nn.Module) and attr not in current._modules and _inner(current) is not None:
                current = _inner(current)
            current = current._modules.get(attr) if isinstance(current, nn.Module) else None
            if current is None:
                return None
        for idx in indices:
            while _inner(current) is not None:
                current = _inner(current)
            try:
                current = current[idx]
            except (KeyError, IndexError, TypeError, AttributeError):
                return None
    return current


def find_submodule(model: nn.Module, path: str) -> nn.Module | None:
    """The submodule at a dotted path with optional ``[i]`` indices, or ``None`` if there is none."""
    parts = _parse_path(path)
    found = _walk(model, parts) if parts is not None else None
    return found if isinstance(found, nn.Module) else None


def _resolve_name(model: nn.Module, spec: str) -> nn.Module:
    parts = _parse_path(spec)
    if parts is None:
        raise LayerNotFoundError(
            f"target layer {spec!r} is not a valid layer path; expected dotted names with "
            f"optional [i] indices such as 'layer4.2' or 'features[-1]'"
        )
    module = _walk(model, parts)
    if module is None:
        raise LayerNotFoundError(
            f"target layer {spec!r} is not in {type(unwrap_model(model)).__name__}; "
            f"{_suggest(unwrap_model(model), spec.replace('[', '.').replace(']', ''))}"
        )
    if not isinstance(module, nn.Module):
        raise LayerNotFoundError(f"target layer {spec!r} names a {type(module).__name__}, not a module")
    return module


def resolve_layers(model: nn.Module, layers: LayerSpec | Sequence[LayerSpec]) -> list[tuple[str, nn.Module]]:
    """Resolve target layers to ``(dotted_name, module)`` pairs.

    ``layers`` may be one module, one name, or a sequence of either. Names accept dots and
    Python-style indices: ``"layer4.2"``, ``"layer4[-1]"``, ``"features.28"``. On a compiled or
    ``DataParallel``/DDP/FSDP-wrapped model, names with and without the wrapper's prefix
    (``"_orig_mod."``, ``"module."``) both work; returned names are relative to :func:`unwrap_model`.
    """
    if isinstance(layers, (nn.Module, str)):
        layers = [layers]
    if isinstance(layers, nn.ModuleList):
        layers = list(layers)
    if not isinstance(layers, Sequence) or len(layers) == 0:
        raise LayerNotFoundError(
            f"target_layers must be a module, a dotted name or a non-empty list of them; got {layers!r}"
        )
    resolved: list[tuple[str, nn.Module]] = []
    for spec in layers:
        if isinstance(spec, str):
            module = _resolve_name(model, spec)
        elif isinstance(spec, nn.Module):
            module = spec
        else:
            raise InputTypeError(
                f"target layer must be an nn.Module or a dotted name string; got {type(spec).__name__}"
            )
        name = layer_name(unwrap_model(model), module)
        name = layer_name(model, module) if name is None else name
        if name is None:
            raise LayerNotFoundError(
                f"target layer {type(module).__name__} is not a submodule of {type(model).__name__}; "
                f"pass a module taken from this model (e.g. model.layer4[-1]) or its dotted name"
            )
        resolved.append((name, module))
    return resolved


class HookSet(contextlib.AbstractContextManager):
    """Hooks that exist only inside a ``with`` block; every one is removed on exit, error or not."""

    def __init__(self) -> None:
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def forward(self, module: nn.Module, fn: Callable[..., Any], **kwargs: Any) -> None:
        """Register a forward hook ``fn(module, args, output) -> output | None``."""
        self._handles.append(module.register_forward_hook(fn, **kwargs))

    def forward_pre(self, module: nn.Module, fn: Callable[..., Any], **kwargs: Any) -> None:
        """Register a forward pre-hook ``fn(module, args) -> args | None``."""
        self._handles.append(module.register_forward_pre_hook(fn, **kwargs))

    def full_backward(self, module: nn.Module, fn: Callable[..., Any], **kwargs: Any) -> None:
        """Register a full backward hook ``fn(module, grad_input, grad_output) -> grad_input | None``."""
        self._handles.append(module.register_full_backward_hook(fn, **kwargs))

    def tensor(self, tensor: torch.Tensor, fn: Callable[[torch.Tensor], Any]) -> None:
        """Register a gradient hook on a tensor (removed on exit like the others)."""
        self._handles.append(tensor.register_hook(fn))

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def __exit__(self, *exc: object) -> None:
        self.remove()
        return None


# One re-entrant lock per model, kept outside the model (nothing is added to it) and dropped when
# the model is garbage-collected. Keyed by id() so that modules defining __eq__ work too.
_LOCKS: dict[int, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock camlens holds on ``model`` during every call.

    Hold it yourself (``with camlens.hooks.model_lock(model): model(x)``) to keep your own forward
    passes on other threads from running while camlens has the model in eval mode.
    """
    key = id(model)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = threading.RLock()
            weakref.finalize(model, _LOCKS.pop, key, None)
        return lock


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode, holding :func:`model_lock` (so calls on one model from several
    threads are serialised); afterwards restore every module's own ``training`` flag."""
    with model_lock(model):
        flags = [(m, m.training) for m in model.modules()]
        try:
            model.eval()
            yield model
        finally:
            for module, flag in flags:
                module.training = flag


_SCOPES = threading.local()


@contextlib.contextmanager
def capture_scope(token: object) -> Iterator[None]:
    """Mark the forward pass run inside this block, on this thread, as the one of ``token``.

    Scopes nest (a stack per thread): a forward pass started inside the block by someone else
    (a nested camlens call) opens its own scope on top.
    """
    stack = getattr(_SCOPES, "stack", None)
    if stack is None:
        stack = _SCOPES.stack = []
    stack.append(token)
    try:
        yield
    finally:
        stack.pop()


def in_capture(token: object) -> bool:
    """True when the innermost capture scope on this thread is ``token``'s (O(1), for hooks)."""
    stack = getattr(_SCOPES, "stack", None)
    return bool(stack) and stack[-1] is token


def _is_tensor_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def layer_value(output: Any) -> tuple[Any, Callable[[Any], Any]] | None:
    """What camlens explains of a layer's output, and how to put a replacement of it back.

    * a tensor: itself;
    * a mapping of tensors (a feature pyramid such as torchvision's FPN ``backbone``): itself;
    * a tuple or list (HuggingFace layers return ``(hidden_states, attention_weights)``, Swin stages
      ``(hidden_states, hidden_states_before_downsampling, output_dimensions)``): its first element
      that is a tensor; the other elements pass through unchanged;
    * a HuggingFace ``ModelOutput`` (a base model used as the layer): its first tensor field
      (``last_hidden_state``), the other fields unchanged.

    Returns ``(value, put_back)`` where ``put_back(new_value)`` rebuilds the output with
    ``new_value`` in place of ``value`` (same container type, named tuples included), or ``None``
    when the output holds no tensor at all.
    """
    if isinstance(output, Mapping) and callable(getattr(output, "to_tuple", None)):
        # A HuggingFace ModelOutput (a submodule such as model.vit): its first tensor field,
        # usually last_hidden_state; the output is rebuilt with that field replaced.
        key = next((k for k, v in output.items() if isinstance(v, torch.Tensor)), None)
        if key is None:
            return None
        return output[key], lambda new: type(output)(**{**dict(output), key: new})
    if isinstance(output, torch.Tensor) or _is_tensor_mapping(output):
        return output, lambda new: new
    if isinstance(output, (tuple, list)):
        index = next((i for i, v in enumerate(output) if isinstance(v, torch.Tensor)), None)
        if index is None:
            return None

        def put_back(new: Any) -> Any:
            items = list(output)
            items[index] = new
            if isinstance(output, list):
                return type(output)(items) if type(output) is not list else items
            if hasattr(output, "_fields"):  # a named tuple
                return type(output)(*items)
            return tuple(items) if type(output) is tuple else type(output)(items)

        return output[index], put_back
    return None
