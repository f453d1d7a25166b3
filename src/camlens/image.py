"""Image helpers: overlays, pre/de-processing, colour maps. Pillow and matplotlib are imported lazily.

These functions work on numpy arrays (what users display or save); the CAM core never calls them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ArgumentError, CamLensError, FileFormatError, InputShapeError, InputTypeError, MissingFileError

__all__ = [
    "show_cam_on_image",
    "slice_montage",
    "show_factorization_on_image",
    "apply_colormap",
    "opencv_jet",
    "preprocess_image",
    "deprocess_image",
    "scale_cam_image",
    "load_image",
    "save_image",
    "resize_and_crop",
    "draw_detections",
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


def opencv_jet() -> np.ndarray:
    """OpenCV's ``COLORMAP_JET`` lookup table as uint8 RGB ``(256, 3)``, without OpenCV.

    The classic piecewise-linear jet: for ``x = i / 255``, ``red = clip(1.5 - |4x - 3|)``,
    ``green = clip(1.5 - |4x - 2|)``, ``blue = clip(1.5 - |4x - 1|)``, rounded to 8 bits. It is
    within one level of ``cv2.applyColorMap`` everywhere (matplotlib's ``"jet"``, whose knots
    differ, is up to 17 levels away).
    """
    x = np.arange(256, dtype=np.float64)[:, None] / 255.0
    rgb = np.clip(1.5 - np.abs(4.0 * x - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)
    return np.rint(rgb * 255.0).astype(np.uint8)


def apply_colormap(mask: Any, colormap: Any = "jet") -> np.ndarray:
    """Colour a ``(H, W)`` map in ``[0, 1]`` -> float RGB ``(H, W, 3)`` in ``[0, 1]``.

    ``colormap`` is a matplotlib colour-map name or object, or an OpenCV ``cv2.COLORMAP_*`` int
    (``cv2.COLORMAP_JET`` = 2 uses OpenCV's own table, :func:`opencv_jet`; the other ints use the
    matplotlib map of the same name).
    """
    import matplotlib

    mask = _to_numpy(mask).astype(np.float32)
    if mask.ndim != 2:
        raise InputShapeError(f"mask must be a 2-D (H, W) map; got shape {mask.shape}")
    levels = np.clip(np.rint(np.nan_to_num(mask) * 255), 0, 255).astype(np.uint8)
    if isinstance(colormap, (int, np.integer)) and int(colormap) == 2:
        return opencv_jet()[levels].astype(np.float32) / 255.0
    if isinstance(colormap, (int, np.integer)):
        if int(colormap) not in _OPENCV_COLORMAPS:
            raise ArgumentError(f"OpenCV colour map {colormap} has no matplotlib equivalent; pass a matplotlib name")
        colormap = _OPENCV_COLORMAPS[int(colormap)]
    cmap = matplotlib.colormaps[colormap] if isinstance(colormap, str) else colormap
    # Quantised to 256 levels (above) like an 8-bit lookup table, so results match uint8 colour maps.
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

    Volumes and video: overlay one slice at a time -- for a CAM ``cam`` ``(D, H, W)`` of a volume
    ``vol`` ``(D, H, W)`` scaled to ``[0, 1]``, ``show_cam_on_image(np.stack([vol[d]] * 3, -1), cam[d])``
    -- or draw a grid of slices with :func:`slice_montage`.
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
        raise ArgumentError(f"image_weight must be in [0, 1]; got {image_weight}")
    heatmap = apply_colormap(mask, colormap)
    if not use_rgb:
        heatmap = heatmap[..., ::-1]
    cam = (1.0 - image_weight) * heatmap + image_weight * img
    peak = cam.max()
    if peak > 0:
        cam = cam / peak
    return np.uint8(np.clip(np.rint(255 * cam), 0, 255))


def slice_montage(
    volume: Any,
    cam: Any,
    *,
    num_slices: int | None = 8,
    columns: int | None = None,
    colormap: Any = "jet",
    image_weight: float = 0.5,
) -> np.ndarray:
    """CAM overlays of slices along the first spatial axis (depth or time) in a grid; uint8 RGB.

    Args:
        volume: ``(D, H, W)`` (grayscale) or ``(C, D, H, W)`` (as the model takes it, channels
            first; 3 channels are shown as RGB, any other count by its first channel), any real
            values: scaled to ``[0, 1]`` over the whole volume.
        cam: ``(D, H, W)`` map in ``[0, 1]`` (one map of :class:`camlens.BaseCAM`'s ``(N, D, H, W)``).
        num_slices: slices shown, evenly spaced from the first to the last (``None``: all).
        columns: slices per row (default ``ceil(sqrt(num_slices))``).

    Returns ``(rows * H, columns * W, 3)``; empty cells of the last row are black.

    Example::

        import numpy as np
        from camlens.image import slice_montage

        clip = np.random.rand(3, 8, 16, 16)              # (C, T, H, W), e.g. x[0] of an r3d_18 batch
        cam = np.random.rand(8, 16, 16)                  # e.g. GradCAM(model)(x)[0]
        grid = slice_montage(clip, cam, num_slices=4)    # 2 x 2 tiles
        assert grid.shape == (32, 32, 3)
    """
    vol = _to_numpy(volume).astype(np.float32)
    m = _to_numpy(cam).astype(np.float32)
    if vol.ndim == 4:
        vol = np.moveaxis(vol if vol.shape[0] == 3 else vol[:1], 0, -1)  # (D, H, W, 3 or 1)
    elif vol.ndim == 3:
        vol = vol[..., None]
    else:
        raise InputShapeError(f"volume must be (D, H, W) or (C, D, H, W); got shape {vol.shape}")
    if m.shape != vol.shape[:3]:
        raise InputShapeError(f"cam must be (D, H, W) = {vol.shape[:3]} like the volume; got shape {m.shape}")
    if num_slices is not None and (isinstance(num_slices, bool) or not isinstance(num_slices, int) or num_slices < 1):
        raise ArgumentError(f"num_slices must be a positive int or None; got {num_slices!r}")
    lo, hi = float(np.nanmin(vol)), float(np.nanmax(vol))
    vol = (vol - lo) / (hi - lo) if hi > lo else np.zeros_like(vol)
    if vol.shape[-1] == 1:
        vol = np.repeat(vol, 3, axis=-1)
    depth = vol.shape[0]
    count = depth if num_slices is None else min(num_slices, depth)
    picks = np.unique(np.round(np.linspace(0, depth - 1, count)).astype(int))
    cols = columns or int(np.ceil(np.sqrt(len(picks))))
    rows = int(np.ceil(len(picks) / cols))
    h, w = vol.shape[1:3]
    out = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i, d in enumerate(picks):
        r, c = divmod(i, cols)
        tile = show_cam_on_image(vol[d], np.clip(m[d], 0, 1), use_rgb=True, colormap=colormap, image_weight=image_weight)
        out[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    return out


def show_factorization_on_image(
    img: np.ndarray,
    maps: Any,
    labels: Sequence[str] | None = None,
    colors: Sequence[Any] | None = None,
    image_weight: float = 0.5,
    legend: bool = True,
) -> np.ndarray:
    """Draw every concept of a factorisation in its own colour over an image; returns uint8 RGB.

    Each pixel takes the colour of its dominant concept (``argmax`` over ``maps``), scaled by that
    concept's strength, blended as ``image_weight * img + (1 - image_weight) * colours``. With
    ``legend`` a panel on the right lists every concept's colour and label (``labels``, default
    ``"concept j"``), so the result is wider than the image; without it the result is ``(H, W, 3)``.

    Args:
        img: float RGB image ``(H, W, 3)`` in ``[0, 1]``.
        maps: ``(k, H, W)`` concept strengths in ``[0, 1]``, e.g. ``Factorization.maps[i]`` of
            :meth:`camlens.DeepFeatureFactorization.factorize`.
        labels: one legend line per concept, e.g. ``Factorization.labels(categories)``.
        colors: one matplotlib colour per concept (default: evenly spaced hues of "gist_rainbow").
        image_weight: weight of the image in the blend.

    Example::

        from camlens.image import show_factorization_on_image

        fac = DeepFeatureFactorization(model, "layer4", head="fc", n_components=2).factorize(x)
        img = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)   # the photo x shows
        overlay = show_factorization_on_image(img, fac.maps[0], fac.labels())   # uint8, legend on the right
    """
    import matplotlib
    from matplotlib.colors import to_rgb

    img = _to_numpy(img).astype(np.float32)
    maps = _to_numpy(maps).astype(np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise InputShapeError(f"img must be (H, W, 3); got shape {img.shape}")
    if maps.ndim != 3 or maps.shape[1:] != img.shape[:2]:
        raise InputShapeError(
            f"maps must be (k, H, W) with (H, W) = the image's {img.shape[:2]}; got shape {maps.shape} "
            "(pass one image's maps, e.g. factorization.maps[0])"
        )
    if img.max() > 1.0 + 1e-6 or img.min() < -1e-6:
        raise InputTypeError(
            f"img must be float in [0, 1]; got values in [{img.min():.3g}, {img.max():.3g}] (divide a uint8 image by 255)"
        )
    if not 0.0 <= image_weight <= 1.0:
        raise ArgumentError(f"image_weight must be in [0, 1]; got {image_weight}")
    k = maps.shape[0]
    if labels is not None and len(labels) != k:
        raise ArgumentError(f"got {len(labels)} labels for {k} concepts; pass one label per concept")
    if colors is None:
        cmap = matplotlib.colormaps["gist_rainbow"]
        colors = [cmap(j / k) for j in range(k)]
    if len(colors) != k:
        raise ArgumentError(f"got {len(colors)} colours for {k} concepts; pass one colour per concept")
    palette = np.array([to_rgb(c) for c in colors], dtype=np.float32)  # (k, 3)
    maps = np.clip(np.nan_to_num(maps), 0.0, 1.0)
    dominant = maps.argmax(axis=0)
    strength = maps.max(axis=0)
    painted = palette[dominant] * strength[..., None]
    out = np.uint8(np.clip(np.rint(255 * (image_weight * img + (1.0 - image_weight) * painted)), 0, 255))
    if not legend:
        return out
    return _with_legend(out, palette, list(labels) if labels is not None else [f"concept {j + 1}" for j in range(k)])


def _with_legend(image: np.ndarray, palette: np.ndarray, labels: list[str]) -> np.ndarray:
    """``image`` with a legend panel (colour patch + label per concept) rendered to its right."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    h, w = image.shape[:2]
    dpi = 100
    panel = max(2.5, 0.08 * max(len(t) for t in labels)) if labels else 2.5
    fig = Figure(figsize=(w / dpi + panel, max(h / dpi, 0.3 * len(labels) + 0.4)), dpi=dpi)
    FigureCanvasAgg(fig)
    width = w / dpi + panel
    ax = fig.add_axes((0, 0, (w / dpi) / width, 1))
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    handles = [Patch(facecolor=tuple(c), label=t) for c, t in zip(palette, labels)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=((w / dpi) / width, 0.5), frameon=False, fontsize=9)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


def preprocess_image(
    img: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """RGB ``(H, W, 3)`` (or a batch ``(N, H, W, 3)``) -> normalised ``(x - mean) / std`` tensor
    ``(1, 3, H, W)`` (or ``(N, 3, H, W)``). Float images are taken to be in ``[0, 1]``; a uint8
    image is scaled to ``[0, 1]`` first (as torchvision's ``ToTensor``); other integer types are
    refused (their range is ambiguous)."""
    arr = _to_numpy(img)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif not np.issubdtype(arr.dtype, np.floating):
        raise InputTypeError(
            f"preprocess_image takes a float image in [0, 1] or a uint8 image; got dtype {arr.dtype} "
            "(scale it to [0, 1] floats first, e.g. img / img.max() for 16-bit data)"
        )
    arr = arr.astype(np.float32)
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


def resize_and_crop(
    img: np.ndarray,
    resize: int | tuple[int, int] | None = None,
    crop: int | None = None,
    *,
    boxes: Any = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize then centre-crop an image, moving boxes along: the one geometry of camlens's app.

    Args:
        img: float RGB ``(H, W, 3)`` in ``[0, 1]``.
        resize: an int resizes the shorter side to it (aspect ratio kept, as torchvision's
            ``Resize(int)``); ``(h, w)`` resizes to exactly that size ("squash"); ``None`` keeps
            the size.
        crop: centre-crop a ``crop x crop`` square (``None``: no crop). An image whose shorter
            side is below ``crop`` after resizing is first scaled up, aspect ratio kept, until its
            shorter side is ``crop`` (never padded); the top-left corner of the crop is
            ``((h - crop) // 2, (w - crop) // 2)``.
        boxes: optional ``(K, 4)`` xyxy boxes in inclusive pixel indices of ``img``.

    Returns ``(image, boxes)``: the image, and the boxes scaled by the resize factors, shifted by
    the crop offset, clipped to the result, with boxes left empty by the crop dropped (``None``
    when ``boxes`` is ``None``). Resizing is bilinear with antialiasing (half-pixel centres).

    >>> out, b = resize_and_crop(np.zeros((20, 40, 3), np.float32), 10, 10, boxes=[[0, 0, 39, 19]])
    >>> out.shape, b.tolist()
    ((10, 10, 3), [[0.0, 0.0, 9.0, 9.0]])
    """
    arr = _to_numpy(img).astype(np.float32, copy=False)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputShapeError(f"image must be (H, W, 3) RGB; got shape {arr.shape}")
    h, w = arr.shape[:2]
    if resize is None:
        size = (h, w)
    elif isinstance(resize, (int, np.integer)):
        s = int(resize) / min(h, w)
        size = (max(int(resize), round(h * s)), max(int(resize), round(w * s)))
    else:
        size = (int(resize[0]), int(resize[1]))
    if min(size) < 1 or (crop is not None and crop < 1):
        raise ArgumentError(f"resize and crop must be positive sizes; got resize={resize!r}, crop={crop!r}")
    if crop is not None and min(size) < crop:
        s = crop / min(size)
        size = (max(crop, round(size[0] * s)), max(crop, round(size[1] * s)))
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]
    if size != (h, w):
        t = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
    top = left = 0
    if crop is not None:
        top, left = (size[0] - crop) // 2, (size[1] - crop) // 2
        t = t[..., top : top + crop, left : left + crop]
    out = t[0].permute(1, 2, 0).clamp(0, 1).contiguous().numpy()
    if boxes is None:
        return out, None
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sy, sx = size[0] / h, size[1] / w
    b = b * np.array([sx, sy, sx, sy]) - np.array([left, top, left, top])
    hh, ww = out.shape[:2]
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, ww - 1)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, hh - 1)
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return out, b[keep]


# Pillow modes with more than 8 bits per sample, and the value that maps to 1.0.
_WIDE_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0}


def _pixels(im: Any, path: Any) -> np.ndarray:
    """A Pillow image of any mode -> float RGB ``(H, W, 3)`` in ``[0, 1]``."""
    mode = im.mode
    if mode in _WIDE_MODES or mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if arr.ndim != 2:  # pragma: no cover - Pillow's wide modes are single-band
            raise FileFormatError(f"image {str(path)!r} has {arr.shape} samples in mode {mode}; expected one band")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if mode == "F":
            if not np.isfinite(arr).all() or lo < 0 or hi > 1:
                raise FileFormatError(
                    f"image {str(path)!r} is a floating-point image (Pillow mode F) with values in [{lo:.4g}, {hi:.4g}]; "
                    "expected values in [0, 1]: rescale it (or save it as an 8- or 16-bit image)"
                )
            gray = arr
        else:
            if lo < 0 or hi > 65535:
                raise FileFormatError(
                    f"image {str(path)!r} is a 32-bit integer image (Pillow mode {mode}) with values in [{lo:.0f}, {hi:.0f}]; "
                    "expected 0..65535 (16-bit): save it as an 8- or 16-bit image"
                )
            gray = arr / _WIDE_MODES[mode]
        return np.repeat(gray.astype(np.float32)[..., None], 3, axis=2)
    # Every 8-bit mode (1, L, P, LA, PA, RGB, RGBA, CMYK, YCbCr, LAB, HSV, ...): Pillow's own
    # conversion to RGB; an alpha channel is dropped (the colours under it are kept).
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def load_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as float RGB ``(H, W, 3)`` in ``[0, 1]``; ``size=(W, H)`` resizes it.

    Every mode Pillow opens is scaled by its bit depth: 8-bit modes (``1``, ``L``, ``P``, ``LA``,
    ``RGB``, ``RGBA``, ``CMYK``, ...) by 255, 16-bit greyscale (``I;16``, and ``I`` with values in
    ``0..65535``, as Pillow opens 16-bit PNGs) by 65535, floating point (``F``) as is when in
    ``[0, 1]``; greyscale is repeated into the three channels; alpha is dropped. Other value
    ranges raise :class:`~camlens.errors.FileFormatError`; a missing file
    :class:`~camlens.errors.MissingFileError`.

    Example::

        import tempfile
        from pathlib import Path
        from PIL import Image

        from camlens.image import load_image

        path = Path(tempfile.mkdtemp()) / "scan_16bit.png"
        Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(path)   # a 16-bit PNG
        img = load_image(path)
        assert img.shape == (4, 4, 3) and img.dtype == np.float32 and float(img.max()) == 1.0
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"image file {str(path)!r} does not exist")
    if p.is_dir():
        raise MissingFileError(f"{str(path)!r} is a directory, not an image file; pass image files (e.g. {path}/*.jpg)")
    try:
        with Image.open(p) as im:
            im.load()
            arr = _pixels(im, path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImportError) as exc:
        # ImportError: a Pillow plugin loaded on demand is missing (e.g. Ultralytics' HEIF fallback
        # for files Pillow cannot identify, which needs pi-heif).
        if isinstance(exc, CamLensError):
            raise
        raise FileFormatError(
            f"cannot read image {str(path)!r}: not an image file Pillow can open ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if size is not None:
        arr = resize_and_crop(arr, (int(size[1]), int(size[0])))[0]
    return arr


def save_image(path: str | Path, img: np.ndarray, *, palette: bool = False) -> Path:
    """Write a uint8 (or float ``[0, 1]``) RGB image with Pillow, atomically; returns the path.

    The file is written to a temporary name and renamed into place (see :mod:`camlens.files`), so
    an interrupted run never leaves a half-written image. PNGs are optimised; ``palette=True``
    stores 256 adaptive colours (much smaller files for figures).
    """
    from PIL import Image

    from .files import atomic_path

    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = np.uint8(np.clip(np.rint(arr * 255), 0, 255))
    im = Image.fromarray(arr)
    if palette:
        im = im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path = Path(path)
    with atomic_path(path) as tmp:
        im.save(tmp, optimize=True) if path.suffix.lower() == ".png" else im.save(tmp)
    return path


def _box_colour(label: int) -> tuple[int, int, int]:
    """A fixed, well-separated colour per label (golden-ratio hue steps)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((0.13 + 0.618034 * int(label)) % 1.0, 0.9, 1.0)
    return int(255 * r), int(255 * g), int(255 * b)


def draw_detections(
    image: Any,
    boxes: Any,
    labels: Any = None,
    scores: Any = None,
    class_names: Sequence[str] | None = None,
    *,
    width: int = 2,
) -> np.ndarray:
    """Draw detection boxes, with ``label score`` captions, on an image; returns uint8 ``(H, W, 3)``.

    Args:
        image: uint8 ``(H, W, 3)`` (e.g. the output of :func:`show_cam_on_image`) or float in ``[0, 1]``.
        boxes: ``(K, 4)`` boxes ``(x1, y1, x2, y2)`` in pixels (numpy or torch).
        labels: ``(K,)`` integer labels (optional); each label gets its own colour.
        scores: ``(K,)`` scores (optional), written after the label.
        class_names: names indexed by label (optional; the number is shown otherwise).
        width: line width in pixels.

    Needs Pillow (the ``image`` extra). Example::

        overlay = show_cam_on_image(img, maps[0], use_rgb=True)
        out = model(x)[0]
        overlay = draw_detections(overlay, out["boxes"], out["labels"], out["scores"])
    """
    from PIL import Image, ImageDraw

    arr = _to_numpy(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputShapeError(f"image must be (H, W, 3); got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.max() > 1.0 + 1e-6 or arr.min() < -1e-6:
            raise InputTypeError(
                f"a float image must be in [0, 1]; got values in [{arr.min():.3g}, {arr.max():.3g}] (or pass uint8)"
            )
        arr = np.uint8(np.clip(np.rint(arr * 255), 0, 255))
    box_arr = _to_numpy(boxes).astype(np.float64).reshape(-1, 4)
    k = box_arr.shape[0]
    label_arr = None if labels is None else _to_numpy(labels).reshape(-1)
    score_arr = None if scores is None else _to_numpy(scores).astype(np.float64).reshape(-1)
    for name, values in (("labels", label_arr), ("scores", score_arr)):
        if values is not None and values.shape[0] != k:
            raise InputShapeError(f"draw_detections got {k} boxes but {values.shape[0]} {name}; pass one per box")
    canvas = Image.fromarray(np.ascontiguousarray(arr))
    draw = ImageDraw.Draw(canvas)
    for i, (x1, y1, x2, y2) in enumerate(box_arr.tolist()):
        label = None if label_arr is None else int(label_arr[i])
        colour = _box_colour(label if label is not None else 0)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=max(1, int(width)))
        parts = []
        if label is not None:
            parts.append(class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label))
        if score_arr is not None:
            parts.append(f"{score_arr[i]:.2f}")
        if parts:
            text = " ".join(parts)
            left, top, right, bottom = draw.textbbox((x1, y1), text)
            ty = y1 - (bottom - top) - 2 if y1 - (bottom - top) - 2 >= 0 else y1
            draw.rectangle([x1, ty, x1 + (right - left) + 2, ty + (bottom - top) + 2], fill=colour)
            draw.text((x1 + 1, ty), text, fill=(0, 0, 0))
    return np.asarray(canvas, dtype=np.uint8).copy()
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
        colormap: as :func:`show_cam_on_image`.
        image_weight: as :func:`show_cam_on_image`.
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
