"""Image helpers: overlays, pre/de-processing, colour maps. Pillow and matplotlib are imported lazily.

These functions work on numpy arrays (what users display or save); the CAM core never calls them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InputShapeError, InputTypeError

__all__ = [
    "show_cam_on_image",
    "apply_colormap",
    "preprocess_image",
    "deprocess_image",
    "scale_cam_image",
    "load_image",
    "save_image",
    "show_maps",
    "maps_figure",
    "figure_png",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# OpenCV colour-map constants (cv2.COLORMAP_*) -> matplotlib names, for code written for OpenCV.
_OPENCV_COLORMAPS = {
    0: "autumn", 1: "bone", 2: "jet", 3: "winter", 4: "rainbow", 5: "ocean", 6: "summer",
    7: "spring", 8: "cool", 9: "hsv", 10: "pink", 11: "hot", 13: "magma", 14: "inferno",
    15: "plasma", 16: "viridis", 17: "cividis", 18: "twilight", 19: "twilight_shifted", 20: "turbo",
}


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().float().cpu().numpy()
    return np.asarray(a)


def apply_colormap(mask: Any, colormap: Any = "jet") -> np.ndarray:
    """Colour a ``(H, W)`` map in ``[0, 1]`` -> float RGB ``(H, W, 3)`` in ``[0, 1]``.

    ``colormap`` is a matplotlib colour-map name or object, or an OpenCV ``cv2.COLORMAP_*`` int.
    """
    import matplotlib

    mask = _to_numpy(mask).astype(np.float32)
    if mask.ndim != 2:
        raise InputShapeError(f"mask must be a 2-D (H, W) map; got shape {mask.shape}")
    if isinstance(colormap, (int, np.integer)):
        if int(colormap) not in _OPENCV_COLORMAPS:
            raise ValueError(f"OpenCV colour map {colormap} has no matplotlib equivalent; pass a matplotlib name")
        colormap = _OPENCV_COLORMAPS[int(colormap)]
    cmap = matplotlib.colormaps[colormap] if isinstance(colormap, str) else colormap
    # Quantise to 256 levels like an 8-bit lookup table, so results match uint8 colour maps.
    levels = np.clip(np.rint(np.nan_to_num(mask) * 255), 0, 255).astype(np.uint8)
    return cmap(levels)[..., :3].astype(np.float32)


def show_cam_on_image(
    img: np.ndarray,
    mask: np.ndarray,
    use_rgb: bool = False,
    colormap: Any = "jet",
    image_weight: float = 0.5,
) -> np.ndarray:
    """Overlay a CAM on an image; returns uint8 ``(H, W, 3)``.

    Args:
        img: float image ``(H, W, 3)`` in ``[0, 1]`` (RGB if ``use_rgb`` else BGR, as OpenCV loads it).
        mask: CAM ``(H, W)`` in ``[0, 1]`` at the image's resolution.
        use_rgb: return RGB (``True``) or BGR (``False``, the OpenCV convention of older code).
        colormap: matplotlib name/object or OpenCV int; jet by default.
        image_weight: weight of the image in the blend ``image_weight * img + (1 - w) * heatmap``.
    """
    img = _to_numpy(img).astype(np.float32)
    mask = _to_numpy(mask)
    if img.ndim != 3 or img.shape[2] != 3:
        raise InputShapeError(f"img must be (H, W, 3); got shape {img.shape}")
    if mask.shape != img.shape[:2]:
        raise InputShapeError(
            f"mask shape {mask.shape} does not match the image's (H, W) = {img.shape[:2]}; "
            "resize the image or compute the CAM at the image's size"
        )
    if img.max() > 1.0 + 1e-6 or img.min() < -1e-6:
        raise InputTypeError(
            f"img must be float in [0, 1]; got values in [{img.min():.3g}, {img.max():.3g}] "
            "(divide a uint8 image by 255)"
        )
    if not 0.0 <= image_weight <= 1.0:
        raise ValueError(f"image_weight must be in [0, 1]; got {image_weight}")
    heatmap = apply_colormap(mask, colormap)
    if not use_rgb:
        heatmap = heatmap[..., ::-1]
    cam = (1.0 - image_weight) * heatmap + image_weight * img
    peak = cam.max()
    if peak > 0:
        cam = cam / peak
    return np.uint8(np.clip(np.rint(255 * cam), 0, 255))


def preprocess_image(
    img: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Float RGB ``(H, W, 3)`` (or a batch ``(N, H, W, 3)``) in ``[0, 1]`` -> normalised
    ``(x - mean) / std`` tensor ``(1, 3, H, W)`` (or ``(N, 3, H, W)``)."""
    arr = _to_numpy(img).astype(np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[3] != 3:
        raise InputShapeError(f"img must be (H, W, 3) or (N, H, W, 3); got shape {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
    m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return ((t - m) / s).contiguous()


def deprocess_image(img: Any) -> np.ndarray:
    """Make a gradient image displayable: standardise, scale by 0.1, centre on 0.5, clip -> uint8.

    Accepts ``(H, W, 3)`` numpy or a ``(3, H, W)`` / ``(1, 3, H, W)`` tensor (e.g. guided backprop).
    """
    if isinstance(img, torch.Tensor):
        t = img.detach().float().cpu()
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise InputShapeError(f"deprocess_image takes one image; got a batch of {t.shape[0]}")
            t = t[0]
        img = t.permute(1, 2, 0).numpy() if t.dim() == 3 and t.shape[0] in (1, 3) else t.numpy()
    arr = np.asarray(img, dtype=np.float32)
    arr = arr - arr.mean()
    arr = arr / (arr.std() + 1e-5)
    arr = arr * 0.1 + 0.5
    return np.uint8(np.clip(arr, 0, 1) * 255)


def scale_cam_image(cam: Any, target_size: tuple[int, int] | None = None) -> np.ndarray:
    """Min-max normalise each map of ``(N, h, w)`` (or one ``(h, w)``) and optionally resize.

    ``target_size`` is ``(width, height)`` like ``cv2.resize``; bilinear with half-pixel centres.
    """
    from . import postprocess as pp

    t = torch.as_tensor(_to_numpy(cam), dtype=torch.float32)
    single = t.dim() == 2
    if single:
        t = t[None]
    if t.dim() != 3:
        raise InputShapeError(f"cam must be (h, w) or (N, h, w); got shape {tuple(t.shape)}")
    t = pp.minmax_normalize(t)
    if target_size is not None:
        t = pp.upsample(t, (int(target_size[1]), int(target_size[0])))
    out = t.numpy().astype(np.float32)
    return out[0] if single else out


def load_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as float RGB ``(H, W, 3)`` in ``[0, 1]``; ``size=(W, H)`` resizes it."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None:
            im = im.resize(tuple(size), Image.BILINEAR)
        return np.asarray(im, dtype=np.float32) / 255.0


def save_image(path: str | Path, img: np.ndarray) -> None:
    """Write a uint8 (or float ``[0, 1]``) RGB image with Pillow."""
    from PIL import Image

    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = np.uint8(np.clip(np.rint(arr * 255), 0, 255))
    Image.fromarray(arr).save(path)


# ---------------------------------------------------------------------- notebooks: maps beside images
def _display_images(images: Any, n: int) -> list[np.ndarray | None]:
    """``n`` float RGB ``(H, W, 3)`` images in ``[0, 1]`` for display, or ``None`` entries without images.

    Takes ``(N, 3, H, W)`` tensors/arrays (channels first, as models take them) or ``(N, H, W, 3)``;
    values outside ``[0, 1]`` (a normalised model input) are min-max rescaled per image for display.
    """
    if images is None:
        return [None] * n
    arr = _to_numpy(images).astype(np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[3] not in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.ndim != 4 or arr.shape[3] not in (1, 3) or arr.shape[0] != n:
        raise InputShapeError(
            f"images must be {n} images (N, 3, H, W) or (N, H, W, 3) to match the maps; got shape {arr.shape}"
        )
    if arr.shape[3] == 1:
        arr = np.repeat(arr, 3, axis=3)
    out: list[np.ndarray | None] = []
    for img in arr:
        if img.min() < 0.0 or img.max() > 1.0:
            span = float(img.max() - img.min())
            img = (img - img.min()) / span if span > 0 else np.zeros_like(img)
        out.append(img)
    return out


def _map_columns(maps: Any) -> tuple[list[np.ndarray], list[str], list[str] | None]:
    """``(columns of (N, H, W) maps in [0, 1], column titles, per-image target labels or None)``."""
    if hasattr(maps, "cam") and hasattr(maps, "layer_maps"):  # an Explanation
        from . import postprocess as pp

        size = tuple(maps.cam.shape[-2:])
        cols = [_to_numpy(maps.cam)]
        names = list(getattr(maps, "layer_names", []) or [])
        titles = ["CAM" + (" (layers combined)" if len(maps.layer_maps) > 1 else "")]
        if len(maps.layer_maps) > 1:
            for i, raw in enumerate(maps.layer_maps):
                m = pp.minmax_normalize(pp.upsample(pp.relu(raw.detach().float()), size))
                cols.append(_to_numpy(m))
                titles.append(names[i] if i < len(names) else f"layer {i}")
        elif names:
            titles[0] = f"CAM at {names[0]}"
        labels = [_target_label(t) for t in maps.targets]
        return cols, titles, labels
    if isinstance(maps, dict):
        return [_to_numpy(v) for v in maps.values()], [str(k) for k in maps], None
    if isinstance(maps, (list, tuple)):
        return [_to_numpy(v) for v in maps], [f"map {i}" for i in range(len(maps))], None
    return [_to_numpy(maps)], ["CAM"], None


def _target_label(target: Any) -> str:
    category = getattr(target, "category", None)
    if isinstance(category, (int, np.integer)):
        return f"class {int(category)}"
    return type(target).__name__


def maps_figure(
    maps: Any,
    images: Any = None,
    *,
    max_images: int = 8,
    colormap: Any = "jet",
    image_weight: float = 0.5,
    cell: float = 2.0,
) -> Any:
    """A matplotlib ``Figure``: one row per image, the image first, then each map laid over it.

    Args:
        maps: an :class:`~camlens.Explanation` (its CAM and, for several layers, each layer's map),
            one ``(N, H, W)`` map batch (tensor or array), a list of them, or a dict
            ``{title: maps}`` (e.g. one entry per method).
        images: the batch the maps explain, ``(N, 3, H, W)`` or ``(N, H, W, 3)``; normalised inputs
            are rescaled to ``[0, 1]`` per image for display. ``None``: maps alone, as heat maps.
        max_images: rows shown at most (the first images of the batch).
        colormap, image_weight: as :func:`show_cam_on_image`.
        cell: size of one panel in inches.

    The figure is built without ``pyplot`` (no global state); a notebook shows it when it is the
    cell's value. Needs matplotlib (``camlens[image]``).
    """
    from matplotlib.figure import Figure

    cols, titles, labels = _map_columns(maps)
    cols = [c[None] if c.ndim == 2 else c for c in cols]
    n = cols[0].shape[0]
    if any(c.ndim != 3 or c.shape[0] != n for c in cols):
        raise InputShapeError(f"every map batch must be (N, H, W) with the same N; got {[c.shape for c in cols]}")
    shown = min(n, max(1, int(max_images)))
    imgs = _display_images(images, n)[:shown]
    has_images = images is not None
    ncols = len(cols) + int(has_images)
    fig = Figure(figsize=(cell * ncols, cell * shown), layout="constrained")
    axes = fig.subplots(shown, ncols, squeeze=False)
    for r in range(shown):
        row_label = f"image {r}" + (f": {labels[r]}" if labels else "")
        if has_images:
            axes[r, 0].imshow(imgs[r])
            axes[r, 0].set_title("image" if r == 0 else "", fontsize=8)
            axes[r, 0].set_ylabel(row_label, fontsize=8)
        for j, col in enumerate(cols):
            ax = axes[r, j + int(has_images)]
            m = np.nan_to_num(col[r].astype(np.float32))
            img = imgs[r]
            if img is not None and img.shape[:2] == m.shape:
                ax.imshow(show_cam_on_image(img, np.clip(m, 0, 1), use_rgb=True, colormap=colormap, image_weight=image_weight))
            else:
                ax.imshow(apply_colormap(np.clip(m, 0, 1), colormap))
            if r == 0:
                ax.set_title(titles[j], fontsize=8)
            if j == 0 and not has_images:
                ax.set_ylabel(row_label, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if shown < n:
        fig.suptitle(f"first {shown} of {n} images", fontsize=8)
    return fig


def show_maps(images: Any, maps: Any, **kwargs: Any) -> Any:
    """Show ``maps`` beside a batch of ``images`` in one call (notebooks, scripts): returns the figure.

    Same arguments as :func:`maps_figure` (``images`` first). Example::

        exp = GradCAM(model, "layer4").explain(x)
        show_maps(x, exp)                                       # image | CAM overlay, per row
        show_maps(x, {"gradcam": a, "scorecam": b})             # one column per method
    """
    return maps_figure(maps, images, **kwargs)


def figure_png(fig: Any, dpi: int = 80) -> bytes:
    """PNG bytes of a matplotlib figure (Agg canvas, no pyplot)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
