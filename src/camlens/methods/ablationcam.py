"""Ablation-CAM (Desai & Ramaswamy, WACV 2020)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..registry import register
from ..reshape import raw_channel_axis
from ..split import TailRunner
from ..targets import score_targets
from .base import LayerContext, PerturbationCAM

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
    * With a ``reshape_transform`` the channel is ablated in the layer's raw layout, along the
      raw axis that holds it (the last axis for ``(N, tokens, C)``), see
      :func:`camlens.reshape.raw_channel_axis`.

    Example::

        cam = AblationCAM(model, "layer4[-1]", batch_size=64)
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)])
    """

    paper = "Desai & Ramaswamy, Ablation-CAM: Visual Explanations for Deep Convolutional Network via Gradient-free Localization, WACV 2020"
    summary = "channel weights = relative score drop when the channel is ablated (no gradients)"
    options: ClassVar[dict[str, Any]] = {"ablation_value": 0.0, "fast_path": True}

    def configure(self) -> None:
        self.ablation_value = float(self.ablation_value)
        self.tails = TailRunner(self.model, type(self).__name__)
        self.last_path: dict[str, str] = {}
        """Which path scored each layer in the last call: ``"tail"`` or ``"full"`` (for inspection)."""

    def ablated_scores(self, ctx: LayerContext) -> torch.Tensor:
        """``y_k`` for every image and channel: ``(N, C)`` float64 (the differences ``y - y_k`` are small)."""
        raw = ctx.raw_activations
        n, c = ctx.activations.shape[:2]
        axis, channel_index = raw_channel_axis(raw, c, self.reshape_transform)
        run, self.last_path[ctx.name] = self.tails.prepare(
            ctx.name, ctx.module, ctx.input_tensor, raw, ctx.outputs,
            output_adapter=self.engine.output_adapter, batch_size=self.batch_size, fast=self.fast_path,
        )  # fmt: skip

        def ablated(rows: torch.Tensor) -> Any:  # row = image * C + channel
            img, ch = rows // c, channel_index[rows % c]
            out = raw[img]  # indexing copies
            out.movedim(axis, 1)[torch.arange(rows.numel(), device=rows.device), ch] = self.ablation_value
            return run(img, out)

        def score(rows: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
            return score_targets([ctx.targets[i] for i in (rows // c).tolist()], outputs).double()

        desc = f"AblationCAM {ctx.name}"
        return self.score_rows(n * c, score, run=ablated, desc=desc, dtype=torch.float64, device=raw.device).reshape(n, c)

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        """``(N, C, 1, 1)`` weights ``(y - y_k) / y`` (``y - y_k`` where ``y == 0``)."""
        y = ctx.scores.double()[:, None]
        yk = self.ablated_scores(ctx)
        denom = torch.where(y == 0, torch.ones_like(y), y)
        return ((y - yk) / denom).to(ctx.activations.dtype)[:, :, None, None]
