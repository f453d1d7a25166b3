"""Ablation-CAM (Desai & Ramaswamy, WACV 2020), with a fast path that re-runs only the network's tail."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch

from .. import postprocess as pp
from ..engine import CamLensWarning
from ..errors import LayerOutputError
from ..hooks import HookSet
from ..progress import progress_bar
from ..registry import register
from ..split import LayerSplit, SplitError, split_at_layer
from ..targets import score_targets
from .base import BaseCAM, LayerContext

__all__ = ["AblationCAM", "raw_channel_axis"]


def raw_channel_axis(
    raw: torch.Tensor, num_channels: int, reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None
) -> tuple[int, torch.Tensor]:
    """Where channel ``k`` of the ``(N, C, h, w)`` activation map lives in the layer's raw output.

    Returns ``(axis, index)``: channel ``k`` is ``raw.select(axis, index[k])`` for each image.
    Without a ``reshape_transform`` that is axis 1. With one (e.g. ViT tokens ``(N, T, C)`` ->
    ``(N, C, h, w)``), the transform is applied to a probe tensor holding each raw element's flat
    position, and the raw axis along which every channel is one fixed slice is found (the last axis
    for tokens). The whole raw slice is ablated, so for a ViT the class token's channel ``k`` is set
    too, as when the layer's channel is removed. Raises :class:`LayerOutputError` if the transform
    does more than rearrange elements (slice, permute, reshape, transpose).
    """
    if reshape_transform is None:
        if raw.dim() != 4:
            raise LayerOutputError(f"expected a (N, C, h, w) layer output; got shape {tuple(raw.shape)}")
        return 1, torch.arange(num_channels, device=raw.device)
    one = raw[:1]
    probe = torch.arange(one.numel(), dtype=torch.float64, device=raw.device).reshape(one.shape)
    hint = (
        "AblationCAM ablates channels of the layer's raw output, so reshape_transform must only "
        "rearrange elements (slicing, permute, reshape) and keep each channel on one raw axis"
    )
    try:
        mapped = reshape_transform(probe)
    except Exception as exc:
        raise LayerOutputError(f"{hint}; it failed on a float64 probe tensor: {exc}") from exc
    if not isinstance(mapped, torch.Tensor) or mapped.dim() != 4 or mapped.shape[1] != num_channels:
        raise LayerOutputError(f"{hint}; it returned {getattr(mapped, 'shape', type(mapped).__name__)}")
    idx = mapped[0].flatten(1)  # (C, h*w) flat positions in raw[0]
    if not bool(torch.all(idx == idx.round())) or bool((idx < 0).any()) or bool((idx >= one.numel()).any()):
        raise LayerOutputError(f"{hint}; its output is not a rearrangement of its input")
    idx = idx.long()
    coords = []
    rem = idx
    for size in reversed(one.shape):
        coords.append(rem % size)
        rem = torch.div(rem, size, rounding_mode="floor")
    coords = coords[::-1]  # one (C, h*w) coordinate tensor per raw axis
    for axis in range(1, raw.dim()):
        c = coords[axis]
        per_channel = c[:, 0]
        if bool((c == per_channel[:, None]).all()) and per_channel.unique().numel() == num_channels:
            return axis, per_channel
    raise LayerOutputError(f"{hint}; no single raw axis of shape {tuple(raw.shape)} holds the channels")


def _ablate(raw_rows: torch.Tensor, axis: int, channels: torch.Tensor, value: float) -> torch.Tensor:
    """Set ``raw_rows[i].select(axis - 1, channels[i]) = value`` for every row ``i`` (in place)."""
    view = raw_rows.movedim(axis, 1)
    view[torch.arange(raw_rows.shape[0], device=raw_rows.device), channels] = value
    return raw_rows


@register("ablationcam", "ablation-cam")
class AblationCAM(BaseCAM):
    """Ablation-CAM: a channel's weight is the relative drop of the target score when it is removed.

    ``w_k = (y - y_k) / y`` where ``y`` is the target score and ``y_k`` the score with channel
    ``k`` of the target layer set to ``ablation_value``; ``map = ReLU(sum_k w_k * A_k)``.

    * Ablation value: ``0`` (the paper's "removing" a feature map). Peers use a large negative
      value for some architectures; pass ``ablation_value=...`` if you want that.
    * ``y == 0``: the division is dropped for that image (``w_k = y - y_k``); dividing by a
      positive constant does not change the normalised map, so this keeps it finite.
    * Scoring: every (image, channel) pair is one row; rows run in chunks of ``batch_size``
      with no autograd and without the capture hooks.
    * Fast path (``fast_path=True``, default): the model is split at the target layer with
      :mod:`torch.fx` (:mod:`camlens.split`) and only the layers *after* it run on the ablated
      copies of the captured output. Once per call the tail is checked to reproduce the model's
      output. If the model cannot be split (untraceable forward, a layer called twice, ...) or the
      check fails, the full model runs with a forward hook that *returns* the ablated output
      (modules are never swapped), and a :class:`~camlens.CamLensWarning` says so once.
    * With a ``reshape_transform`` the channel is ablated in the layer's raw layout, along the
      raw axis that holds it (the last axis for ``(N, tokens, C)``), see :func:`raw_channel_axis`.

    Example::

        cam = AblationCAM(model, "layer4[-1]", batch_size=64)
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)] * len(x))
    """

    paper = "Desai & Ramaswamy, Ablation-CAM: Visual Explanations for Deep Convolutional Network via Gradient-free Localization, WACV 2020"
    summary = "channel weights = relative score drop when the channel is ablated (no gradients)"
    formula = r"w^c_k = \frac{y^c - y^c_{k}}{y^c}\;\;(y^c_k:\ \text{score with } A^k := 0),\qquad L^c = \operatorname{ReLU}\Big(\sum_k w^c_k A^k\Big)"
    cost = "one forward pass, then per (image, channel) pair one run of only the layers after the target layer (torch.fx split; about three forward passes for ResNet-50's 2048 channels); whole-model forwards when the model cannot be split"
    uses_gradients: ClassVar[bool] = False

    def __init__(
        self,
        model: torch.nn.Module,
        target_layers: Any = None,
        use_cuda: bool | None = None,
        reshape_transform: Any = None,
        *,
        ablation_value: float = 0.0,
        fast_path: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, target_layers, use_cuda, reshape_transform, **kwargs)
        self.ablation_value = float(ablation_value)
        self.fast_path = fast_path
        self._splits: dict[str, LayerSplit | str] = {}
        self._warned: set[str] = set()
        self.last_path: dict[str, str] = {}
        """Which path scored each layer in the last call: ``"tail"`` or ``"full"`` (for inspection)."""

    # ------------------------------------------------------------------ scoring paths
    def _split(self, ctx: LayerContext) -> LayerSplit | str:
        if ctx.name not in self._splits:
            try:
                self._splits[ctx.name] = split_at_layer(self.model, ctx.module, ctx.name)
            except SplitError as exc:
                self._splits[ctx.name] = str(exc)
        return self._splits[ctx.name]

    def _fallback(self, name: str, reason: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            warnings.warn(
                f"AblationCAM cannot run only the layers after {name!r} ({reason}); running the full "
                "model for every ablation batch instead (slower, same result)",
                CamLensWarning,
                stacklevel=5,
            )

    def _tail_runner(self, ctx: LayerContext) -> Callable[[torch.Tensor, torch.Tensor], Any] | None:
        """A function ``(image_idx, ablated_raw_rows) -> raw model output`` running only the tail."""
        split = self._split(ctx)
        if isinstance(split, str):
            self._fallback(ctx.name, split)
            return None
        try:
            live = split.live_values(ctx.input_tensor)
        except SplitError as exc:
            self._splits[ctx.name] = str(exc)
            self._fallback(ctx.name, str(exc))
            return None

        def run(idx: torch.Tensor, rows: torch.Tensor) -> Any:
            return split.run_tail(rows, [v[idx] for v in live])

        # Check once per call that the tail reproduces the model's output on the captured activation.
        n = ctx.raw_activations.shape[0]
        bs = max(1, int(self.batch_size))
        reason = ""
        try:
            check = []
            for start in range(0, n, bs):
                idx = torch.arange(start, min(n, start + bs), device=ctx.raw_activations.device)
                check.append(self.engine.output_adapter(run(idx, ctx.raw_activations[idx])).float())
            got = torch.cat(check)
        except Exception as exc:  # the traced tail failed where the model itself ran: use the model
            reason = f"the split model failed: {type(exc).__name__}: {exc}"
        if not reason:
            want = ctx.outputs.float()
            scale = float(want.abs().max()) if want.numel() else 1.0
            rtol = max(1e-4, 100 * torch.finfo(ctx.outputs.dtype).eps) if ctx.outputs.is_floating_point() else 1e-4
            if got.shape != want.shape or not torch.allclose(got, want, rtol=rtol, atol=rtol * 0.1 * max(1.0, scale)):
                reason = "the split model's output differs from the model's own output"
        if reason:
            self._splits[ctx.name] = reason
            self._fallback(ctx.name, reason)
            return None
        return run

    def _full_runner(self, ctx: LayerContext, axis: int) -> Callable[[torch.Tensor, torch.Tensor], Any]:
        """Run the full model on the images ``idx`` with the layer's output replaced by a hook."""
        value = self.ablation_value

        def run(idx: torch.Tensor, channels: torch.Tensor) -> Any:
            def replace(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
                return _ablate(output.clone(), axis, channels, value)

            with HookSet() as hooks, torch.no_grad():
                hooks.forward(ctx.module, replace)
                return self.model(ctx.input_tensor[idx])

        return run

    # ------------------------------------------------------------------ the method
    def ablated_scores(self, ctx: LayerContext) -> torch.Tensor:
        """``y_k`` for every image and channel: ``(N, C)`` float64 (the differences ``y - y_k`` are small)."""
        raw = ctx.raw_activations
        n, c = ctx.activations.shape[:2]
        axis, channel_index = raw_channel_axis(raw, c, self.reshape_transform)
        tail = self._tail_runner(ctx) if self.fast_path else None
        self.last_path[ctx.name] = "tail" if tail is not None else "full"
        value = self.ablation_value
        if tail is not None:

            def run(img: torch.Tensor, ch: torch.Tensor) -> Any:
                return tail(img, _ablate(raw[img], axis, ch, value))  # indexing copies

        else:
            run = self._full_runner(ctx, axis)

        bs = max(1, int(self.batch_size))
        total = n * c
        scores = torch.empty(total, dtype=torch.float64, device=raw.device)
        starts = range(0, total, bs)
        for start in progress_bar(starts, total=len(starts), enabled=self.progress, desc=f"AblationCAM {ctx.name}"):
            rows = torch.arange(start, min(total, start + bs), device=raw.device)
            img, ch = rows // c, channel_index[rows % c]
            outputs = self.engine.output_adapter(run(img, ch))
            row_targets: Sequence[Any] = [ctx.targets[i] for i in img.tolist()]
            scores[start : start + rows.numel()] = score_targets(row_targets, outputs).double()
        return scores.reshape(n, c)

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        """``(N, C)`` weights ``(y - y_k) / y`` (``y - y_k`` where ``y == 0``)."""
        y = ctx.scores.double()[:, None]
        yk = self.ablated_scores(ctx)
        denom = torch.where(y == 0, torch.ones_like(y), y)
        return ((y - yk) / denom).to(ctx.activations.dtype)

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        weighted = self.cam_weights(ctx)[:, :, None, None] * ctx.activations
        if eigen_smooth:
            return pp.eigen_projection(weighted)
        return weighted.sum(dim=1)
