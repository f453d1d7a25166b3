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
    "opencv_jet",
    "preprocess_image",
    "deprocess_image",
    "scale_cam_image",
    "load_image",
    "save_image",
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
            raise ValueError(f"OpenCV colour map {colormap} has no matplotlib equivalent; pass a matplotlib name")
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
