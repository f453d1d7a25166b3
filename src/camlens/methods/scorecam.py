"""Score-CAM (Wang et al., CVPR-W 2020, arXiv:1910.01279), batched with bounded memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from .. import postprocess as pp
from ..registry import register
from ..targets import ClassifierOutputSoftmaxTarget, TargetFn, score_targets
from ..model_inputs import active_inputs
from .base import LayerContext, PerturbationCAM, check_argument, per_channel

__all__ = ["ScoreCAM"]


@register("scorecam", "score-cam")
class ScoreCAM(PerturbationCAM):
    """Score-CAM: each channel, used as a mask on the input, is weighted by the score it keeps.

    For image ``x`` and channel ``A_k`` of the target layer:

    * ``M_k = minmax(Up(A_k))`` -- bilinear upsampling to the input size, then min-max
      normalisation to ``[0, 1]`` per channel;
    * ``s_k = target(softmax(f(x * M_k)))`` -- the target score on the masked input, with the
      model's class scores passed through a softmax first, as in the paper;
    * ``w = softmax_k(s)`` -- softmax over channels;  ``map = ReLU(sum_k w_k * A_k)``.

    The paper's baseline ``f(x_b)`` is subtracted from every ``s_k`` alike, which a softmax over
    channels ignores, so it is not computed.

    How targets meet the softmax (``score_softmax=True``, default): for ``(N, classes)`` outputs the
    targets receive ``softmax(outputs, dim=1)``, so ``ClassifierOutputTarget(c)`` gives the
    probability of ``c``; a ``ClassifierOutputSoftmaxTarget`` already applies the softmax and
    receives the raw outputs (no double softmax). Outputs of any other shape (segmentation maps,
    detections) have no single class axis: their targets receive the raw outputs. With
    ``score_softmax=False`` targets always receive the raw outputs (e.g. logits).

    Exactness and cost:

    * (image, channel) pairs are scored in chunks of ``batch_size`` masked images; masks and
      masked inputs exist for one chunk at a time, so peak memory grows with ``batch_size``,
      not with the number of channels;
    * a channel that is constant at layer resolution (``max == min``, e.g. all zeros) carries
      no spatial information: its mask is defined as all zeros (no NaN). Every such channel then
      masks the input to the same all-zero image, whose score is computed once per call and
      reused, so skipping them keeps the result exact;
    * ``top_k`` (off by default): score only each image's ``top_k`` channels by mean
      activation; the others get weight 0 and are left out of the softmax. Faster, not exact.

    Example::

        cam = ScoreCAM(model, "layer4[-1]", batch_size=64)
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)] * len(x))
    """

    paper = "Wang et al., Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks, CVPR-W 2020"
    summary = "channel weights = softmax of the target score of the input masked by each channel (no gradients)"
    formula = r"M_k = \operatorname{minmax}\big(\operatorname{Up}(A^k)\big),\quad s_k = \operatorname{softmax}\big(f(x \odot M_k)\big)_c,\quad w^c = \operatorname{softmax}_k(s),\quad L^c = \operatorname{ReLU}\Big(\sum_k w^c_k A^k\Big)"
    cost = "one forward pass, then one forward pass of the whole model per (image, channel) pair: C masked inputs per image (e.g. 1280 at EfficientNet-Lite0's last layer), run in chunks of batch_size"
    options: ClassVar[dict[str, Any]] = {"top_k": None, "score_softmax": True}
    num_samples: int = 1
    """Perturbed copies scored per (image, channel); variants (SS-CAM, IS-CAM) use more."""

    def configure(self) -> None:
        self.top_k = check_argument(type(self).__name__, "top_k", self.top_k, "optional_positive_int")
        self.score_softmax = check_argument(type(self).__name__, "score_softmax", self.score_softmax, "bool")

    # ------------------------------------------------------------------ what is scored
    def perturb(
        self, x: torch.Tensor, masks: torch.Tensor, channels: torch.Tensor, samples: torch.Tensor, key: Any
    ) -> torch.Tensor:
        """The inputs scored for a chunk of rows: ``x * M_k`` (``x`` ``(B, C, H, W)``, ``masks`` ``(B, H, W)``).

        ``channels`` and ``samples`` say which channel and which of the ``num_samples`` copies each
        row is, ``key`` is :meth:`sample_key`'s value for this layer and call; Score-CAM's variants
        override this method."""
        return x * masks[:, None].to(x.dtype)

    def sample_key(self) -> Any:
        """Drawn once per layer and call and handed to :meth:`perturb` (a noise seed for SS-CAM)."""
        return None

    def zero_mask_gives_zero_input(self) -> bool:
        """Whether an all-zero mask always gives the all-zero input (true for Score-CAM)."""
        return True

    def masked_scores(self, targets: Sequence[TargetFn], outputs: torch.Tensor) -> torch.Tensor:
        """Target scores ``(B,)`` of model outputs on masked inputs (softmax over classes first, see above)."""
        if not self.score_softmax or not isinstance(outputs, torch.Tensor) or outputs.dim() != 2:
            return score_targets(targets, outputs).float()
        own = [isinstance(t, ClassifierOutputSoftmaxTarget) for t in targets]
        if all(own):
            return score_targets(targets, outputs).float()
        probs = torch.softmax(outputs.float(), dim=1)
        if not any(own):
            return score_targets(targets, probs).float()
        mask = torch.tensor(own, device=outputs.device)
        return torch.where(mask, score_targets(targets, outputs).float(), score_targets(targets, probs).float())

    # ------------------------------------------------------------------ the method
    def channel_scores(self, ctx: LayerContext) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores (N, C), scored (N, C) bool)``: ``s_k`` per image and channel (the mean over the
        ``num_samples`` perturbed copies), and which channels count."""
        acts, x = ctx.activations, ctx.input_tensor
        n, c = acts.shape[:2]
        size = tuple(x.shape[2:])
        flat = acts.flatten(2)
        scored = torch.ones(n, c, dtype=torch.bool, device=acts.device)
        if self.top_k is not None and self.top_k < c:
            top = flat.mean(dim=2).topk(self.top_k, dim=1).indices
            scored = torch.zeros_like(scored).scatter_(1, top, True)
        scores = torch.full((n, c), float("-inf"), dtype=torch.float32, device=acts.device)

        # A constant channel (also all-zero) has the all-zero mask: one all-zero image stands in for
        # every such channel of every image.
        constant = flat.amax(dim=2) <= flat.amin(dim=2)
        if not self.zero_mask_gives_zero_input():
            constant = torch.zeros_like(constant)
        if bool((constant & scored).any()):
            if active_inputs() is None:
                zero_out = self.engine.forward_outputs(torch.zeros_like(x[:1]))
                if isinstance(zero_out, torch.Tensor):
                    zero_out = zero_out.expand(n, *zero_out.shape[1:])
                else:  # per-image outputs (detections): the same one for every image
                    zero_out = list(zero_out) * n
            else:  # the extra inputs differ per image: one all-zero image with each image's inputs
                zero_out = self.engine.forward_outputs(torch.zeros_like(x))
            zero_scores = self.masked_scores(ctx.targets, zero_out)
            scores = torch.where(constant & scored, zero_scores[:, None].expand(n, c), scores)

        pairs = (scored & ~constant).nonzero()  # (P, 2) rows of (image, channel)
        samples = max(1, int(self.num_samples))
        key = self.sample_key()

        def inputs(rows: torch.Tensor) -> torch.Tensor:
            img, ch = pairs[rows // samples].unbind(1)
            masks = pp.minmax_normalize(pp.upsample(acts[img, ch], size))  # (B, H, W)
            return self.perturb(x[img], masks, ch, rows % samples, key)

        def score(rows: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
            return self.masked_scores([ctx.targets[i] for i in pairs[rows // samples, 0].tolist()], outputs)

        total = pairs.shape[0] * samples
        def images(rows: torch.Tensor) -> torch.Tensor:
            return pairs[rows // samples, 0]

        got = self.score_rows(total, score, inputs=inputs, images=images, desc=f"{type(self).__name__} {ctx.name}", device=acts.device)
        img, ch = pairs.unbind(1)
        scores[img, ch] = got.reshape(-1, samples).mean(dim=1) if samples > 1 else got
        return scores, scored

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        """``(N, C, 1, 1)`` weights: softmax over the scored channels (0 for channels left out by ``top_k``)."""
        scores, scored = self.channel_scores(ctx)
        weights = torch.softmax(scores, dim=1)
        return per_channel(torch.where(scored, weights, torch.zeros_like(weights)), ctx.activations)
