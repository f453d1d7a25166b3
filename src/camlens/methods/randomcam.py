"""RandomCAM: random channel weights, a sanity-check baseline."""

from __future__ import annotations

import torch

from .. import postprocess as pp
from ..errors import ArgumentError, InputTypeError
from ..registry import register
from .base import ActivationCAM, LayerContext


@register("randomcam", "random-cam", "random")
class RandomCAM(ActivationCAM):
    """RandomCAM: ``map = sum_k w_k * A_k`` with ``w_k ~ U(-1, 1)``, independent of image and class.

    What it is for: a *baseline* that any real explanation must beat. A faithfulness or
    localisation metric that scores RandomCAM about as well as Grad-CAM does not measure
    explanation quality; a method that does no better than RandomCAM explains nothing (cf. the
    sanity checks of Adebayo et al., NeurIPS 2018). It keeps the structure of the activations
    (so it is not uniform noise) but throws away everything the model says about the target.

    Reproducible: with ``seed`` (default 0) every call draws the same weights (layer ``i`` of the
    target layers uses the seed ``seed + i``); one weight vector is shared by all images of a call,
    so a batch gives the same maps as its images one by one. Pass ``generator=`` (a CPU
    ``torch.Generator``) instead to draw fresh weights on every call from your own stream, like
    pytorch-grad-cam's ``RandomCAM`` (which draws from numpy's global state and per image, and
    runs a backward pass it does not use; camlens needs no gradients).

    Example::

        maps = RandomCAM(model, "layer4", seed=3)(input_tensor=x)
    """

    paper = "sanity-check baseline (random channel weights), as in pytorch-grad-cam"
    summary = "random channel weights in [-1, 1] (baseline for metrics; reproducible with seed)"
    formula = r"w_k \sim \mathcal{U}(-1, 1),\qquad L = \sum_k w_k A^k"
    cost = "one forward pass without gradients; no backward pass"

    def __init__(
        self, *args: object, seed: int = 0, generator: torch.Generator | None = None, **kwargs: object
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InputTypeError(f"RandomCAM seed must be an int; got {type(seed).__name__}")
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise InputTypeError(f"RandomCAM generator must be a torch.Generator; got {type(generator).__name__}")
            if generator.device.type != "cpu":
                raise ArgumentError(
                    f"RandomCAM generator must be a CPU torch.Generator (weights are drawn on the CPU and moved "
                    f"to the model's device, so CPU and GPU runs agree); got one on {generator.device}"
                )
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.seed = seed
        self.generator = generator

    def channel_weights(self, channels: int, layer_index: int) -> torch.Tensor:
        """The ``(C,)`` weights, uniform in ``[-1, 1)``, for target layer ``layer_index``."""
        gen = self.generator
        if gen is None:
            gen = torch.Generator().manual_seed(self.seed + layer_index)
        return torch.rand(channels, generator=gen, dtype=torch.float64).mul_(2).sub_(1).float()

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        acts = ctx.activations
        w = self.channel_weights(acts.shape[1], ctx.index).to(acts.device).view(1, -1, 1, 1)
        weighted = w * acts
        if eigen_smooth:
            return pp.eigen_projection(weighted)
        return weighted.sum(dim=1)
