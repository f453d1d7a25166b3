"""Split a model at a target layer so that only the part *after* the layer is re-run.

AblationCAM scores thousands of copies of one layer's output with a channel removed. Re-running
the whole network for each copy repeats the (identical) computation before the layer every
time. :func:`split_at_layer` traces the model with :mod:`torch.fx` and builds two small graph
modules that share the model's own submodules and parameters (nothing is copied or swapped):

* ``tail(activation, *live)`` -- every node after the target layer's call, taking the layer's
  output and every value computed *before* the layer that is still needed *after* it (a skip
  connection around the layer, the input image, ...) as inputs; it returns the model's output;
* ``head(*inputs)`` -- the nodes before the layer that those live values need (``None`` when the
  tail needs nothing but the activation, as for ``layer4[-1]`` of a ResNet).

The target module is kept as one ``call_module`` node (the tracer treats it as a leaf), so a
nested name like ``layer4.2`` works. Splitting fails with :class:`SplitError` when the model
cannot be traced (data-dependent control flow, unsupported Python), when the layer is called
more or less than once, or when a live value is not a per-image tensor; callers then fall back
to running the full model (see :class:`camlens.methods.ablationcam.AblationCAM`).

Hooks: modules that fx inlines (the model itself, containers, custom modules other than the
target) are traced through their bare ``forward``, so their forward hooks are neither called during
tracing nor run by the tail; hooks on leaf modules (``Conv2d``, ``Linear``, ...) in the tail fire as
usual. AblationCAM checks once per call that the tail reproduces the model's output (which catches
an output-changing hook the tail skips) and falls back to the full model if it does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from .errors import CamLensError

__all__ = ["SplitError", "LayerSplit", "split_at_layer"]


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

    def run_tail(self, activation: torch.Tensor, live: Sequence[torch.Tensor]) -> Any:
        """The model's (raw, un-adapted) output for ``activation`` at the layer; no autograd."""
        with torch.no_grad():
            return self.tail(activation, *live)


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
    for node in tail_nodes:
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
