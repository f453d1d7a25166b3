"""``camlens explain`` on ``.npy`` arrays: signals, images and volumes as the model takes them.

Each array is one sample, channels first, already normalised as the model expects:

===========  ==============================  ======================================
kind         array shape                     written per method
===========  ==============================  ======================================
``signal``   ``(L,)`` or ``(C, L)``          ``_cam.npy`` ``(L,)``, ``_strip.png`` heat strip
``image``    ``(H, W)`` or ``(C, H, W)``     ``_cam.npy`` ``(H, W)``, ``_cam.png`` overlay
``volume``   ``(D, H, W)`` or ``(C, D, H, W)``  ``_cam.npy`` ``(D, H, W)``, ``_slices.png`` montage
===========  ==============================  ======================================

Without ``--input-kind`` the kind is inferred from the shape: 1-D and 2-D arrays are signals
(``(L,)``, ``(C, L)``), 3-D arrays are images ``(C, H, W)`` when the first axis has at most 4
entries and volumes ``(D, H, W)`` otherwise, 4-D arrays are volumes ``(C, D, H, W)``. The model
comes from ``--model-file`` (a Python file with a ``load*()`` function), or ``--model`` names a zoo
model or a torchvision video model (``r3d_18``, ``mc3_18``, ``r2plus1d_18``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FileFormatError, InputShapeError, MissingFileError
from . import exitcodes

__all__ = ["explain_arrays", "infer_kind", "as_batch"]

_SPATIAL = {"signal": 1, "image": 2, "volume": 3}


def infer_kind(shape: tuple[int, ...]) -> str:
    """The kind of a one-sample array from its shape (see the module docstring)."""
    if len(shape) in (1, 2):
        return "signal"
    if len(shape) == 3:
        return "image" if shape[0] <= 4 else "volume"
    if len(shape) == 4:
        return "volume"
    raise InputShapeError(
        f"cannot explain an array of shape {shape}: expected a signal (L) / (C, L), an image (C, H, W) or a "
        "volume (D, H, W) / (C, D, H, W), one sample per file"
    )


def as_batch(array: np.ndarray, kind: str) -> torch.Tensor:
    """``(1, C, *spatial)`` float32 tensor of one sample of ``kind``."""
    k = _SPATIAL[kind]
    if array.ndim == k:
        array = array[None]
    if array.ndim != k + 1:
        raise InputShapeError(
            f"a {kind} array must have {k} spatial axes and an optional channel axis first; got shape {array.shape}"
        )
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]


def _load_array(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"input file {path!r} does not exist")
    try:
        array = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise FileFormatError(f"{path!r} is not a plain .npy array ({exc})") from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise FileFormatError(f"{path!r} must hold a numeric array; got {getattr(array, 'dtype', type(array))}")
    return array


def _load_model(args: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, str]:
    from .zoo import load_model, load_model_file

    if args.model_file:
        model, _ = load_model_file(args.model_file, args.model_fn)
        return model.to(device), Path(args.model_file).name
    import torchvision

    if args.model in torchvision.models.list_models(module=torchvision.models.video):
        weights = None if args.weights == "none" else "DEFAULT"
        model = torchvision.models.get_model(args.model, weights=weights)
        if args.weights not in ("default", "none"):
            model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
        return model.to(device), args.model
    return load_model(args.model, args.weights, device).model, args.model


def _strip(cam: np.ndarray, height: int = 32) -> np.ndarray:
    from ..image import apply_colormap

    return np.uint8(np.clip(np.rint(255 * apply_colormap(np.repeat(cam[None], height, axis=0))), 0, 255))


def explain_arrays(args: argparse.Namespace, methods: list[type], device: torch.device) -> int:
    """Explain every ``.npy`` input with every method; write the raw map and an overlay per method."""
    from ..files import make_output_folder
    from ..image import save_image, show_cam_on_image, slice_montage

    arrays = [_load_array(p) for p in args.images]
    kinds = [args.input_kind or infer_kind(a.shape) for a in arrays]
    batches = [as_batch(a, k) for a, k in zip(arrays, kinds)]
    model, model_name = _load_model(args, device)
    layers: Any = args.target_layer or None
    cams = {cls.name: cls(model, target_layers=layers, batch_size=args.batch_size, progress=False) for cls in methods}
    out = Path(args.output_dir)
    make_output_folder(out)
    written: list[Path] = []
    for path, kind, x in zip(args.images, kinds, batches):
        stem = Path(path).stem
        x = x.to(device)
        print(f"{path}: {kind} {tuple(x.shape[1:])} (C, *spatial) with {model_name}")
        for name, cam in cams.items():
            targets = {"target_category": args.target_category[0]} if args.target_category else {}
            m = cam(x, aug_smooth=args.aug_smooth, eigen_smooth=args.eigen_smooth, **targets)[0]
            base = out / f"{stem}_{name}"
            from .cli import _save_npy

            written.append(_save_npy(f"{base}_cam.npy", m))
            if kind == "volume":
                written.append(save_image(f"{base}_slices.png", slice_montage(x[0].cpu().numpy(), m)))
            elif kind == "signal":
                written.append(save_image(f"{base}_strip.png", _strip(m)))
            else:
                img = x[0].cpu().numpy()
                img = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img[:3]
                lo, hi = float(img.min()), float(img.max())
                img = np.moveaxis((img - lo) / (hi - lo) if hi > lo else np.zeros_like(img), 0, -1)
                written.append(save_image(f"{base}_cam.png", show_cam_on_image(img, m, use_rgb=True)))
            print(f"{name}: {path} -> {base}_cam.npy")
    print(f"wrote {len(written)} files to {out}")
    return exitcodes.OK
