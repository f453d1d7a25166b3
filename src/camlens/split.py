"""Split a model at a target layer so that only the part *after* the layer is re-run.

AblationCAM scores thousands of copies of one layer's output with a channel removed. Re-running
the whole network for each copy repeats the (identical) computation before the layer every
time. :func:`split_at_layer` traces the model with :mod:`torch.fx` and builds two small graph
modules that share the model's own submodules and parameters (nothing is copied or swapped):

* ``tail(activation, *live)`` -- every node after the target layer's call, taking the layer's
  output and every value computed *before* the layer that is still needed *after* it (a skip
  connection around the layer, the input image, ...) as inputs; it returns the model's output.
  For a layer that returns a tuple of which the rest of the model reads one element
  (``layer(x)[0]``), the activation is that element;
* ``head(*inputs)`` -- the nodes before the layer that those live values need (``None`` when the
  tail needs nothing but the activation, as for ``layer4[-1]`` of a ResNet).

The target module is kept as one ``call_module`` node (the tracer treats it as a leaf), so a
nested name like ``layer4.2`` works. Splitting fails with :class:`SplitError` when the model
cannot be traced (data-dependent control flow, unsupported Python), when the layer is called
more or less than once, or when a live value is not a per-image tensor; callers then fall back
to running the full model.

:class:`TailRunner` wraps this for the perturbation methods: per target layer it returns a function
``run(images, rows)`` giving the model's output with the layer's output replaced by ``rows``,
through the traced tail where that is checked to be exact, otherwise through the full model with a
forward hook that *returns* the replacement (modules are never swapped), announced once per layer.

Hooks: modules that fx inlines (the model itself, containers, custom modules other than the
target) are traced through their bare ``forward``, so their forward hooks are neither called during
tracing nor run by the tail; hooks on leaf modules (``Conv2d``, ``Linear``, ...) in the tail fire as
usual. AblationCAM checks once per call that the tail reproduces the model's output (which catches
an output-changing hook the tail skips) and falls back to the full model if it does not.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from .engine import CamLensWarning, OutputAdapter, call_model, default_output_adapter
from .model_inputs import active_inputs, rows_of
from .errors import CamLensError
from .hooks import HookSet, capture_scope, in_capture, layer_value

__all__ = ["SplitError", "LayerSplit", "split_at_layer", "TailRunner"]

LayerRun = Callable[[torch.Tensor, torch.Tensor], Any]
"""``run(images, rows)``: the model's raw output for images ``images`` (indices into the batch) with
the target layer's output replaced by ``rows`` (one row of the layer's raw output per image index)."""


class SplitError(CamLensError, RuntimeError):
    """The model cannot be split at the requested layer (the reason is in the message)."""


class _LeafTracer(fx.Tracer):
    """The default fx tracer, except that the target module is always a leaf (one node)."""

    def __init__(self, target: nn.Module) -> None:
        super().__init__()
        self._target = target

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return m is self._target or super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        # Inlined modules are traced through their bare ``forward``: the user's hooks on them are
        # not called with fx proxies (no side effects on user state) and not baked into the graph.
        if not self.is_leaf_module(m, self.path_of_module(m)):
            forward = m.forward
        return super().call_module(m, forward, args, kwargs)


@dataclass
class LayerSplit:
    """A model split at one layer; ``tail`` and ``head`` share the model's modules."""

    layer_name: str
    tail: fx.GraphModule
    head: fx.GraphModule | None
    live_names: list[str]
    """Names (in the traced graph) of the values computed before the layer and used after it."""

    def live_values(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The live values for input batch ``x`` (runs ``head`` once; empty when not needed).

        Raises :class:`SplitError` if a live value is not a tensor with ``x``'s batch size (for
        example a Python int derived from the batch size, which the tail cannot be re-batched with).
        """
        if self.head is None:
            return []
        with torch.no_grad():
            values = self.head(x)
        out = []
        for name, value in zip(self.live_names, values):
            if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != x.shape[0]:
                what = (
                    f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
                )
                raise SplitError(
                    f"value {name!r} computed before layer {self.layer_name!r} and used after it is {what}, "
                    f"not a per-image tensor with batch size {x.shape[0]}"
                )
            out.append(value.detach())
        return out

    def pooled_linear(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """``(weight, bias)`` when the tail is global average pooling followed by one linear layer.

        Read from the traced tail: the activation is averaged over its two spatial axes
        (``x.mean((2, 3))``, ``AdaptiveAvgPool2d(1)``, ``F.adaptive_avg_pool2d(x, 1)``), optionally
        flattened or passed through ``Identity`` / ``Dropout``, then fed to one ``nn.Linear`` (or
        ``F.linear``) whose output is the model's output, and nothing else crosses the cut (ResNet's
        ``layer4``, most timm CNNs at their last stage). ``None`` otherwise. The caller checks the
        closed form it builds on this against a real tail pass (a Dropout in train mode, a shape
        this reading got wrong).
        """
        if self.head is not None:
            return None
        graph = self.tail.graph
        node = next(n for n in graph.nodes if n.op == "placeholder")
        pooled = False
        while True:
            users = [u for u in node.users if not _is_shape_query(u)]
            if len(users) != 1:
                return None
            user = users[0]
            if not pooled and _is_global_avg_pool(user, self.tail):
                pooled = True
            elif pooled and _is_passthrough(user, self.tail):
                pass
            elif pooled:
                linear = _linear_weights(user, self.tail)
                if linear is None:
                    return None
                out = [u for u in user.users]
                if len(out) != 1 or out[0].op != "output" or out[0].args[0] is not user:
                    return None
                return linear
            else:
                return None
            node = user

    def run_tail(self, activation: torch.Tensor, live: Sequence[torch.Tensor]) -> Any:
        """The model's (raw, un-adapted) output for ``activation`` at the layer; no autograd."""
        with torch.no_grad():
            return self.tail(activation, *live)


def _module(node: fx.Node, root: nn.Module) -> nn.Module | None:
    if node.op != "call_module":
        return None
    try:
        return root.get_submodule(str(node.target))
    except AttributeError:
        return None


def _is_shape_query(node: fx.Node) -> bool:
    """``x.size(...)``, ``x.dim()``, ``x.shape``: reading a shape, not the values."""
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    return node.op == "call_function" and node.target is getattr and node.args[1:2] == ("shape",)


def _is_global_avg_pool(node: fx.Node, root: nn.Module) -> bool:
    module = _module(node, root)
    if module is not None:
        return isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1))
    if node.op == "call_function" and node.target is nn.functional.adaptive_avg_pool2d:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        return size in (1, (1, 1), [1, 1])
    is_mean = (node.op == "call_method" and node.target == "mean") or (
        node.op == "call_function" and node.target is torch.mean
    )
    if not is_mean:
        return False
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    return isinstance(dims, (tuple, list)) and sorted(dims) in ([2, 3], [-2, -1])


def _is_passthrough(node: fx.Node, root: nn.Module) -> bool:
    """Reshapes that keep the pooled values (flatten, view, squeeze) and eval-mode no-ops."""
    module = _module(node, root)
    if module is not None:
        return isinstance(module, (nn.Flatten, nn.Identity, nn.Dropout))
    if node.op == "call_method":
        return node.target in ("flatten", "view", "reshape", "squeeze")
    return node.op == "call_function" and node.target in (torch.flatten, torch.reshape, torch.squeeze)


def _linear_weights(node: fx.Node, root: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    module = _module(node, root)
    if isinstance(module, nn.Linear):
        return module.weight, module.bias
    if node.op == "call_function" and node.target is nn.functional.linear:
        params = list(node.args[1:3]) + [node.kwargs.get("bias")] * (3 - len(node.args))
        found = []
        for p in params[:2]:
            if p is None:
                found.append(None)
            elif isinstance(p, fx.Node) and p.op == "get_attr":
                found.append(root.get_parameter(str(p.target)))
            else:
                return None
        if found[0] is None:
            return None
        return found[0], found[1]
    return None


def _tuple_picks(cut: fx.Node) -> list[tuple[fx.Node, int]] | None:
    """``[(getitem node, index), ...]`` when every use of the layer's output takes one element of it
    (a layer returning a tuple, e.g. HuggingFace's ``(hidden_states, attention_weights)``), else ``None``."""
    users = list(cut.users)
    picks = [
        (u, u.args[1]) for u in users
        if u.op == "call_function" and u.target is operator.getitem and u.args[0] is cut and isinstance(u.args[1], int)
    ]  # fmt: skip
    return picks if users and len(picks) == len(users) else None


def split_at_layer(model: nn.Module, layer: nn.Module, layer_name: str = "") -> LayerSplit:
    """Split ``model`` at its submodule ``layer`` (see the module docstring). Raises :class:`SplitError`."""
    tracer = _LeafTracer(layer)
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError, NotImplementedError, ...)
        raise SplitError(f"torch.fx could not trace {type(model).__name__}: {type(exc).__name__}: {exc}") from exc

    nodes = list(graph.nodes)
    position = {node: i for i, node in enumerate(nodes)}
    hits = []
    for node in nodes:
        if node.op == "call_module":
            try:
                if model.get_submodule(str(node.target)) is layer:
                    hits.append(node)
            except AttributeError:
                continue
    if len(hits) != 1:
        raise SplitError(
            f"layer {layer_name!r} is called {len(hits)} times in the traced graph of "
            f"{type(model).__name__}; splitting needs exactly one call"
        )
    cut = hits[0]
    start = position[cut]
    tail_nodes = nodes[start + 1 :]
    picks = _tuple_picks(cut)
    if picks is not None and len({index for _, index in picks}) != 1:
        raise SplitError(
            f"layer {layer_name!r} returns a tuple and the layers after it read several of its elements "
            f"({sorted({index for _, index in picks})}); the tail can take only the explained one"
        )

    live: list[fx.Node] = []
    consts: list[fx.Node] = []
    for node in tail_nodes:
        for inp in node.all_input_nodes:
            if inp is cut or position[inp] > start:
                continue
            if inp.op == "get_attr":
                if inp not in consts:
                    consts.append(inp)
            elif inp not in live:
                live.append(inp)

    # Tail: (activation, *live) -> model output.
    tail_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {cut: tail_graph.placeholder("activation")}
    for i, node in enumerate(live):
        env[node] = tail_graph.placeholder(f"live_{i}_{node.name}")
    for node in consts:
        env[node] = tail_graph.node_copy(node, lambda a: env[a])
    for node, _ in picks or ():  # a tuple-valued layer: its picked element is the activation
        env[node] = env[cut]
    for node in tail_nodes:
        if node not in env:
            env[node] = tail_graph.node_copy(node, lambda a: env[a])
    tail_graph.lint()
    tail = fx.GraphModule(model, tail_graph, class_name="CamLensTail")

    head = None
    if live:
        head_graph = fx.Graph()
        henv: dict[fx.Node, fx.Node] = {}
        for node in nodes[:start]:
            henv[node] = head_graph.node_copy(node, lambda a: henv[a])
        head_graph.output(tuple(henv[node] for node in live))
        head = fx.GraphModule(model, head_graph, class_name="CamLensHead")
        head.graph.eliminate_dead_code()
        head.graph.lint()
        head.recompile()
    return LayerSplit(layer_name=layer_name, tail=tail, head=head, live_names=[n.name for n in live])


class TailRunner:
    """Runs a model from a target layer's output, for many replaced copies of that output.

    ``prepare(...)`` returns ``(run, path)`` for one layer and one call (see :data:`LayerRun`):

    * ``"tail"`` -- only the layers after the target run (:func:`split_at_layer`). Once per call
      the tail is checked to reproduce the model's output on the captured (unchanged) activation;
    * ``"full"`` -- the whole model runs with a forward hook on the layer that *returns* the
      replacement rows. Used when ``fast=False``, or when the model cannot be split or the check
      fails; the latter is announced with one :class:`~camlens.CamLensWarning` per layer.

    Splits are traced once per layer and cached on the runner.
    """

    def __init__(self, model: nn.Module, who: str) -> None:
        self.model = model
        self.who = who
        self._splits: dict[str, LayerSplit | str] = {}
        self._warned: set[str] = set()

    def split(self, name: str, module: nn.Module) -> LayerSplit | str:
        """The cached split at ``module`` (or the reason it cannot be split)."""
        if name not in self._splits:
            try:
                self._splits[name] = split_at_layer(self.model, module, name)
            except SplitError as exc:
                self._splits[name] = str(exc)
        return self._splits[name]

    def prepare(
        self,
        name: str,
        module: nn.Module,
        x: torch.Tensor,
        raw: torch.Tensor,
        outputs: torch.Tensor,
        *,
        output_adapter: OutputAdapter | None = None,
        batch_size: int = 32,
        fast: bool = True,
    ) -> tuple[LayerRun, str]:
        """``(run, path)`` for layer ``name`` on input ``x`` whose layer output was ``raw`` and whose
        adapted model output was ``outputs``. With extra model inputs (:mod:`camlens.model_inputs`)
        the full model runs: the traced tail takes the layer output alone."""
        if fast and active_inputs() is None:
            tail = self._tail(name, module, x, raw, outputs, output_adapter or default_output_adapter, batch_size)
            if tail is not None:
                return tail, "tail"
        return self._full(module, x), "full"

    def _fallback(self, name: str, reason: str, *, permanent: bool = True) -> None:
        """Warn (once per layer) that ``name`` runs the full model; ``permanent`` caches the reason
        (the model cannot be split), otherwise only this call falls back (the per-call check failed
        on this input, e.g. non-finite values: the next call tries the tail again)."""
        if permanent:
            self._splits[name] = reason
        if name not in self._warned:
            self._warned.add(name)
            warnings.warn(
                f"{self.who} cannot run only the layers after {name!r} ({reason}); running the full "
                "model for every batch instead (slower, same result)",
                CamLensWarning,
                stacklevel=6,
            )

    def _tail(
        self,
        name: str,
        module: nn.Module,
        x: torch.Tensor,
        raw: torch.Tensor,
        outputs: torch.Tensor,
        adapter: OutputAdapter,
        batch_size: int,
    ) -> LayerRun | None:
        split = self.split(name, module)
        if isinstance(split, str):
            self._fallback(name, split)
            return None
        try:
            live = split.live_values(x)
        except SplitError as exc:
            self._fallback(name, str(exc))
            return None

        def run(images: torch.Tensor, rows: torch.Tensor) -> Any:
            return split.run_tail(rows, [v[images] for v in live])

        # Check once per call that the tail reproduces the model's output on the captured activation.
        n = raw.shape[0]
        bs = max(1, int(batch_size))
        reason = ""
        try:
            check = []
            for start in range(0, n, bs):
                idx = torch.arange(start, min(n, start + bs), device=raw.device)
                check.append(adapter(run(idx, raw[idx])).float())
            got = torch.cat(check)
        except Exception as exc:  # the traced tail failed where the model itself ran: use the model
            reason = f"the split model failed: {type(exc).__name__}: {exc}"
        if not reason and not outputs_match(got, outputs, equal_nan=True):
            reason = "the split model's output differs from the model's own output"
        if reason:
            self._fallback(name, reason, permanent=False)
            return None
        return run

    def _full(self, module: nn.Module, x: torch.Tensor) -> LayerRun:
        def run(images: torch.Tensor, rows: torch.Tensor) -> Any:
            token = object()  # the hook replaces the output of this forward pass only (not a nested
            # or another thread's forward of the same model)

            def replace(m: nn.Module, args: Any, output: Any) -> Any:
                if not in_capture(token):
                    return None
                found = layer_value(output)  # a tuple output gets the rows in place of its first tensor
                return rows if found is None else found[1](rows)

            with HookSet() as hooks, torch.no_grad(), capture_scope(token), rows_of(images):
                hooks.forward(module, replace)
                return call_model(self.model, x[images])

        return run


def outputs_match(got: torch.Tensor, want: torch.Tensor, *, equal_nan: bool = False) -> bool:
    """Whether ``got`` reproduces the model output ``want`` up to the rounding of its dtype."""
    want_f = want.float()
    scale = float(want_f.abs().max()) if want_f.numel() else 1.0
    rtol = max(1e-4, 100 * torch.finfo(want.dtype).eps) if want.is_floating_point() else 1e-4
    atol = rtol * 0.1 * max(1.0, scale)
    return got.shape == want_f.shape and torch.allclose(got.float(), want_f, rtol=rtol, atol=atol, equal_nan=equal_nan)
