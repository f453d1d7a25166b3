"""Ablation-CAM (Desai & Ramaswamy, WACV 2020), with a closed form for pooled linear heads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from ..registry import register
from ..reshape import pyramid_channel_sources, raw_channel_axis
from ..split import LayerSplit, TailRunner, outputs_match
from ..targets import score_targets
from .base import LayerContext, PerturbationCAM, check_argument, per_channel

__all__ = ["AblationCAM"]


@register("ablationcam", "ablation-cam")
class AblationCAM(PerturbationCAM):
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
      :mod:`torch.fx` and only the layers *after* it run on the ablated copies of the captured
      output (:class:`camlens.split.TailRunner`: checked once per call, with a fallback to the
      full model and a :class:`~camlens.CamLensWarning` where the split is not exact).
    * Closed form (``closed_form=True``, default): when the tail is global average pooling and
      one linear layer ``z = W pool(A) + b`` (ResNet's ``layer4``, many timm CNNs; read from the
      traced tail), setting channel ``k`` to ``v`` changes the logits by exactly
      ``(v - mean(A_k)) * W[:, k]``, so every ablated output is ``z + (v - mean(A_k)) W[:, k]``:
      one batched product, no tail pass, for any target function of the logits. Used only where
      it agrees with one real tail pass per call; ``cam.last_path`` says ``"closed-form"``.
    * With a ``reshape_transform`` the channel is ablated in the layer's raw layout, along the
      raw axis that holds it (the last axis for ``(N, tokens, C)``), see
      :func:`camlens.reshape.raw_channel_axis`.

    Example::

        cam = AblationCAM(model, "layer4[-1]", batch_size=64)
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)] * len(x))
    """

    paper = "Desai & Ramaswamy, Ablation-CAM: Visual Explanations for Deep Convolutional Network via Gradient-free Localization, WACV 2020"
    summary = "channel weights = relative score drop when the channel is ablated (no gradients)"
    options: ClassVar[dict[str, Any]] = {"ablation_value": 0.0, "fast_path": True, "closed_form": True}
    formula = r"w^c_k = \frac{y^c - y^c_{k}}{y^c}\;\;(y^c_k:\ \text{score with } A^k := 0),\qquad L^c = \operatorname{ReLU}\Big(\sum_k w^c_k A^k\Big)"
    cost = "one forward pass, then per (image, channel) pair one run of only the layers after the target layer (torch.fx split; about three forward passes for ResNet-50's 2048 channels); whole-model forwards when the model cannot be split"

    def configure(self) -> None:
        owner = type(self).__name__
        self.ablation_value = check_argument(owner, "ablation_value", self.ablation_value, "number")
        self.fast_path = check_argument(owner, "fast_path", self.fast_path, "bool")
        self.closed_form = check_argument(owner, "closed_form", self.closed_form, "bool")
        self.tails = TailRunner(self.model, owner)
        self.last_path: dict[str, str] = {}
        """Which path scored each layer in the last call: ``"closed-form"``, ``"tail"`` or ``"full"``."""

    def ablated_scores(self, ctx: LayerContext) -> torch.Tensor:
        """``y_k`` for every image and channel: ``(N, C)`` float64 (the differences ``y - y_k`` are small)."""
        raw = ctx.raw_activations
        n, c = ctx.activations.shape[:2]
        if isinstance(raw, dict):
            return self._pyramid_scores(ctx, raw, n, c)
        axis, channel_index = raw_channel_axis(raw, c, self.reshape_transform)
        run, path = self.tails.prepare(
            ctx.name, ctx.module, ctx.input_tensor, raw, ctx.outputs,
            output_adapter=self.engine.output_adapter, batch_size=self.batch_size, fast=self.fast_path,
        )  # fmt: skip

        def ablated(rows: torch.Tensor) -> Any:  # row = image * C + channel
            img, ch = rows // c, channel_index[rows % c]
            out = raw[img]  # indexing copies
            out.movedim(axis, 1)[torch.arange(rows.numel(), device=rows.device), ch] = self.ablation_value
            return run(img, out)

        closed = self._closed_form(ctx, ablated) if path == "tail" and axis == 1 and raw.dim() == ctx.activations.dim() else None
        self.last_path[ctx.name] = path if closed is None else "closed-form"

        def score(rows: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
            return score_targets([ctx.targets[i] for i in (rows // c).tolist()], outputs).double()

        scores = self.score_rows(
            n * c, score, run=closed or ablated, desc=f"AblationCAM {ctx.name}", dtype=torch.float64, device=raw.device
        )
        return scores.reshape(n, c)

    def _pyramid_scores(self, ctx: LayerContext, raw: dict, n: int, c: int) -> torch.Tensor:
        """A feature-pyramid layer (FPN): channel ``k`` of the stacked map is one channel of one
        level (:func:`camlens.reshape.pyramid_channel_sources`); it is ablated there and the full
        model runs on the ablated pyramid (the fx tail path is not used for pyramids)."""
        sources = pyramid_channel_sources(raw, c, self.reshape_transform)
        run, path = self.tails.prepare(ctx.name, ctx.module, ctx.input_tensor, raw, ctx.outputs, fast=False)
        self.last_path[ctx.name] = path

        def ablated(rows: torch.Tensor) -> Any:  # row = image * C + channel
            img = rows // c
            out = {k: v[img] for k, v in raw.items()}  # indexing copies
            for i, ch in enumerate((rows % c).tolist()):
                level, channel = sources[ch]
                out[level][i, channel] = self.ablation_value
            return run(img, type(raw)(out) if type(raw) is not dict else out)

        def score(rows: torch.Tensor, outputs: Any) -> torch.Tensor:
            return score_targets([ctx.targets[i] for i in (rows // c).tolist()], outputs).double()

        device = next(iter(raw.values())).device
        scores = self.score_rows(
            n * c, score, run=ablated, desc=f"AblationCAM {ctx.name}", dtype=torch.float64, device=device
        )
        return scores.reshape(n, c)

    def _closed_form(
        self, ctx: LayerContext, tail: Callable[[torch.Tensor], Any]
    ) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Ablated logits ``z + (v - mean(A_k)) W[:, k]`` per row (``z``: the captured output) where the
        tail is pooling + linear and this agrees with the real ``tail`` on a few rows; else ``None``."""
        split = self.tails.split(ctx.name, ctx.module)
        head = split.pooled_linear() if self.closed_form and isinstance(split, LayerSplit) else None
        raw, z = ctx.raw_activations, ctx.outputs
        n, c = raw.shape[:2]
        if head is None or head[0].dim() != 2 or head[0].shape[1] != c or tuple(z.shape) != (n, head[0].shape[0]):
            return None
        columns = head[0].detach().T.contiguous()  # (C, K): W[:, k] as rows
        shift = self.ablation_value - raw.double().flatten(2).mean(dim=2)  # (N, C): v - mean(A_k)
        z64 = z.double()

        def run(rows: torch.Tensor) -> torch.Tensor:  # float64: y - y_k is small next to y
            img, ch = rows // c, rows % c
            return z64[img] + shift[img, ch][:, None] * columns[ch]

        check = torch.linspace(0, n * c - 1, min(n * c, 8), device=raw.device).round().long().unique()
        real = tail(check)  # a few rows spread over the channels: one small real tail pass
        return run if isinstance(real, torch.Tensor) and outputs_match(run(check), real) else None

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        """``(N, C, 1, 1)`` weights ``(y - y_k) / y`` (``y - y_k`` where ``y == 0``)."""
        y = ctx.scores.double()[:, None]
        yk = self.ablated_scores(ctx)
        denom = torch.where(y == 0, torch.ones_like(y), y)
        return per_channel(((y - yk) / denom).to(ctx.activations.dtype), ctx.activations)
