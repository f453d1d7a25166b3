"""SS-CAM: Smoothed Score-CAM (Wang, Naidu et al., 2020, arXiv:2006.14255)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..errors import ArgumentError
from ..registry import register
from .scorecam import ScoreCAM

__all__ = ["SSCAM"]


@register("sscam", "ss-cam", "smoothscorecam")
class SSCAM(ScoreCAM):
    """SS-CAM: Score-CAM whose channel scores are averaged over noisy copies.

    With ``M_k = minmax(Up(A_k))`` as in Score-CAM and ``delta_i ~ N(0, std^2)`` at input resolution:

    * ``noise="mask"`` (default, the paper's SS-CAM(1), smoothing the feature map):
      ``s_k = 1/N sum_i target(softmax(f(x * (M_k + delta_i))))``;
    * ``noise="input"`` (the paper's SS-CAM(2)): ``s_k = 1/N sum_i target(softmax(f((x + delta_i) * M_k)))``;

    ``w = softmax_k(s)``, ``map = ReLU(sum_k w_k * A_k)``, ``N = num_samples``. Defaults
    ``num_samples=35``, ``std=2.0`` (the paper's sigma; torchcam's defaults). With ``std=0`` or one
    sample of zero noise the result is Score-CAM's exactly. Everything else (targets and softmax,
    ``top_k``, constant channels, ``batch_size``) is as in :class:`~camlens.ScoreCAM`; the
    ``N * C`` noisy inputs per image exist one chunk of ``batch_size`` at a time.

    Reproducibility: the noise of (channel ``k``, sample ``i``) is drawn from a generator seeded
    with ``(seed, k, i)``, so it does not depend on ``batch_size`` or on the other images of the
    batch. ``generator``: an ``int`` seed (the same noise every call), a ``torch.Generator`` (one
    seed drawn from it per layer and call) or ``None`` (drawn from torch's global generator, so
    ``torch.manual_seed`` reproduces a call).

    Example::

        cam = SSCAM(model, "layer4[-1]", num_samples=2, std=0.5, generator=0, top_k=8, batch_size=64)
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)] * len(x))
    """

    paper = "Wang, Naidu et al., SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization, arXiv:2006.14255, 2020"
    summary = "Score-CAM with channel scores averaged over Gaussian noise on the masks (or input)"
    figure_options: ClassVar[dict[str, Any]] = {"num_samples": 2, "top_k": 128}
    formula = r"M_k = \operatorname{minmax}\big(\operatorname{Up}(A^k)\big),\quad s_k = \frac{1}{N}\sum_{i=1}^{N} \operatorname{softmax}\Big(f\big(x \odot (M_k + \delta_i)\big)\Big)_c,\ \delta_i \sim \mathcal{N}(0, \sigma^2),\quad w^c = \operatorname{softmax}_k(s),\quad L^c = \operatorname{ReLU}\Big(\sum_k w^c_k A^k\Big)"
    cost = "one forward pass, then num_samples forward passes of the whole model per (image, channel) pair; num_samples x C noisy masked inputs per image (35 x 1280 at EfficientNet-Lite0's last layer with the defaults), run in chunks of batch_size"
    options: ClassVar[dict[str, Any]] = {
        **ScoreCAM.options, "num_samples": 35, "std": 2.0, "noise": "mask", "generator": None,
    }  # fmt: skip

    def configure(self) -> None:
        super().configure()
        n, std = self.num_samples, self.std
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ArgumentError(f"num_samples must be a positive int; got {n!r}")
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not std >= 0:
            raise ArgumentError(f"std must be a number >= 0 (the noise's standard deviation); got {std!r}")
        if self.noise not in ("mask", "input"):
            raise ArgumentError(f"noise must be 'mask' (SS-CAM(1)) or 'input' (SS-CAM(2)); got {self.noise!r}")
        if self.generator is not None and not isinstance(self.generator, (int, torch.Generator)):
            raise ArgumentError(
                f"generator must be None, an int seed or a torch.Generator; got {type(self.generator).__name__}"
            )

    @staticmethod
    def noise_sample(
        seed: int, channel: int, sample: int, shape: tuple[int, ...], device: torch.device
    ) -> torch.Tensor:
        """Standard normal noise of (channel, sample) for a call with ``seed`` (times ``std`` when used)."""
        key = ((seed % 2**40) * 1_000_003 + channel) * 1_000_003 + sample
        gen = torch.Generator(device=device).manual_seed(key % 2**63)
        return torch.randn(shape, generator=gen, device=device)

    def sample_key(self) -> int:
        """The noise seed of this layer and call."""
        gen = self.generator
        return gen if isinstance(gen, int) else int(torch.randint(2**62, (1,), generator=gen))

    def zero_mask_gives_zero_input(self) -> bool:
        return self.noise == "input" or self.std == 0

    def perturb(
        self, x: torch.Tensor, masks: torch.Tensor, channels: torch.Tensor, samples: torch.Tensor, key: Any
    ) -> torch.Tensor:
        if self.std == 0:
            return super().perturb(x, masks, channels, samples, key)
        shape = tuple(masks.shape[1:]) if self.noise == "mask" else tuple(x.shape[1:])
        rows = zip(channels.tolist(), samples.tolist())
        noise = self.std * torch.stack([self.noise_sample(key, k, i, shape, x.device) for k, i in rows])
        if self.noise == "mask":
            return x * (masks + noise)[:, None].to(x.dtype)
        return (x + noise.to(x.dtype)) * masks[:, None].to(x.dtype)
