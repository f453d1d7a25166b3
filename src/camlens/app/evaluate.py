"""``camlens evaluate``: score CAM methods with the metrics of :mod:`camlens.metrics` on a folder.

Runs every chosen method (plus the image-centre Gaussian baseline) over the images, computes the
chosen metrics batch by batch and prints one row per method; ``--output`` writes the table as
CSV or JSON. With no folder it runs offline: the bundled EfficientNet-Lite0 on the photos shipped
inside scikit-image and matplotlib (no ground truth there, so only the faithfulness metrics).

Annotations (optional; ``annotations.json`` or ``annotations.csv`` in the folder is used
automatically):

* JSON: a list of ``{"file": "img.jpg", "label": 281, "boxes_xyxy": [[x1, y1, x2, y2], ...]}``
  (or ``{"annotations": [...]}``); ``file`` is relative to the annotation file's folder;
* CSV with a header ``file,label,x1,y1,x2,y2``: one row per box (repeat the file for several
  boxes; leave the box cells empty for none, the label cell empty for "use the top class").

Boxes are in pixel coordinates of the image file (inclusive indices) and follow the image
through resizing and cropping. The explained class is the label when given, else the model's
top class.

Python use::

    from camlens.evaluate import evaluate, load_samples
    rows = evaluate(model, load_samples("images/", size=224), ["gradcam"], target_layers=["layer4"])
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..devices import resolve_device
from .options import device_arg
from ..errors import CamLensError
from ..image import IMAGENET_MEAN, IMAGENET_STD, preprocess_image
from ..metrics import (
    AverageDrop,
    Deletion,
    EnergyPointingGame,
    IncreaseInConfidence,
    Insertion,
    Metric,
    PointingGame,
    ROAD,
    ROADCombined,
    center_baseline,
)
from ..registry import get_method

__all__ = [
    "METRICS",
    "DEFAULT_METHODS",
    "DEFAULT_METRICS",
    "Sample",
    "load_annotations",
    "load_samples",
    "bundled_samples",
    "evaluate",
    "format_table",
    "write_table",
    "register_cli",
    "run",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".jfif", ".tif", ".tiff")

METRICS: dict[str, tuple[bool, bool, str]] = {
    # name: (higher_is_better, needs ground truth, description)
    "pointing_game": (True, True, "peak within 15 px of the box (Zhang et al.)"),
    "energy_pointing_game": (True, True, "share of map energy inside the box (Score-CAM)"),
    "deletion_auc": (False, False, "AUC of the class probability while deleting salient pixels (RISE)"),
    "insertion_auc": (True, False, "AUC of the class probability while inserting salient pixels (RISE)"),
    "average_drop": (False, False, "Average Drop %, map x image (Grad-CAM++)"),
    "increase_in_confidence": (True, False, "Increase in Confidence %, map x image (Grad-CAM++)"),
    "road_morf": (False, False, "ROAD most-relevant-first, mean prob. over 10..90% (Rong et al.)"),
    "road_lerf": (True, False, "ROAD least-relevant-first, mean prob. over 10..90%"),
    "road_combined": (True, False, "ROAD LeRF - MoRF"),
}
DEFAULT_METHODS = ("gradcam", "gradcam++", "layercam", "eigencam")
DEFAULT_METRICS = (
    "pointing_game",
    "energy_pointing_game",
    "deletion_auc",
    "insertion_auc",
    "average_drop",
    "increase_in_confidence",
)
CENTER = "center-baseline"


@dataclass
class Sample:
    """One image as the model sees it (geometry applied), with optional label and boxes."""

    name: str
    image: np.ndarray
    """Float RGB ``(H, W, 3)`` in ``[0, 1]`` after resizing/cropping."""
    label: int | None = None
    boxes: np.ndarray | None = None
    """``(K, 4)`` xyxy boxes in the pixel grid of ``image``; ``None``: no ground truth."""


@dataclass
class Geometry:
    """How a file becomes the model's input: ``squash`` to a square, or resize shorter side + crop."""

    squash: int | None = 224
    resize: int | None = None
    crop: int | None = None

    def apply(self, img: np.ndarray, boxes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
        h, w = img.shape[:2]
        sx = sy = 1.0
        top = left = 0
        if self.squash is not None:
            size = (self.squash, self.squash)
        elif self.resize is not None:
            s = self.resize / min(h, w)
            size = (max(self.resize, round(h * s)), max(self.resize, round(w * s)))
        else:
            size = (h, w)
        if size != (h, w):
            t = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
            sy, sx = size[0] / h, size[1] / w
        if self.squash is None and self.crop is not None:
            hh, ww = t.shape[-2:]
            if hh < self.crop or ww < self.crop:
                raise CamLensError(f"image of {hh}x{ww} is smaller than the crop {self.crop}")
            top, left = (hh - self.crop) // 2, (ww - self.crop) // 2
            t = t[..., top : top + self.crop, left : left + self.crop]
        out = t[0].permute(1, 2, 0).clamp(0, 1).contiguous().numpy()
        if boxes is not None and len(boxes):
            b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * np.array([sx, sy, sx, sy])
            b = b - np.array([left, top, left, top])
            hh, ww = out.shape[:2]
            b[:, [0, 2]] = b[:, [0, 2]].clip(0, ww - 1)
            b[:, [1, 3]] = b[:, [1, 3]].clip(0, hh - 1)
            keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
            boxes = b[keep]
        return out, boxes


# ------------------------------------------------------------------------------ data
def load_annotations(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON or CSV annotation file -> ``[{"file": Path, "label": int|None, "boxes": (K,4)|None}]``."""
    path = Path(path)
    if not path.is_file():
        raise CamLensError(f"annotation file {str(path)!r} does not exist")
    root = path.parent
    entries: dict[str, dict[str, Any]] = {}
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            data = data.get("annotations")
        if not isinstance(data, list):
            raise CamLensError(
                f"{path}: expected a JSON list of {{'file', 'label', 'boxes_xyxy'}} objects (or {{'annotations': [...]}})"
            )
        for i, item in enumerate(data):
            if not isinstance(item, dict) or "file" not in item:
                raise CamLensError(f"{path}: entry {i} has no 'file' key; got {item!r:.80}")
            boxes = item.get("boxes_xyxy", item.get("boxes"))
            label = item.get("label")
            entries[item["file"]] = {
                "file": root / item["file"],
                "label": None if label is None else int(label),
                "boxes": None if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            }
    elif path.suffix.lower() == ".csv":
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            need = {"file"}
            if reader.fieldnames is None or not need <= set(reader.fieldnames):
                raise CamLensError(f"{path}: expected a CSV header 'file,label,x1,y1,x2,y2'; got {reader.fieldnames}")
            for row in reader:
                e = entries.setdefault(row["file"], {"file": root / row["file"], "label": None, "boxes": None})
                if row.get("label") not in (None, ""):
                    e["label"] = int(row["label"])
                coords = [row.get(k) for k in ("x1", "y1", "x2", "y2")]
                if all(c not in (None, "") for c in coords):
                    box = np.asarray([[float(c) for c in coords]])  # type: ignore[arg-type]
                    e["boxes"] = box if e["boxes"] is None else np.concatenate([e["boxes"], box])
    else:
        raise CamLensError(f"annotation file must be .json or .csv; got {path.name!r}")
    return list(entries.values())


def _read(path: Path) -> np.ndarray:
    from ..image import load_image

    return load_image(path)


def load_samples(
    folder: str | Path,
    annotations: str | Path | None = None,
    *,
    geometry: Geometry | None = None,
    size: int | None = None,
    limit: int | None = None,
) -> list[Sample]:
    """Images of ``folder`` (or those listed in ``annotations``), as the model will see them.

    ``annotations``: a JSON/CSV file (see the module docs); default: ``folder/annotations.json``
    or ``.csv`` when present. ``size``: squash every image to ``size x size`` (shortcut for
    ``geometry=Geometry(squash=size)``). ``limit``: the first ``limit`` images only.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CamLensError(f"image folder {str(folder)!r} does not exist or is not a folder")
    if geometry is None:
        geometry = Geometry(squash=size or 224)
    if annotations is None:
        for cand in ("annotations.json", "annotations.csv"):
            if (folder / cand).is_file():
                annotations = folder / cand
                break
    if annotations is not None:
        items = load_annotations(annotations)
    else:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        items = [{"file": p, "label": None, "boxes": None} for p in files]
    if not items:
        raise CamLensError(f"no images found in {str(folder)!r} (looked for {', '.join(IMAGE_SUFFIXES)})")
    if limit is not None:
        items = items[: int(limit)]
    samples = []
    for item in items:
        path = Path(item["file"])
        if not path.is_file():
            raise CamLensError(f"annotated image {str(path)!r} does not exist")
        img, boxes = geometry.apply(_read(path), item["boxes"])
        samples.append(Sample(path.name, img, item["label"], boxes))
    return samples


def bundled_samples(geometry: Geometry) -> list[Sample]:
    """Photos shipped inside registry packages (scikit-image, matplotlib): no download."""
    samples = []
    try:
        from skimage import data

        for name in ("chelsea", "coffee", "astronaut", "rocket"):
            img = np.asarray(getattr(data, name)(), dtype=np.float32) / 255.0
            samples.append(Sample(name, geometry.apply(img[..., :3], None)[0]))
    except ImportError:
        pass
    try:
        from matplotlib import cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            img = np.asarray(Image.open(fh).convert("RGB"), dtype=np.float32) / 255.0
        samples.append(Sample("grace_hopper", geometry.apply(img, None)[0]))
    except (ImportError, FileNotFoundError, ValueError):
        pass
    if not samples:
        raise CamLensError(
            "no bundled photos found: install the demo extra (pip install 'camlens[demo]') or pass an image folder"
        )
    return samples


# ------------------------------------------------------------------------------ running
def _make_metrics(
    names: Sequence[str], model: nn.Module, opts: dict[str, Any]
) -> dict[str, Metric]:
    common = dict(batch_size=opts["batch_size"], output_adapter=opts.get("output_adapter"))
    out: dict[str, Metric] = {}
    for name in names:
        if name == "pointing_game":
            out[name] = PointingGame(tolerance=opts["tolerance"])
        elif name == "energy_pointing_game":
            out[name] = EnergyPointingGame()
        elif name == "deletion_auc":
            out[name] = Deletion(model, steps=opts["steps"], baseline=opts["deletion_baseline"], seed=opts["seed"], **common)
        elif name == "insertion_auc":
            out[name] = Insertion(model, steps=opts["steps"], baseline=opts["insertion_baseline"], seed=opts["seed"], **common)
        elif name == "average_drop":
            out[name] = AverageDrop(model, mean=opts["mean"], std=opts["std"], **common)
        elif name == "increase_in_confidence":
            out[name] = IncreaseInConfidence(model, mean=opts["mean"], std=opts["std"], **common)
        elif name == "road_morf":
            out[name] = ROAD(model, order="morf", seed=opts["seed"], **common)
        elif name == "road_lerf":
            out[name] = ROAD(model, order="lerf", seed=opts["seed"], **common)
        elif name == "road_combined":
            out[name] = ROADCombined(model, seed=opts["seed"], **common)
        else:  # validated before
            raise CamLensError(f"unknown metric {name!r}")
    return out


def _check_names(metrics: Sequence[str]) -> list[str]:
    out = []
    for m in metrics:
        key = m.strip().lower().replace("-", "_")
        if key not in METRICS:
            raise CamLensError(f"unknown metric {m!r}; available: {', '.join(METRICS)}")
        out.append(key)
    return out


def evaluate(
    model: nn.Module,
    samples: Sequence[Sample],
    methods: Sequence[str] = DEFAULT_METHODS,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    target_layers: Any = None,
    reshape_transform: Any = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    batch_size: int = 16,
    steps: int = 20,
    tolerance: float = 15.0,
    deletion_baseline: str = "zero",
    insertion_baseline: str = "blur",
    baseline: bool = True,
    seed: int = 0,
    progress: bool = False,
    output_adapter: Any = None,
) -> list[dict[str, Any]]:
    """Score ``methods`` (and the centre baseline) with ``metrics`` on ``samples``.

    Returns one row per method: ``{"method", "images", <metric>: mean, ..., "cam_seconds"}``;
    a localisation metric is the mean over images with boxes (``None`` when no image has any).
    Images are processed ``batch_size`` at a time on the model's device; the model is left as found.
    """
    if not samples:
        raise CamLensError("no images to evaluate")
    metric_names = _check_names(metrics)
    classes = [get_method(m) for m in methods]
    from ..engine import model_device

    device = model_device(model)
    opts = dict(
        batch_size=batch_size, steps=steps, tolerance=tolerance, mean=tuple(mean), std=tuple(std),
        deletion_baseline=deletion_baseline, insertion_baseline=insertion_baseline, seed=seed,
        output_adapter=output_adapter,
    )
    names = [c.name for c in classes] + ([CENTER] if baseline else [])
    tables = {n: _make_metrics(metric_names, model, opts) for n in names}
    seconds = {n: 0.0 for n in names}
    cams = {
        c.name: c(model, target_layers=target_layers, reshape_transform=reshape_transform,
                  batch_size=batch_size, progress=False, output_adapter=output_adapter)
        for c in classes
    }
    batches = range(0, len(samples), batch_size)
    from ..progress import progress_bar

    for start in progress_bar(batches, total=len(batches), enabled=progress, desc="evaluate"):
        chunk = samples[start : start + batch_size]
        shapes = {s.image.shape for s in chunk}
        if len(shapes) != 1:
            raise CamLensError(f"images of one batch must share a size after preprocessing; got {sorted(shapes)}")
        x = preprocess_image(np.stack([s.image for s in chunk]), mean, std).to(device)
        labels = [s.label for s in chunk]
        if any(lb is None for lb in labels):
            with torch.no_grad():
                from ..hooks import eval_mode

                with eval_mode(model):
                    out = model(x)
                    out = (output_adapter or (lambda o: o))(out)
            top = out.argmax(dim=1).tolist()
            labels = [top[i] if lb is None else lb for i, lb in enumerate(labels)]
        target = torch.tensor(labels, device=device)
        has_boxes = [s.boxes is not None and len(s.boxes) > 0 for s in chunk]
        boxes = [s.boxes if s.boxes is not None else np.zeros((0, 4)) for s in chunk]
        for name in names:
            t0 = time.perf_counter()
            if name == CENTER:
                maps = center_baseline(len(chunk), tuple(x.shape[-2:]), device=device)
            else:
                from ..targets import ClassifierOutputTarget

                maps = cams[name].explain(x, [ClassifierOutputTarget(int(c)) for c in labels]).cam
            seconds[name] += time.perf_counter() - t0
            for mname, metric in tables[name].items():
                if METRICS[mname][1]:
                    if any(has_boxes):
                        metric.update(maps, boxes=boxes)
                else:
                    metric.update(x, maps, target)
    rows = []
    for name in names:
        row: dict[str, Any] = {"method": name, "images": len(samples)}
        for mname, metric in tables[name].items():
            vals = metric.values
            row[mname] = None if vals.numel() == 0 or bool(torch.isnan(vals).all()) else float(metric.compute())
        row["cam_seconds"] = round(seconds[name], 3)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ output
def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text table; a header row marks each metric ``(+)`` higher is better or ``(-)`` lower."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    head = [f"{k} ({'+' if METRICS[k][0] else '-'})" if k in METRICS else k for k in keys]
    cells = [[_fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths)))
    lines.append("(+) higher is better, (-) lower is better")
    return "\n".join(lines)


def write_table(rows: Sequence[dict[str, Any]], path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Write rows as CSV (``.csv``) or JSON (``.json``: ``{"meta": ..., "rows": [...]}``)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        higher = {k: METRICS[k][0] for k in rows[0] if k in METRICS} if rows else {}
        path.write_text(json.dumps({"meta": meta or {}, "higher_is_better": higher, "rows": list(rows)}, indent=2))
    elif path.suffix.lower() == ".csv":
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            for r in rows:
                writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    else:
        raise CamLensError(f"--output must end in .csv or .json; got {path.name!r}")


# ------------------------------------------------------------------------------ CLI
def _split(values: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    if not values:
        return list(default)
    return [v for item in values for v in item.split(",") if v.strip()]


def _floats3(text: str) -> tuple[float, ...]:
    parts = [float(p) for p in text.split(",")]
    if len(parts) not in (1, 3):
        raise argparse.ArgumentTypeError(f"expected one number or three comma-separated numbers; got {text!r}")
    return tuple(parts * 3) if len(parts) == 1 else tuple(parts)


def _load_model_file(path: str, fn_name: str | None) -> tuple[nn.Module, Any]:
    p = Path(path)
    if not p.is_file():
        raise CamLensError(f"--model-file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"camlens_user_model_{p.stem}", p)
    if spec is None or spec.loader is None:
        raise CamLensError(f"--model-file {path!r} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(p.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(p.parent))
    if fn_name is None:
        loaders = [n for n in dir(module) if n.startswith("load") and callable(getattr(module, n))]
        if len(loaders) != 1:
            raise CamLensError(
                f"{p.name} defines {len(loaders)} load* functions ({', '.join(loaders) or 'none'}); name one with --model-fn"
            )
        fn_name = loaders[0]
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise CamLensError(f"{p.name} has no function {fn_name!r}")
    model = fn()
    if not isinstance(model, nn.Module):
        raise CamLensError(f"{p.name}:{fn_name}() returned a {type(model).__name__}, not an nn.Module")
    return model, module


def run(args: argparse.Namespace) -> int:
    """Entry point of ``camlens evaluate`` (``args`` from :func:`register_cli`'s parser)."""
    try:
        device = resolve_device(args.device)
        methods = _split(args.method, DEFAULT_METHODS)
        metrics = _check_names(_split(args.metric, DEFAULT_METRICS))
        for m in methods:
            get_method(m)
        layers = args.layer or None
        mean, std = args.mean, args.std
        if args.model_file:
            model, module = _load_model_file(args.model_file, args.model_fn)
            mean = mean or tuple(getattr(module, "MEAN", IMAGENET_MEAN))
            std = std or tuple(getattr(module, "STD", IMAGENET_STD))
            geometry = Geometry(squash=args.image_size or 224)
            model_name = f"{Path(args.model_file).name}"
        else:
            from .zoo import load_model

            zm = load_model(args.model, weights=args.weights)
            model = zm.model
            pre = zm.preprocessing
            mean, std = mean or pre.mean, std or pre.std
            geometry = Geometry(squash=args.image_size) if args.image_size else Geometry(None, pre.resize, pre.crop)
            layers = layers or ([zm.target_layer] if zm.target_layer else None)
            model_name = zm.name
        model = model.to(device)
        if args.folder:
            samples = load_samples(args.folder, args.annotations, geometry=geometry, limit=args.limit)
        else:
            samples = bundled_samples(geometry)[: args.limit]
        rows = evaluate(
            model, samples, methods, metrics, target_layers=layers, mean=mean, std=std,
            batch_size=args.batch_size, steps=args.steps, tolerance=args.tolerance,
            baseline=not args.no_baseline, seed=args.seed, progress=not args.no_progress,
        )
    except (CamLensError, OSError) as exc:
        print(f"camlens evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(rows))
    if args.output:
        meta = {
            "model": model_name, "folder": str(args.folder) if args.folder else "bundled photos",
            "images": len(samples), "methods": methods, "metrics": metrics, "steps": args.steps,
            "tolerance": args.tolerance, "device": str(device),
        }
        try:
            write_table(rows, args.output, meta)
        except (CamLensError, OSError) as exc:
            print(f"camlens evaluate: error: {exc}", file=sys.stderr)
            return 2
    return 0


def register_cli(subparsers: Any) -> None:
    """Add the ``evaluate`` sub-command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "evaluate",
        help="score CAM methods with faithfulness and localisation metrics on a folder of images",
        description="Run CAM methods x metrics over a folder of images (with optional boxes in "
        "annotations.json/.csv) and print a table; without a folder, run offline on the bundled "
        "EfficientNet-Lite0 and photos shipped in scikit-image/matplotlib. See docs/metrics.md.",
    )
    p.add_argument("folder", nargs="?", default=None, help="image folder (default: bundled photos)")
    p.add_argument("--annotations", "-a", default=None, help="JSON/CSV labels and boxes (default: FOLDER/annotations.json|csv)")
    p.add_argument("--model", default="efficientnet-lite0", help="zoo model name (default efficientnet-lite0)")
    p.add_argument("--weights", default="default", help="zoo weights: default, none, or a state_dict path")
    p.add_argument("--model-file", default=None, help="Python file whose load*() function returns the model (loaded in place)")
    p.add_argument("--model-fn", default=None, help="function of --model-file to call (default: its only load* function)")
    p.add_argument("--layer", "-l", action="append", default=None, help="target layer (repeatable; default: automatic)")
    p.add_argument("--method", "-m", action="append", default=None,
                   help=f"methods, comma-separated or repeated (default {','.join(DEFAULT_METHODS)})")
    p.add_argument("--metric", action="append", default=None,
                   help=f"metrics from {','.join(METRICS)} (default {','.join(DEFAULT_METRICS)})")
    p.add_argument("--image-size", type=int, default=None,
                   help="squash images to SIZE x SIZE (default: the zoo model's resize/crop; 224 with --model-file)")
    p.add_argument("--mean", type=_floats3, default=None, help="input normalisation mean (default: the model's)")
    p.add_argument("--std", type=_floats3, default=None, help="input normalisation std (default: the model's)")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch (default 16)")
    p.add_argument("--steps", type=int, default=20, help="deletion/insertion steps (default 20)")
    p.add_argument("--tolerance", type=float, default=15.0, help="pointing-game tolerance in pixels (default 15)")
    p.add_argument("--limit", type=int, default=None, help="use the first N images only")
    p.add_argument("--seed", type=int, default=0, help="seed of tie-breaking and ROAD noise")
    p.add_argument("--device", type=device_arg, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--output", "-o", default=None, help="write the table to a .csv or .json file")
    p.add_argument("--no-baseline", action="store_true", help="omit the image-centre baseline row")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
