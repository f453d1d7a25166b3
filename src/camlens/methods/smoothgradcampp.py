"""Smooth Grad-CAM++ (Omeiza et al., 2019, arXiv:1908.01224): Grad-CAM++ on noise-averaged derivatives."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..errors import ArgumentError, InputTypeError
from ..progress import progress_bar
from ..registry import register
from .base import GradientCAM, LayerContext

__all__ = ["SmoothGradCAMpp"]


@register("smoothgradcam++", "smoothgradcampp", "smoothgradcamplusplus", "smooth-grad-cam++")
class SmoothGradCAMpp(GradientCAM):
    """Smooth Grad-CAM++: the Grad-CAM++ weights computed from derivatives averaged over noisy inputs.

    For ``m = 1..n`` noisy copies ``x_m = x + N(0, sigma^2)`` with ``sigma = std * (max(x) - min(x))``
    (``std`` is relative to each image's value range, SmoothGrad's noise level), the paper averages
    the first, second and third derivatives of the exponential score ``Y = exp(S)`` with respect to
    the target layer. For a piecewise-linear network ``d^pY/dA^p = exp(S) * g^p`` with
    ``g = dS/dA``, so

    * ``D^p = sum_m c_m * g_m^p`` for ``p = 1, 2, 3``, with ``c_m = softmax_m(S_m)``: the paper's
      ``(1/n) sum_m exp(S_m) g_m^p`` up to one positive factor per image, which cancels in
      ``alpha`` and only rescales every ``w_k`` alike (and avoids ``exp`` overflow);
    * ``alpha_ij = D^2_ij / (2 D^2_ij + sum_ab A_ab * D^3_ij)``, computed as
      ``1 / (2 + sum_ab A_ab * D^3_ij / D^2_ij)``; 0 where ``D^1 <= 0``, ``D^2 = 0`` or the
      denominator is 0;
    * ``w_k = sum_ij alpha_ij * ReLU(D^1_ij)`` and ``map = ReLU(sum_k w_k * A_k)`` with ``A`` the
      activations of the clean input.

    With ``std=0`` and ``num_samples=1`` this is exactly :class:`GradCAMPlusPlus`.

    Where camlens follows the paper rather than a peer: the paper prints ``D^1`` in the numerator
    of ``alpha``, which would not reduce to Grad-CAM++ (its eq. 10 has the second derivative);
    camlens uses ``D^2`` like torchcam. torchcam 0.5.0 averages plain ``g^p`` (no ``exp(S_m)``
    weight per sample), takes ``std`` as an absolute standard deviation (default 0.3), weights
    with ``ReLU`` of the last sample's gradient instead of ``ReLU(D^1)`` and adds 1e-8 to the
    denominator.

    Cost and memory: one pass on the clean batch (activations, targets), then ``N * num_samples``
    noisy images run as forward + backward (to the target layer only) in chunks of
    ``batch_size``; a chunk's noisy inputs exist only while it runs. The
    noise is drawn per sample, shared by every image of the batch (scaled to each image's range),
    so an image gets the same noise alone or in a batch.

    Args:
        num_samples: noisy copies per image (default 8).
        std: noise standard deviation relative to the image's ``max - min`` (default 0.15,
            SmoothGrad's 10-20 %).
        generator: a ``torch.Generator`` to draw the noise from (advanced by every call).
        seed: seed of a fresh generator for every call (reproducible calls). Neither given: seed 0.

    Example::

        cam = SmoothGradCAMpp(model, "layer4", num_samples=16, std=0.15, batch_size=16)
        maps = cam(input_tensor=x, target_category=281)
    """

    paper = "Omeiza et al., Smooth Grad-CAM++: An Enhanced Inference Level Visualization Technique for Deep CNN Models, 2019"
    summary = "Grad-CAM++ weights from derivatives averaged over noisy copies of the input"
    formula = r"g_m = \frac{\partial S(x + \epsilon_m)}{\partial A},\ \epsilon_m \sim \mathcal{N}(0, \sigma^2),\quad D^{(p)} = \sum_m \operatorname{softmax}_m(S_m)\, g_m^{\,p},\quad \alpha^k_{ij} = \frac{D^{(2)}_{k,ij}}{2 D^{(2)}_{k,ij} + \sum_{ab} A^k_{ab} D^{(3)}_{k,ij}},\quad w_k = \sum_{ij} \alpha^k_{ij}\operatorname{ReLU}\big(D^{(1)}_{k,ij}\big),\quad L^c = \operatorname{ReLU}\Big(\sum_k w_k A^k\Big)"
    cost = "one forward pass on the clean batch, then one forward pass plus one backward pass to the target layer per noisy copy; num_samples x N noisy images, run in chunks of batch_size"
    multi_pass: ClassVar[bool] = True

    def __init__(
        self,
        model: torch.nn.Module,
        target_layers: Any = None,
        use_cuda: bool | None = None,
        reshape_transform: Any = None,
        *,
        num_samples: int = 8,
        std: float = 0.15,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, target_layers, use_cuda, reshape_transform, **kwargs)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ArgumentError(f"num_samples must be a positive int; got {num_samples!r}")
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not std >= 0:
            raise ArgumentError(f"std must be a number >= 0 (relative to the input's range); got {std!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InputTypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        if generator is not None and seed is not None:
            raise ArgumentError("pass either generator or seed, not both")
        self.num_samples = num_samples
        self.std = float(std)
        self.generator = generator
        self.seed = seed
        self._moments: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None

    # ------------------------------------------------------------------ noise
    def _noise_generator(self) -> torch.Generator:
        if self.generator is not None:
            return self.generator
        return torch.Generator().manual_seed(0 if self.seed is None else int(self.seed))

    def noisy_moments(self, ctx: LayerContext) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(D1, D2, D3)`` of every target layer, each ``(N, C, h, w)``, from the noisy copies."""
        x = ctx.input_tensor
        n = x.shape[0]
        wide = torch.float32 if x.device.type == "mps" else torch.float64
        flat = x.detach().flatten(1)
        sigma = (self.std * (flat.amax(dim=1) - flat.amin(dim=1))).view(n, *([1] * (x.dim() - 1)))
        gen = self._noise_generator()
        rows = n * self.num_samples  # row r: sample r // n of image r % n
        bs = max(1, int(self.batch_size))
        starts = range(0, rows, bs)
        sums: list[list[torch.Tensor]] = []
        z = torch.zeros(n, dtype=wide, device=x.device)  # sum_m exp(S_m - m_i) per image
        top = torch.full((n,), float("-inf"), dtype=wide, device=x.device)  # running max score per image
        noise: dict[int, torch.Tensor] = {}  # the noise of the samples the current chunk uses
        drawn = 0  # samples are drawn in order, so the noise does not depend on batch_size
        for start in progress_bar(starts, total=len(starts), enabled=self.progress, desc="SmoothGrad-CAM++"):
            r = torch.arange(start, min(start + bs, rows), device=x.device)
            sample, img = r // n, r % n
            first, last = start // n, (start + len(r) - 1) // n
            for s in [s for s in noise if s < first]:
                del noise[s]
            while drawn <= last:
                noise[drawn] = torch.randn(x.shape[1:], generator=gen, device=gen.device).to(x.device, x.dtype)
                drawn += 1
            eps = torch.stack([noise[s] for s in sample.tolist()])
            noisy = x[img] + sigma[img] * eps
            del eps
            cap = self.engine.run(noisy, [ctx.targets[i] for i in img.tolist()], need_gradients=True)
            del noisy
            scores = cap.scores.to(wide)
            grads = [self._to_maps(g, name, "gradients").to(wide) for g, (name, _) in zip(cap.gradients, self.layers)]
            if not sums:
                sums = [[torch.zeros((n, *g.shape[1:]), dtype=wide, device=g.device) for _ in range(3)] for g in grads]
            # Online softmax over samples: rescale earlier sums when an image's max score grows.
            chunk_top = torch.full_like(top, float("-inf")).scatter_reduce(0, img, scores, "amax")
            new_top = torch.maximum(top, chunk_top)
            rescale = torch.where(top == new_top, torch.ones_like(top), torch.exp(top - new_top))
            weight = torch.exp(scores - new_top[img])
            z = z * rescale + torch.zeros_like(z).index_add_(0, img, weight)
            for g, acc in zip(grads, sums):
                shape = (n, *([1] * (g.dim() - 1)))
                w = weight.view(-1, *([1] * (g.dim() - 1)))
                for p, a in enumerate(acc, start=1):
                    a.mul_(rescale.view(shape)).index_add_(0, img, w * g**p)
            top = new_top
            del cap, grads
        norm = z.view(n, 1, 1, 1)
        return [(a1 / norm, a2 / norm, a3 / norm) for a1, a2, a3 in sums]

    # ------------------------------------------------------------------ weights
    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        # All layers' derivatives come from the same noisy passes: computed at the first layer,
        # handed to the others, dropped after the last.
        index = ctx.index
        if index == 0 or self._moments is None:
            self._moments = self.noisy_moments(ctx)
        try:
            d1, d2, d3 = self._moments[index]
        finally:
            if index == len(self.layers) - 1:
                self._moments = None
        a_sum = ctx.activations.to(d2.dtype).sum(dim=(2, 3), keepdim=True)
        nonzero = d2 > 0
        ratio = torch.where(nonzero, d3 / torch.where(nonzero, d2, torch.ones_like(d2)), torch.zeros_like(d2))
        denom = 2 + a_sum * ratio
        keep = (d1 > 0) & nonzero & (denom != 0)
        alpha = torch.where(keep, 1 / torch.where(keep, denom, torch.ones_like(denom)), torch.zeros_like(denom))
        return (alpha * d1.clamp_min(0)).sum(dim=(2, 3), keepdim=True).to(ctx.activations.dtype)
