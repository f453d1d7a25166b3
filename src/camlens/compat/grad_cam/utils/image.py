"""``pytorch_grad_cam.utils.image`` with pytorch-grad-cam's signatures and numbers, without OpenCV.

* ``show_cam_on_image`` colours with OpenCV's JET table (:func:`camlens.image.opencv_jet`, within
  one level of ``cv2.applyColorMap``) and quantises like ``np.uint8(255 * mask)``, so overlays match
  what pytorch-grad-cam users compare against;
* ``preprocess_image`` follows torchvision's ``ToTensor`` + ``Normalize``: a uint8 image is scaled
  to ``[0, 1]`` first; the default mean/std are 0.5 as in pytorch-grad-cam.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from camlens import image as _image
from camlens.errors import InputShapeError, InputTypeError

__all__ = [
    "preprocess_image",
    "deprocess_image",
    "show_cam_on_image",
    "create_labels_legend",
    "show_factorization_on_image",
    "scale_cam_image",
    "scale_accross_batch_and_channels",
]

deprocess_image = _image.deprocess_image
COLORMAP_JET = 2  # cv2.COLORMAP_JET


def preprocess_image(img: np.ndarray, mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5)) -> torch.Tensor:
    """RGB ``(H, W, 3)`` (uint8 in ``[0, 255]`` or float in ``[0, 1]``) -> ``(1, 3, H, W)``
    ``(x - mean) / std``."""
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    return _image.preprocess_image(arr, mean=mean, std=std)


def show_cam_on_image(
    img: np.ndarray, mask: np.ndarray, use_rgb: bool = False, colormap: Any = COLORMAP_JET, image_weight: float = 0.5
) -> np.ndarray:
    """Blend ``image_weight * img + (1 - image_weight) * heatmap``, scaled so its maximum is 255;
    uint8 ``(H, W, 3)``, BGR unless ``use_rgb``. ``img`` is float in ``[0, 1]``."""
    img = np.asarray(img, dtype=np.float32)
    mask = np.asarray(mask)
    if img.ndim != 3 or img.shape[2] != 3 or mask.shape != img.shape[:2]:
        raise InputShapeError(f"img must be (H, W, 3) and mask (H, W) of the same size; got {img.shape} and {mask.shape}")
    if np.max(img) > 1:
        raise InputTypeError("The input image should np.float32 in the range [0, 1] (divide a uint8 image by 255)")
    if not 0 <= image_weight <= 1:
        raise InputTypeError(f"image_weight should be in the range [0, 1]; got {image_weight}")
    levels = np.uint8(255 * mask)  # truncates, as pytorch-grad-cam does
    if isinstance(colormap, (int, np.integer)) and int(colormap) == COLORMAP_JET:
        heatmap = _image.opencv_jet()[levels].astype(np.float32) / 255
    else:
        heatmap = _image.apply_colormap(levels.astype(np.float32) / 255, colormap)
    if not use_rgb:
        heatmap = heatmap[..., ::-1]
    cam = (1 - image_weight) * heatmap + image_weight * img
    cam = cam / np.max(cam)
    return np.uint8(255 * cam)


def create_labels_legend(concept_scores: np.ndarray, labels: Mapping[int, str], top_k: int = 2) -> list[str]:
    """One legend entry per concept: its ``top_k`` categories as ``"name:score"`` lines (each name cut
    to its first three comma-separated synonyms)."""
    scores = np.asarray(concept_scores)
    top = np.argsort(scores, axis=1)[:, ::-1][:, :top_k]
    entries = []
    for concept, cats in enumerate(top):
        lines = [f"{','.join(labels[int(c)].split(',')[:3])}:{scores[concept, c]:.2f}" for c in cats]
        entries.append("\n".join(lines))
    return entries


def scale_cam_image(cam: Any, target_size: tuple[int, ...] | None = None) -> np.ndarray:
    """Min-max normalise each map of a batch ``(N, h, w)`` (or ``(N, d, h, w)``) and resize it to
    ``target_size`` given as ``(W, H)`` (``(W, H, D)`` for volumes), bilinear (trilinear) with
    half-pixel centres as ``cv2.resize``."""
    t = torch.as_tensor(np.asarray(cam, dtype=np.float32))
    if t.dim() < 3:
        raise InputShapeError(f"cam must be a batch (N, h, w) or (N, d, h, w); got shape {tuple(t.shape)}")
    flat = t.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    flat = flat - lo
    flat = flat / (1e-7 + flat.max(dim=1, keepdim=True).values)
    t = flat.reshape(t.shape)
    if target_size is not None:
        size = tuple(int(s) for s in reversed(tuple(target_size)))
        mode = {2: "bilinear", 3: "trilinear"}.get(len(size))
        if mode is None or len(size) != t.dim() - 1:
            raise InputShapeError(f"target_size {tuple(target_size)} does not fit maps of shape {tuple(t.shape[1:])}")
        t = torch.nn.functional.interpolate(t[:, None], size=size, mode=mode, align_corners=False)[:, 0]
    return t.numpy().astype(np.float32)


def scale_accross_batch_and_channels(tensor: Any, target_size: tuple[int, int]) -> np.ndarray:
    """``(N, C, h, w)`` -> ``(N, C, H, W)``: :func:`scale_cam_image` on every map."""
    arr = np.asarray(tensor, dtype=np.float32)
    n, c = arr.shape[:2]
    out = scale_cam_image(arr.reshape(n * c, *arr.shape[2:]), target_size)
    return out.reshape(n, c, *out.shape[1:])


def show_factorization_on_image(
    img: np.ndarray, explanations: np.ndarray, colors: Any = None, image_weight: float = 0.5, concept_labels: list[str] | None = None
) -> np.ndarray:
    """Every concept in its own colour over the image, uint8 ``(H, W, 3)``; with ``concept_labels``
    a legend panel of the image's size is placed on the right, ``(H, 2W, 3)``, as in pytorch-grad-cam."""
    from PIL import Image

    overlay = _image.show_factorization_on_image(img, explanations, colors=colors, image_weight=image_weight, legend=False)
    if concept_labels is None:
        return overlay
    full = _image.show_factorization_on_image(
        img, explanations, labels=concept_labels, colors=colors, image_weight=image_weight, legend=True
    )
    h, w = overlay.shape[:2]
    panel = Image.fromarray(np.ascontiguousarray(full[:, w:])).resize((w, h), Image.BILINEAR)
    return np.hstack((overlay, np.asarray(panel, dtype=np.uint8)))
