"""SESS: Saliency Enhancing with Scaling and Sliding (Tursun et al., ECCV 2022, arXiv:2207.01769)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from .. import postprocess as pp
from ..errors import ArgumentError, InputTypeError
from ..hooks import eval_mode
from ..progress import progress_bar
from ..registry import get_method, register
from ..targets import ClassifierOutputSoftmaxTarget, TargetFn, score_targets
from .base import BaseCAM, Explanation, LayerContext

__all__ = ["SESS"]


def window_starts(length: int, window: int, step: int) -> list[int]:
    """Window offsets along one axis: every ``step``, plus a last window flush with the border."""
    last = max(length - window, 0)
    return [*range(0, last, step), last]


def _resize_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """``(n_out, n_in)``: 1-D bilinear resizing (half-pixel centres, no antialias) as a matrix."""
    eye = torch.eye(n_in, dtype=like.dtype, device=like.device)[None]
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0].T


def gaussian_blur(maps: torch.Tensor, kernel: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """``(N, H, W)`` blurred by a normalised ``kernel x kernel`` Gaussian, reflected borders
    (OpenCV's ``GaussianBlur`` with ``BORDER_REFLECT_101``). The kernel shrinks for maps smaller than it."""
    kernel = min(kernel, 2 * min(maps.shape[-2:]) - 1)
    if kernel < 3:
        return maps
    r = kernel // 2
    t = torch.arange(kernel, dtype=maps.dtype, device=maps.device) - r
    g = torch.exp(-(t * t) / (2 * sigma * sigma))
    g = g / g.sum()
    out = F.pad(maps[:, None], (r, r, r, r), mode="reflect")
    out = F.conv2d(out, g.view(1, 1, 1, -1))
    out = F.conv2d(out, g.view(1, 1, -1, 1))
    return out[:, 0]


@register("sess")
class SESS(BaseCAM):
    """SESS: a base CAM method run on many windows of the image at many scales, fused back.

    For each image (all steps run on the model's device, in chunks of ``batch_size`` windows):

    1. **scaling**: the image is resized so that its shorter side is each of ``scales`` (default
       ``num_scales = 12`` sizes ``w + round(2/7 * w) * i``: 224, 288, ..., 928 for ``w = 224``, the
       paper's);
    2. **sliding**: square windows of ``window_size`` ``w`` (default the input's shorter side) every
       ``step_size`` (default ``w``), the last one flush with the border;
    3. **window scores**: ``s = target(softmax(f(window)))`` (raw target scores with
       ``score_softmax=False`` or for outputs without a class axis), clipped at 0;
    4. **pre-filtering**: the ``pre_filter_ratio`` share of windows with the lowest scores is dropped
       (default 0: every window is kept);
    5. **saliency extraction**: the base method's map of each kept window (batched), in ``[0, 1]``;
    6. **calibration** (channel-wise weight): each map times ``s / max_windows(s)`` (1 if every
       score is 0);
    7. **fusion**: each weighted map is pasted into a zero canvas of its scale and resized
       (bilinear) to the input's size; per pixel, the mean of the values above ``theta`` (spatial
       weighted average, default ``theta = 0``), or their maximum with ``pool="max"``;
    8. **smoothing**: an 11x11 Gaussian with sigma 5 (``smooth=False`` turns it off); then min-max
       normalisation.

    Defaults follow the paper and its authors' code. pytorch-grad-cam 1.5.7's ``SESS`` computes the
    same steps image by image; camlens batches windows of all images and pastes each window's map
    through the two 1-D resizing matrices instead of resizing a full canvas (the same numbers).

    ``explain`` returns ``layer_maps = [fused map before normalisation]`` at the *input's*
    resolution (a window's layer maps do not line up with the image's layer). ``aug_smooth`` and
    ``eigen_smooth`` are passed to the base method for every window. Cost: one forward per window
    plus the base method on each kept window.

    Args:
        base_method: a registered method name or class (default ``"gradcam"``).
        base_options: extra constructor arguments of the base method.
        scales: the shorter-side sizes (step 1; default from ``num_scales`` and ``scale_step_ratio``).
        num_scales: number of scales when ``scales`` is not given (step 1).
        scale_step_ratio: size step between scales, relative to the window (step 1).
        window_size: side of the square windows (step 2).
        step_size: stride of the windows (step 2).
        pre_filter_ratio: share of lowest-scoring windows dropped (step 4).
        theta: values at or below it are left out of the fusion (step 7).
        pool: ``"mean"`` or ``"max"`` fusion (step 7).
        smooth: the Gaussian smoothing of step 8.
        score_softmax: window scores from the softmax of the outputs (step 3).

    Example::

        sess = SESS(model, "layer4", base_method="gradcam", batch_size=64)
        maps = sess(input_tensor=x, target_category=281)
    """

    paper = "Tursun et al., SESS: Saliency Enhancing with Scaling and Sliding, ECCV 2022"
    summary = "base CAM on multi-scale sliding windows, score-weighted and fused (meta-method)"
    formula = r"s_w = \max\Big(0, \operatorname{softmax}\big(f(x_w)\big)_c\Big),\quad \hat L_w = \frac{s_w}{\max_{v} s_v}\,\operatorname{CAM}(x_w),\qquad L^c = \operatorname{minmax}\Bigg(G * \frac{\sum_w \hat L_w\, \mathbf{1}[\hat L_w > \theta]}{\sum_w \mathbf{1}[\hat L_w > \theta]}\Bigg)"
    cost = "one forward pass per window of every scale, plus the base method on every kept window (Grad-CAM: one forward and one backward pass each); 122 windows per square image with the default 12 scales, run in chunks of batch_size"
    uses_gradients: ClassVar[bool] = True  # with the default base method (GradCAM)
    multi_pass: ClassVar[bool] = True

    def __init__(
        self,
        model: torch.nn.Module,
        target_layers: Any = None,
        use_cuda: bool | None = None,
        reshape_transform: Any = None,
        *,
        base_method: str | type[BaseCAM] = "gradcam",
        base_options: Mapping[str, Any] | None = None,
        scales: Sequence[int] | None = None,
        num_scales: int = 12,
        scale_step_ratio: float = 2.0 / 7.0,
        window_size: int | None = None,
        step_size: int | None = None,
        pre_filter_ratio: float = 0.0,
        theta: float = 0.0,
        pool: str = "mean",
        smooth: bool = True,
        score_softmax: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, target_layers, use_cuda, reshape_transform, **kwargs)
        cls = get_method(base_method) if isinstance(base_method, str) else base_method
        if not (isinstance(cls, type) and issubclass(cls, BaseCAM)):
            raise InputTypeError(f"base_method must be a registered method name or a CAM class; got {base_method!r}")
        if issubclass(cls, SESS):
            raise ArgumentError("base_method cannot be SESS itself; pass the method SESS should enhance, e.g. 'gradcam'")
        if pool not in ("mean", "max"):
            raise ArgumentError(f"pool must be 'mean' or 'max'; got {pool!r}")
        if not 0.0 <= pre_filter_ratio < 1.0:
            raise ArgumentError(f"pre_filter_ratio must be in [0, 1) (the share of windows dropped); got {pre_filter_ratio!r}")
        for name, value in (("num_scales", num_scales), ("window_size", window_size), ("step_size", step_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ArgumentError(f"{name} must be a positive int; got {value!r}")
        if scales is not None and (len(scales) == 0 or any(not isinstance(s, int) or s < 1 for s in scales)):
            raise ArgumentError(f"scales must be a non-empty list of positive ints (shorter-side sizes); got {scales!r}")
        self.base = cls(
            model,
            target_layers=self.target_layers,
            reshape_transform=self.reshape_transform,
            output_adapter=self.output_adapter,
            batch_size=self.batch_size,
            combine=self.combine,
            progress=False,
            **dict(base_options or {}),
        )
        self.scales = list(scales) if scales is not None else None
        self.num_scales = num_scales
        self.scale_step_ratio = scale_step_ratio
        self.window_size = window_size
        self.step_size = step_size
        self.pre_filter_ratio = pre_filter_ratio
        self.theta = theta
        self.pool = pool
        self.smooth = smooth
        self.score_softmax = score_softmax

    # ------------------------------------------------------------------ geometry
    def scale_sizes(self, window: int) -> list[int]:
        """The shorter-side sizes the image is resized to."""
        if self.scales is not None:
            sizes = self.scales
        else:
            step = round(window * self.scale_step_ratio)
            sizes = [window + step * i for i in range(self.num_scales)]
        small = [s for s in sizes if s < window]
        if small:
            raise ArgumentError(f"every scale must be at least the window size {window}; got {small}")
        return sizes

    def windows(self, height: int, width: int) -> tuple[int, list[tuple[int, int]], list[tuple[int, int, int]]]:
        """``(window, sizes (h, w) per scale, windows (scale index, y0, x0))`` for an input of this size."""
        window = self.window_size or min(height, width)
        step = self.step_size or window
        sizes, wins = [], []
        for si, s in enumerate(self.scale_sizes(window)):
            h, w = (s, int(s * width / height)) if height <= width else (int(s * height / width), s)
            sizes.append((h, w))
            wins += [(si, y, x) for y in window_starts(h, window, step) for x in window_starts(w, window, step)]
        return window, sizes, wins

    # ------------------------------------------------------------------ scoring
    def window_scores(self, targets: Sequence[TargetFn], outputs: torch.Tensor) -> torch.Tensor:
        """``(B,)`` scores of windows: the target on softmax(outputs) for class outputs, clipped at 0."""
        if self.score_softmax and outputs.dim() == 2:
            probs = torch.softmax(outputs.float(), dim=1)
            own = torch.tensor([isinstance(t, ClassifierOutputSoftmaxTarget) for t in targets], device=outputs.device)
            scores = torch.where(own, score_targets(targets, outputs).float(), score_targets(targets, probs).float())
        else:
            scores = score_targets(targets, outputs).float()
        return scores.clamp_min(0)

    # ------------------------------------------------------------------ the call
    def explain(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[TargetFn] | None = None,
        *,
        target_category: int | Sequence[int] | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> Explanation:
        if targets is not None and target_category is not None:
            raise ArgumentError("pass either targets or target_category, not both")
        x = self.engine.prepare_input(input_tensor)
        n, _, height, width = x.shape
        window, sizes, wins = self.windows(height, width)
        with eval_mode(self.model), torch.inference_mode(False):
            cap = self.engine.run(x, targets, target_category=target_category, need_gradients=False)
            resolved = cap.targets
            # Rows (image, window), image-major so that each resized image is made once per pass.
            rows = [(i, *win) for i in range(n) for win in wins]
            scores = torch.cat([
                self.window_scores([resolved[r[0]] for r in chunk], self.engine.forward_outputs(self._crop(x, chunk, sizes, window)))
                for chunk in self._chunks(rows, "SESS window scores")
            ])
            kept, weights = self._pre_filter(scores.view(n, len(wins)))
            total = torch.zeros(n, height, width, dtype=torch.float32, device=x.device)
            count = torch.zeros_like(total)
            mats = [(_resize_matrix(h, height, total), _resize_matrix(w, width, total)) for h, w in sizes]
            chosen = [rows[i * len(wins) + j] for i, j in kept.tolist()]
            for start, chunk in self._chunks(chosen, f"SESS {self.base.name}", with_start=True):
                img = torch.tensor([r[0] for r in chunk], device=x.device)
                maps = self.base.explain(
                    self._crop(x, chunk, sizes, window), [resolved[r[0]] for r in chunk],
                    aug_smooth=aug_smooth, eigen_smooth=eigen_smooth,
                ).cam
                maps = maps * weights[start : start + len(chunk), None, None]
                ry = torch.stack([mats[si][0][:, y : y + window] for _, si, y, _ in chunk])  # (B, H, w)
                rx = torch.stack([mats[si][1][:, x0 : x0 + window] for _, si, _, x0 in chunk])  # (B, W, w)
                pasted = ry @ maps @ rx.transpose(1, 2)  # zero canvas with the map, resized to (H, W)
                if self.pool == "max":
                    for i in img.unique().tolist():
                        total[i] = torch.maximum(total[i], pasted[img == i].amax(dim=0))
                else:
                    above = pasted > self.theta
                    total.index_add_(0, img, torch.where(above, pasted, torch.zeros_like(pasted)))
                    count.index_add_(0, img, above.float())
            fused = total if self.pool == "max" else torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))
            if self.smooth:
                fused = gaussian_blur(fused)
        return Explanation(pp.minmax_normalize(fused), [fused], cap.scores, resolved, self.target_layer_names)

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:  # pragma: no cover - explain is overridden
        raise NotImplementedError("SESS builds its map in explain()")

    # ------------------------------------------------------------------ helpers
    def _chunks(self, rows: list, desc: str, with_start: bool = False):  # type: ignore[no-untyped-def]
        bs = max(1, int(self.batch_size))
        starts = range(0, len(rows), bs)
        for start in progress_bar(starts, total=len(starts), enabled=self.progress, desc=desc):
            yield (start, rows[start : start + bs]) if with_start else rows[start : start + bs]

    @staticmethod
    def _crop(x: torch.Tensor, rows: list, sizes: list[tuple[int, int]], window: int) -> torch.Tensor:
        """The windows of ``rows`` ``(image, scale, y0, x0)`` as a batch; one resized image at a time."""
        key, scaled, out = None, None, []
        for i, si, y, x0 in rows:
            if key != (i, si):
                key = (i, si)
                h, w = sizes[si]
                scaled = x[i : i + 1] if (h, w) == tuple(x.shape[-2:]) else F.interpolate(
                    x[i : i + 1], size=(h, w), mode="bilinear", align_corners=False, antialias=True
                )
            out.append(scaled[..., y : y + window, x0 : x0 + window])
        return torch.cat(out)

    def _pre_filter(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(kept (K, 2) rows of (image, window), weights (K,))``: each image's top windows, in window
        order, and their calibrated weights ``s / max(s)``."""
        p = scores.shape[1]
        keep = p - int(p * self.pre_filter_ratio)
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :keep]
        mask = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, order, True)
        top = scores.amax(dim=1, keepdim=True)
        weights = torch.where(top > 0, scores / torch.where(top > 0, top, torch.ones_like(top)), torch.ones_like(scores))
        kept = mask.nonzero()
        return kept, weights[mask]
