"""Turn transformer layer outputs into ``(N, C, h, w)`` maps for CAM methods.

A ``reshape_transform`` is applied by the CAM base class to a layer's activations *and* its
gradients, so the same callable must work on both (they have the same shape).

* :class:`TokenReshape` -- ViT/DeiT token sequences ``(N, T, C)``: drops the prefix tokens
  (class token, distillation token, register tokens) and lays the remaining patch tokens out on
  an ``h x w`` grid. The grid and the prefix count come from the arguments, from a model
  (:meth:`TokenReshape.from_model`) or, when neither is known, from the token count (square grid).
* :func:`vit_reshape_transform` -- a ready function ``tensor -> tensor`` (drop-in for the
  ``reshape_transform(tensor, height, width)`` functions users write for other CAM libraries).
* :func:`swin_reshape_transform` / :class:`ChannelsLast` -- channels-last grids ``(N, h, w, C)``
  (torchvision and timm Swin stages) become ``(N, C, h, w)``; token sequences are gridded too.
* :func:`raw_channel_axis` -- the inverse question: where channel ``k`` of the reshaped map lives
  in the layer's raw output (AblationCAM ablates it there); :func:`pyramid_channel_sources` the
  same for a feature pyramid (which level, which channel).
* :class:`FPNReshape` / :class:`FPNLevel` -- feature pyramids (a mapping ``level -> (N, C, h, w)``,
  the output of torchvision detectors' ``backbone``): all levels resized to one grid and stacked
  along the channel axis, or one chosen level.

Example::

    from camlens import GradCAM
    from camlens.reshape import TokenReshape

    cam = GradCAM(vit, "blocks[-1].norm1", reshape_transform=TokenReshape.from_model(vit))
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Optional, Union

import torch
from torch import nn

from .errors import InputTypeError, LayerOutputError, ReshapeError

__all__ = [
    "TokenReshape",
    "ChannelsLast",
    "vit_reshape_transform",
    "swin_reshape_transform",
    "model_token_layout",
    "model_patch_size",
    "explaining_input",
    "raw_channel_axis",
    "FPNReshape",
    "FPNLevel",
    "fasterrcnn_reshape_transform",
    "pyramid_channel_sources",
]

Grid = tuple[int, int]
GridLike = Union[int, Sequence[int], None]

# Prefix counts tried, in this order, when neither the caller nor the model says how many
# non-patch tokens lead the sequence: a class token (ViT), none (pooled token models),
# class + distillation (DeiT-distilled), class + 4 registers (ViT-reg4).
_PREFIX_GUESSES = (1, 0, 2, 5)
# At most this many leading non-patch tokens are taken for a prefix when the count is derived from a
# grid (a handful of class / distillation / register tokens), so a wrong grid is not read as a prefix.
_MAX_PREFIX = 16


def _as_grid(grid: GridLike, what: str = "grid") -> Grid | None:
    if grid is None:
        return None
    if isinstance(grid, bool):
        raise InputTypeError(f"{what} must be an int or a pair (h, w); got {grid!r}")
    if isinstance(grid, int):
        pair: tuple[int, ...] = (grid, grid)
    elif isinstance(grid, (torch.Size, tuple, list)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in grid
    ):
        pair = tuple(grid)
    else:
        raise InputTypeError(f"{what} must be an int or a pair (h, w); got {type(grid).__name__}")
    if len(pair) != 2 or min(pair) < 1:
        raise ReshapeError(f"{what} must be a pair of positive ints (h, w); got {grid!r}")
    return pair[0], pair[1]


def _square_side(n: int) -> int | None:
    if n <= 0:
        return None
    side = math.isqrt(n)
    return side if side * side == n else None


def _fmt_expected(prefix: int, grid: Grid) -> str:
    h, w = grid
    return f"{prefix} + {h}x{w} = {prefix + h * w}" if prefix else f"{h}x{w} = {h * w}"


def _check_tokens(x: torch.Tensor, who: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise InputTypeError(f"{who} expects a tensor; got {type(x).__name__}")
    if x.dim() != 3:
        hint = (
            "; this looks like a (N, C, h, w) map already: use no reshape_transform"
            if x.dim() == 4
            else ""
        )
        raise ReshapeError(f"{who} expects tokens of shape (N, tokens, C); got shape {tuple(x.shape)}{hint}")


class TokenReshape:
    """Token sequence ``(N, T, C)`` -> ``(N, C, h, w)``, dropping ``num_prefix_tokens`` leading tokens.

    Args:
        grid: patch grid ``(h, w)`` (or one int for a square grid). ``None``: inferred as the
            square grid left after the prefix tokens (an error if the count is not square).
        num_prefix_tokens: leading non-patch tokens (class 1; DeiT-distilled 2; ViT with 4
            registers 5; pooled models without class token 0). ``None``: ``T - h*w`` when the
            grid is known, else the first of 1, 0, 2, 5 that leaves a square number of patches.
        strict: when ``False`` (used for grids read from a model), a token count that does not
            match ``grid`` falls back to the input's grid (see ``stride``) or a square grid instead
            of raising (models run at a different image size than they were built for).
        stride: pixels per token ``(h, w)`` (a ViT's patch size). With it, a sequence that does not
            fit ``grid`` is laid out on the grid of the input being explained, divided by the
            stride: non-square inputs and other sizes work (:meth:`from_model` sets it).

    Patch tokens are in row-major order (as every ViT patch embedding produces them).
    A wrong grid raises :class:`~camlens.errors.ReshapeError`, e.g.
    ``ViT reshape expected 1 + 14x14 = 197 tokens, got 50; pass grid=(7, 7)``.
    """

    def __init__(
        self,
        grid: GridLike = None,
        num_prefix_tokens: Optional[int] = None,
        *,
        strict: bool = True,
        stride: GridLike = None,
    ) -> None:
        self.grid = _as_grid(grid)
        if num_prefix_tokens is not None and (isinstance(num_prefix_tokens, bool) or int(num_prefix_tokens) < 0):
            raise ReshapeError(f"num_prefix_tokens must be a non-negative int; got {num_prefix_tokens!r}")
        self.num_prefix_tokens = None if num_prefix_tokens is None else int(num_prefix_tokens)
        self.strict = strict
        self.stride = _as_grid(stride, "stride")

    @classmethod
    def from_model(cls, model: nn.Module) -> "TokenReshape":
        """The reshape for a ViT-style ``model`` (timm ``VisionTransformer`` and relatives, DeiT,
        torchvision ``VisionTransformer``, HuggingFace ``ViTModel``/``DeiTModel``/``BeitModel``/
        ``Dinov2Model``): grid and prefix count read from the model."""
        layout = model_token_layout(model)
        if layout is None:
            raise ReshapeError(
                f"cannot read a token layout from {type(model).__name__}: expected a timm ViT "
                "(patch_embed.grid_size, num_prefix_tokens), a torchvision ViT (image_size, patch_size) or a "
                "HuggingFace ViT (config.image_size, config.patch_size, embeddings); "
                "build TokenReshape(grid=(h, w), num_prefix_tokens=k) yourself"
            )
        grid, prefix = layout
        return cls(grid, prefix, strict=False, stride=model_patch_size(model))

    # ------------------------------------------------------------------ resolution
    def layout(self, num_tokens: int) -> tuple[int, Grid]:
        """``(num_prefix_tokens, (h, w))`` used for a sequence of ``num_tokens`` tokens."""
        prefix, grid = self.num_prefix_tokens, self.grid
        if grid is not None:
            expected_prefix = 1 if prefix is None else prefix
            if prefix is None:
                prefix = num_tokens - grid[0] * grid[1]
                if 0 <= prefix <= _MAX_PREFIX:
                    return prefix, grid
            elif num_tokens == prefix + grid[0] * grid[1]:
                return prefix, grid
            if not self.strict:
                inferred = self._from_input(num_tokens, self.num_prefix_tokens) or self._infer(
                    num_tokens, self.num_prefix_tokens
                )
                if inferred is not None:
                    return inferred
            raise ReshapeError(self._mismatch(num_tokens, expected_prefix, grid))
        inferred = self._from_input(num_tokens, prefix) or self._infer(num_tokens, prefix)
        if inferred is None:
            raise ReshapeError(self._mismatch(num_tokens, 1 if prefix is None else prefix, None))
        return inferred

    def _from_input(self, num_tokens: int, prefix: int | None) -> tuple[int, Grid] | None:
        """The grid of the input being explained (:func:`explaining_input`) divided by ``stride``
        (rounded down as a strided patch embedding does, or up as models that pad do), when it
        accounts for the tokens: inputs of another size or aspect ratio than the model was built for."""
        size = _INPUT_SPATIAL.get()
        if self.stride is None or size is None or len(size) != 2:
            return None
        (sh, sw), (height, width) = self.stride, size
        for h, w in ((height // sh, width // sw), (-(-height // sh), -(-width // sw))):
            p = num_tokens - h * w if prefix is None else prefix
            if h > 0 and w > 0 and 0 <= p <= _MAX_PREFIX and p + h * w == num_tokens:
                return p, (h, w)
        return None

    @staticmethod
    def _infer(num_tokens: int, prefix: int | None) -> tuple[int, Grid] | None:
        for p in (prefix,) if prefix is not None else _PREFIX_GUESSES:
            side = _square_side(num_tokens - p)
            if side is not None:
                return p, (side, side)
        return None

    @staticmethod
    def _mismatch(num_tokens: int, prefix: int, grid: Grid | None) -> str:
        if grid is not None:
            head = f"ViT reshape expected {_fmt_expected(prefix, grid)} tokens, got {num_tokens}"
        else:
            head = f"ViT reshape expected {prefix} prefix token(s) + a square number of patch tokens, got {num_tokens}"
        side = _square_side(num_tokens - prefix)
        if side is not None:
            return f"{head}; pass grid=({side}, {side})"
        for p in _PREFIX_GUESSES:
            side = _square_side(num_tokens - p)
            if side is not None and p != prefix:
                return f"{head}; pass grid=({side}, {side}), num_prefix_tokens={p}"
        patches = num_tokens - prefix
        return (
            f"{head}; {num_tokens} - {prefix} = {patches} patch tokens is not a square: pass grid=(h, w) "
            f"with h*w = {patches} (the image height and width divided by the patch size) "
            "and the right num_prefix_tokens"
        )

    # ------------------------------------------------------------------ call
    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        _check_tokens(tensor, "ViT reshape")
        n, t, c = tensor.shape
        prefix, (h, w) = self.layout(t)
        patches = tensor[:, prefix:, :]
        return patches.reshape(n, h, w, c).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        stride = f", stride={self.stride}" if self.stride is not None else ""
        return f"TokenReshape(grid={self.grid}, num_prefix_tokens={self.num_prefix_tokens}{stride})"


class ChannelsLast:
    """Channels-last grid ``(N, h, w, C)`` -> ``(N, C, h, w)`` (Swin stages, channels-last blocks).

    A token sequence ``(N, h*w, C)`` (older Swin implementations) is laid out on ``grid``, or on
    a square grid when ``grid`` is ``None``. With ``channels`` given (the stage's width), a map
    that is already channels-first ``(N, channels, h, w)`` passes through unchanged.
    """

    def __init__(self, grid: GridLike = None, channels: Optional[int] = None) -> None:
        self.grid = _as_grid(grid)
        self.channels = None if channels is None else int(channels)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if not isinstance(tensor, torch.Tensor):
            raise InputTypeError(f"Swin reshape expects a tensor; got {type(tensor).__name__}")
        if tensor.dim() == 4:
            c = self.channels
            if c is not None and tensor.shape[1] == c and tensor.shape[-1] != c:
                return tensor  # already channels-first (some implementations / versions)
            if self.grid is not None and tuple(tensor.shape[1:3]) != self.grid:
                raise ReshapeError(
                    f"Swin reshape expected a channels-last grid (N, {self.grid[0]}, {self.grid[1]}, C), "
                    f"got shape {tuple(tensor.shape)}; pass grid=({tensor.shape[1]}, {tensor.shape[2]}) or grid=None"
                )
            return tensor.permute(0, 3, 1, 2)
        if tensor.dim() == 3:
            n, t, c = tensor.shape
            grid = self.grid
            if grid is None:
                side = _square_side(t)
                if side is None:
                    raise ReshapeError(
                        f"Swin reshape got {t} tokens, which is not a square grid; pass grid=(h, w) with h*w = {t}"
                    )
                grid = (side, side)
            if grid[0] * grid[1] != t:
                side = _square_side(t)
                fix = f"pass grid=({side}, {side})" if side else f"pass grid=(h, w) with h*w = {t}"
                raise ReshapeError(f"Swin reshape expected {grid[0]}x{grid[1]} = {grid[0] * grid[1]} tokens, got {t}; {fix}")
            return tensor.reshape(n, grid[0], grid[1], c).permute(0, 3, 1, 2)
        raise ReshapeError(
            f"Swin reshape expects a channels-last grid (N, h, w, C) or tokens (N, h*w, C); got shape {tuple(tensor.shape)}"
        )

    def __repr__(self) -> str:
        return f"ChannelsLast(grid={self.grid}, channels={self.channels})"


def vit_reshape_transform(
    tensor: torch.Tensor,
    height: Optional[int] = None,
    width: Optional[int] = None,
    num_prefix_tokens: Optional[int] = None,
) -> torch.Tensor:
    """ViT tokens ``(N, T, C)`` -> ``(N, C, height, width)``, dropping the leading prefix tokens.

    Usable directly as ``reshape_transform=vit_reshape_transform``: with no ``height``/``width``
    the grid is the square left after the class token (``T = 1 + h*w``; also tried: 0, 2, 5
    prefix tokens). For non-square grids, use ``functools.partial(vit_reshape_transform,
    height=h, width=w)`` or :class:`TokenReshape`.
    """
    if (height is None) != (width is None):
        raise ReshapeError(f"pass both height and width, or neither; got height={height}, width={width}")
    grid = None if height is None else (int(height), int(width))  # type: ignore[arg-type]
    return TokenReshape(grid, num_prefix_tokens)(tensor)


def swin_reshape_transform(
    tensor: torch.Tensor, height: Optional[int] = None, width: Optional[int] = None
) -> torch.Tensor:
    """Swin stage output ``(N, h, w, C)`` (channels last) -> ``(N, C, h, w)``.

    Token sequences ``(N, h*w, C)`` are laid out on ``(height, width)`` or a square grid.
    Usable directly as ``reshape_transform=swin_reshape_transform``.
    """
    if (height is None) != (width is None):
        raise ReshapeError(f"pass both height and width, or neither; got height={height}, width={width}")
    grid = None if height is None else (int(height), int(width))  # type: ignore[arg-type]
    return ChannelsLast(grid)(tensor)


# ---------------------------------------------------------------------- from a model
def _pair(v: object) -> Grid | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, (tuple, list, torch.Size)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return (int(v[0]), int(v[1]))
    return None


def model_patch_size(model: nn.Module) -> Grid | None:
    """Pixels per patch token ``(h, w)`` of a ViT-style model (timm ``patch_embed.patch_size``,
    torchvision ``patch_size``, HuggingFace ``config.patch_size``), or ``None``."""
    for value in (
        getattr(getattr(model, "patch_embed", None), "patch_size", None),
        getattr(model, "patch_size", None),
        getattr(getattr(model, "config", None), "patch_size", None),
    ):
        patch = _pair(value)
        if patch is not None and min(patch) > 0:
            return patch
    return None


_INPUT_SPATIAL: contextvars.ContextVar[tuple[int, ...] | None] = contextvars.ContextVar("camlens_input", default=None)


@contextlib.contextmanager
def explaining_input(spatial: Sequence[int]) -> Iterator[None]:
    """Within this block, token reshapes built with a ``stride`` know the spatial size of the input
    being explained (the CAM methods set it for each batch), so they lay out the tokens of an input
    whose size or aspect ratio differs from the one the model was built for."""
    token = _INPUT_SPATIAL.set(tuple(int(v) for v in spatial))
    try:
        yield
    finally:
        _INPUT_SPATIAL.reset(token)


def _hf_token_layout(model: nn.Module) -> tuple[Grid, int] | None:
    """A HuggingFace ViT-style model (``ViTModel``, ``DeiTModel``, ``BeitModel``, ``Dinov2Model``,
    ...): the grid is ``config.image_size // config.patch_size``; the prefix tokens are the
    ``embeddings``' class token, distillation token and register tokens (``mask_token`` is not
    prepended to the sequence, so it does not count)."""
    config, embeddings = getattr(model, "config", None), getattr(model, "embeddings", None)
    image_size, patch = _pair(getattr(config, "image_size", None)), _pair(getattr(config, "patch_size", None))
    if image_size is None or patch is None or not isinstance(embeddings, nn.Module) or min(patch) <= 0:
        return None
    prefix = 0
    for name in ("cls_token", "distillation_token", "register_tokens"):
        token = getattr(embeddings, name, None)
        if isinstance(token, torch.Tensor):
            prefix += int(token.shape[1]) if token.dim() == 3 else 1
    return (image_size[0] // patch[0], image_size[1] // patch[1]), prefix


def model_token_layout(model: nn.Module) -> tuple[Grid, int] | None:
    """``((h, w), num_prefix_tokens)`` of a ViT-style model, or ``None`` if it is not one.

    Reads timm's ``patch_embed.grid_size`` and ``num_prefix_tokens`` (class, distillation and
    register tokens), HuggingFace's ``config.image_size // config.patch_size`` with the class,
    distillation and register tokens of its ``embeddings``, or torchvision's
    ``image_size // patch_size`` with its class token.
    """
    patch_embed = getattr(model, "patch_embed", None)
    grid = _pair(getattr(patch_embed, "grid_size", None)) if patch_embed is not None else None
    if grid is not None:
        prefix = getattr(model, "num_prefix_tokens", None)
        if not isinstance(prefix, int):
            prefix = int(getattr(model, "cls_token", None) is not None) + int(getattr(model, "dist_token", None) is not None)
            prefix += int(getattr(model, "num_reg_tokens", 0) or 0)
        return grid, prefix
    hf = _hf_token_layout(model)
    if hf is not None:
        return hf
    image_size = _pair(getattr(model, "image_size", None))
    patch = _pair(getattr(model, "patch_size", None))
    if image_size is not None and patch is not None and hasattr(model, "conv_proj"):
        prefix = 1 if isinstance(getattr(model, "class_token", None), torch.Tensor) else 0
        return (image_size[0] // patch[0], image_size[1] // patch[1]), prefix
    return None


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
        if raw.dim() not in (3, 4, 5):
            raise LayerOutputError(
                f"expected a (N, C, *spatial) layer output with 1-3 spatial axes; got shape {tuple(raw.shape)}"
            )
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
    if not isinstance(mapped, torch.Tensor) or mapped.dim() not in (3, 4, 5) or mapped.shape[1] != num_channels:
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


# ---------------------------------------------------------------------- feature pyramids
def _levels(x: object, who: str) -> "dict[str, torch.Tensor]":
    if not isinstance(x, Mapping) or not x or not all(isinstance(v, torch.Tensor) and v.dim() == 4 for v in x.values()):
        got = type(x).__name__ if not isinstance(x, torch.Tensor) else f"a tensor of shape {tuple(x.shape)}"
        raise ReshapeError(
            f"{who} expects a feature pyramid: a mapping of level name -> (N, C, h, w) tensors (e.g. the output "
            f"of a torchvision detector's 'backbone'); got {got}. For a single tensor drop the reshape_transform"
        )
    return dict(x)


class FPNReshape:
    """Feature pyramid ``{level: (N, C_l, h_l, w_l)}`` -> one ``(N, sum_l C_l, h, w)`` map.

    Each level is resized (bilinear, ``align_corners=False``) to one grid and the levels are
    stacked along the channel axis, so a CAM weighs every channel of every level and the map
    draws on all scales (small objects live in the fine levels, large ones in the coarse).
    Levels may have different channel counts (SSD's VGG extras). Unlike some peers' versions the
    activations are not passed through ``abs()``: the same transform is applied to activations
    and gradients, which keeps Grad-CAM's signs.

    Args:
        size: the grid: ``None`` (default) the first level's (the finest FPN level), ``"coarsest"``
            the smallest level's, a level name for that level's grid, or an ``int`` / ``(h, w)``.
        levels: the level names to use (default: all, in the mapping's order).
        absolute: take ``|level|`` first (pytorch-grad-cam's ``fasterrcnn_reshape_transform`` does,
            with ``size="pool"``); it drops the gradients' signs, so it is off by default.

    Example::

        from camlens.reshape import FPNReshape

        detector = torchvision.models.detection.retinanet_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64, score_thresh=0.0
        )
        cam = GradCAM(detector, "backbone", reshape_transform=FPNReshape())  # what omitting the layer gives
        maps = cam(torch.rand(1, 3, 64, 64))
    """

    def __init__(
        self,
        size: Union[None, str, int, Sequence[int]] = None,
        levels: Optional[Sequence[str]] = None,
        *,
        absolute: bool = False,
    ) -> None:
        if size is not None and not isinstance(size, str):
            grid = _as_grid(size, "FPNReshape's size")
            if grid is None:
                raise InputTypeError(f"FPNReshape's size must be None, a level name, an int or (h, w); got {size!r}")
            size = grid
        self.size = size
        self.levels = None if levels is None else [str(k) for k in levels]
        self.absolute = bool(absolute)

    def __repr__(self) -> str:
        return f"FPNReshape(size={self.size!r}, levels={self.levels!r}, absolute={self.absolute})"

    def selected(self, x: object) -> "dict[str, torch.Tensor]":
        """The levels used, in order."""
        levels = _levels(x, "FPNReshape")
        if self.levels is None:
            return levels
        missing = [k for k in self.levels if k not in levels]
        if missing:
            raise ReshapeError(f"FPNReshape: level(s) {missing} are not in the pyramid; its levels are {list(levels)}")
        return {k: levels[k] for k in self.levels}

    def grid(self, levels: "dict[str, torch.Tensor]") -> Grid:
        if self.size is None:
            return tuple(next(iter(levels.values())).shape[-2:])  # type: ignore[return-value]
        if self.size == "coarsest":
            return tuple(min((v.shape[-2:] for v in levels.values()), key=lambda s: s[0] * s[1]))  # type: ignore[return-value]
        if isinstance(self.size, str):
            if self.size not in levels:
                raise ReshapeError(f"FPNReshape: size={self.size!r} names no level; the levels are {list(levels)}")
            return tuple(levels[self.size].shape[-2:])  # type: ignore[return-value]
        return self.size  # type: ignore[return-value]

    def __call__(self, x: object) -> torch.Tensor:
        levels = self.selected(x)
        h, w = self.grid(levels)
        out = []
        for v in levels.values():
            if self.absolute:
                v = v.abs()
            if tuple(v.shape[-2:]) != (h, w):
                v = torch.nn.functional.interpolate(v, size=(h, w), mode="bilinear", align_corners=False)
            out.append(v)
        return torch.cat(out, dim=1)

    def channel_sources(self, x: object) -> list[tuple[str, int]]:
        """``(level, channel)`` of each channel of the stacked map."""
        return [(k, c) for k, v in self.selected(x).items() for c in range(v.shape[1])]


class FPNLevel:
    """One level of a feature pyramid: ``{level: (N, C, h, w)}`` -> ``x[level]``.

    ``level``: a level name (``"0"`` is the finest FPN level of torchvision detectors, ``"pool"``
    the coarsest) or an ``int`` position in the mapping's order (``-1``: the last).

    Example::

        from camlens.reshape import FPNLevel

        detector = torchvision.models.detection.fcos_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64
        )
        maps = EigenCAM(detector, "backbone", reshape_transform=FPNLevel("0"))(torch.rand(1, 3, 64, 64))
    """

    def __init__(self, level: Union[str, int] = 0) -> None:
        if not isinstance(level, (str, int)) or isinstance(level, bool):
            raise InputTypeError(f"FPNLevel's level must be a level name or an int position; got {level!r}")
        self.level = level

    def __repr__(self) -> str:
        return f"FPNLevel({self.level!r})"

    def key(self, x: object) -> str:
        levels = _levels(x, "FPNLevel")
        if isinstance(self.level, int):
            keys = list(levels)
            if not -len(keys) <= self.level < len(keys):
                raise ReshapeError(f"FPNLevel({self.level}) is out of range for a pyramid with levels {keys}")
            return keys[self.level]
        if self.level not in levels:
            raise ReshapeError(f"FPNLevel({self.level!r}) is not in the pyramid; its levels are {list(levels)}")
        return self.level

    def __call__(self, x: object) -> torch.Tensor:
        return x[self.key(x)]  # type: ignore[index]

    def channel_sources(self, x: object) -> list[tuple[str, int]]:
        key = self.key(x)
        return [(key, c) for c in range(x[key].shape[1])]  # type: ignore[index]


def fasterrcnn_reshape_transform(x: object) -> torch.Tensor:
    """All FPN levels resized to the first level's grid and stacked: ``FPNReshape()(x)``."""
    return FPNReshape()(x)


def pyramid_channel_sources(
    raw: object, num_channels: int, reshape_transform: Callable[[object], torch.Tensor] | None
) -> list[tuple[str, int]]:
    """For a feature-pyramid layer output: ``(level, channel)`` of each of the ``num_channels``
    channels of the reshaped map (AblationCAM ablates that channel of that level). The reshape
    must say it (a ``channel_sources(raw)`` method, as :class:`FPNReshape` and :class:`FPNLevel`)."""
    sources = getattr(reshape_transform, "channel_sources", None)
    if sources is None:
        raise LayerOutputError(
            "the target layer returns a feature pyramid (a mapping of tensors); AblationCAM needs to know which "
            "level and channel each map channel comes from: use reshape_transform=camlens.reshape.FPNReshape() "
            "or FPNLevel(...)"
        )
    found = list(sources(raw))
    if len(found) != num_channels:
        raise LayerOutputError(f"the reshape names {len(found)} channel sources for a map of {num_channels} channels")
    return found
