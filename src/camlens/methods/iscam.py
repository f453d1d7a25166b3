"""IS-CAM: Integrated Score-CAM (Naidu et al., 2020, arXiv:2010.03023)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..errors import ArgumentError
from ..registry import register
from .scorecam import ScoreCAM

__all__ = ["ISCAM"]


@register("iscam", "is-cam", "integratedscorecam")
class ISCAM(ScoreCAM):
    """IS-CAM: Score-CAM whose channel scores are integrated along a path of scaled masks.

    With ``M_k = minmax(Up(A_k))`` as in Score-CAM and ``N = num_samples`` (default 10):

    ``s_k = 1/N sum_{i=1..N} target(softmax(f(x * (i/N) M_k)))`` -- a Riemann sum of
    ``integral_0^1 score(x * alpha M_k) d alpha``, the integration the method is named for (as in
    Integrated Gradients); ``w = softmax_k(s)``, ``map = ReLU(sum_k w_k * A_k)``. One sample is
    Score-CAM exactly. No randomness.

    The paper writes the sum with an accumulated mask, ``M_i = sum_{j<i} (j/N) M_k * x``; torchcam
    reads it with coefficients ``sum_{j=1..i} j/N``, which grow past 1 (to ``(N + 1)/2``) and so
    scale the input beyond its range. ``cumulative=True`` uses torchcam's coefficients
    ``i(i+1)/(2N)``; the default keeps the scale in ``(0, 1]``.

    Example::

        cam = ISCAM(model, "layer4[-1]", num_samples=2, top_k=8, batch_size=64)  # paper: num_samples=10, all channels
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)] * len(x))
    """

    paper = "Naidu et al., IS-CAM: Integrated Score-CAM for axiomatic-based explanations, arXiv:2010.03023, 2020"
    summary = "Score-CAM with channel scores integrated over num_samples scaled masks"
    figure_options: ClassVar[dict[str, Any]] = {"num_samples": 2, "top_k": 128}
    formula = r"M_k = \operatorname{minmax}\big(\operatorname{Up}(A^k)\big),\quad s_k = \frac{1}{N}\sum_{i=1}^{N} \operatorname{softmax}\Big(f\big(x \odot \tfrac{i}{N} M_k\big)\Big)_c,\quad w^c = \operatorname{softmax}_k(s),\quad L^c = \operatorname{ReLU}\Big(\sum_k w^c_k A^k\Big)"
    cost = "one forward pass, then num_samples forward passes of the whole model per (image, channel) pair; num_samples x C masked inputs per image (e.g. 10 x 1280 at EfficientNet-Lite0's last layer), run in chunks of batch_size"
    options: ClassVar[dict[str, Any]] = {**ScoreCAM.options, "num_samples": 10, "cumulative": False}

    def configure(self) -> None:
        super().configure()
        n = self.num_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ArgumentError(f"num_samples must be a positive int; got {n!r}")

    def perturb(
        self, x: torch.Tensor, masks: torch.Tensor, channels: torch.Tensor, samples: torch.Tensor, key: Any
    ) -> torch.Tensor:
        i = (samples + 1).to(masks.dtype)
        alpha = i * (i + 1) / (2 * self.num_samples) if self.cumulative else i / self.num_samples
        return x * (masks * alpha[:, None, None])[:, None].to(x.dtype)
