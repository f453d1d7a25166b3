"""Build the report folder of a run: images, data files, and the static page.

One output folder (opens from ``file://``)::

    index.html, app.js, style.css   the page (copied from this package's ``static/``)
    data/report.js                  ``window.CAMLENS_REPORT = {...}``: one entry per image (id, label,
                                    prediction, score, each method's metrics), the run's summary
                                    table, metric directions, class names, boxes
    data/maps-NNNN.js               the maps at layer resolution, ``SHARD`` images per file, loaded
                                    by the page only when it shows one of those images
    img/K.jpg, thumb/K.jpg          image K as the model saw it (geometry applied) and its thumbnail

Maps travel at layer resolution (a 7x7 map is 49 numbers), quantised to 16 bits and base64
encoded; the page upsamples them (bilinear, ``align_corners=False``), min-max normalises and
colours them itself, as :meth:`camlens.app.runs.RunReader.map` does, so the opacity slider and the
method switch need no new files, and hovering reads the stored value of the cell under the cursor.

*Disagreement* between methods (a sort key): the mean, over pairs of methods, of the mean absolute
difference of their stored (min-max normalised) maps of the first target layer; in ``[0, 1]``.

*Top-5* (the image view): the run's ``top5_classes`` / ``top5_probs`` of the image, named with
the run's class names (a zoo model's categories, else the ImageFolder's class folders).
*Curves* (the overview): the mean over images of the stored per-image deletion / insertion curves
(``deletion_curve`` / ``insertion_curve``), per method and for the centre baseline. A run written
before these columns existed gives a report without them.

Example::

    # docs: skip needs a finished `camlens run` folder (tests/test_report.py builds one)
    from camlens.app.report import build_report
    build_report("runs/val", "report/")
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import uuid
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ArgumentError, CamLensError, DependencyError, OutputError
from ..evaluate import CENTER, METRICS
from ..zoo import Preprocessing
from ..runs.data import Item
from ..runs.store import CURVE_COLUMNS, MAPS_DIR, RunReader
from ..runs.summary import summarise

__all__ = ["STATIC_FILES", "ReportResult", "build_report"]

STATIC_FILES = ("index.html", "app.js", "style.css")
MARKER = "data/report.js"
"""A folder holding this file is a report (it may be replaced by a new build)."""


@dataclass
class ReportResult:
    """What :func:`build_report` wrote."""

    output: Path
    images: int
    methods: list[str]
    target: str
    missing_images: int
    """Images whose file could not be read any more (shown without a picture)."""


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise DependencyError("camlens report writes JPEG images: pip install pillow (or 'camlens[runs]')") from None
    return Image


def _clean(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return round(v, 6) if isinstance(v, float) else v


def _encode_map(a: np.ndarray) -> str:
    q = np.round(np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0) * 65535.0).astype("<u2")
    return base64.b64encode(q.tobytes()).decode("ascii")


def _disagreement(maps: list[np.ndarray]) -> np.ndarray | None:
    """Mean over method pairs of the mean |a - b| of their maps; ``maps[m]`` is ``(N, h, w)``."""
    if len(maps) < 2:
        return None
    flat = [np.nan_to_num(m.reshape(m.shape[0], -1).astype(np.float32)) for m in maps]
    total = np.zeros(flat[0].shape[0], dtype=np.float64)
    pairs = 0
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            total += np.abs(flat[i] - flat[j]).mean(axis=1)
            pairs += 1
    return total / pairs


def _mean_curves(curves: dict[str, dict[str, list[Any]]], steps: int) -> list[dict[str, Any]]:
    """Per curve column: ``x`` (fraction of pixels changed, ``k / steps``) and each method's mean curve."""
    out = []
    for col, by_method in curves.items():
        means = {}
        for m, rows in by_method.items():
            arr = np.asarray(rows, dtype=np.float64)
            if arr.ndim == 2 and arr.shape[0]:
                means[m] = {"mean": [_clean(float(v)) for v in np.nanmean(arr, axis=0)], "images": int(arr.shape[0])}
        if not means:
            continue
        k = len(next(iter(means.values()))["mean"])
        x = [round(i / (k - 1), 6) for i in range(k)] if k > 1 else [0.0]
        out.append({"name": col, "metric": col.replace("_curve", "_auc"), "x": x, "methods": means, "steps": steps})
    return out


def _items_by_id(config: dict[str, Any]) -> dict[str, Any]:
    """Items of a manifest or WebDataset run, re-read from its source: their boxes (the run's tables
    do not hold them) and, for tar shards, where each image member lies."""
    data, layout = config.get("data"), config.get("layout")
    if layout not in ("manifest", "webdataset") or not data:
        return {}
    from ..runs.data import discover

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # samples without an image: the run warned already
            src = discover(data, layout=layout)
    except CamLensError as exc:
        what = "boxes left out" if layout == "manifest" else "images and boxes left out"
        warnings.warn(f"camlens report: {what}, the {layout} {data!r} could not be read: {exc}", stacklevel=3)
        return {}
    return {it.image_id: it for it in src.items}


def _write_images(
    items: Sequence[Any], boxes: Sequence[Any], geometry: Preprocessing, out: Path, thumb: int, quality: int, workers: int
) -> tuple[list[bool], list[Any]]:
    """Write ``img/K.jpg`` and ``thumb/K.jpg``; returns which worked and the boxes in input pixels."""
    from ..runs.data import read_image

    Image = _pil()
    (out / "img").mkdir()
    (out / "thumb").mkdir()

    def one(k: int) -> tuple[bool, Any]:
        try:
            img = read_image(items[k])
        except (OSError, ValueError):
            return False, None
        b = np.asarray(boxes[k], dtype=np.float64) if boxes[k] else None
        arr, b = geometry.apply(img, b)
        im = Image.fromarray(np.round(arr * 255.0).astype(np.uint8))
        im.save(out / "img" / f"{k}.jpg", quality=quality)
        w, h = im.size
        s = thumb / max(w, h)
        if s < 1:
            im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
        im.save(out / "thumb" / f"{k}.jpg", quality=quality)
        return True, None if b is None or not len(b) else [[round(float(v), 1) for v in row] for row in b]

    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            done = list(pool.map(one, range(len(items))))
    else:
        done = [one(k) for k in range(len(items))]
    return [d[0] for d in done], [d[1] for d in done]


def _copy_static(out: Path) -> None:
    static = resources.files(__package__) / "static"
    for name in STATIC_FILES:
        (out / name).write_bytes((static / name).read_bytes())


def build_report(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    target: str | None = None,
    title: str | None = None,
    thumb_size: int = 128,
    shard_size: int = 256,
    quality: int = 85,
    workers: int | None = None,
) -> ReportResult:
    """Write the static report of the run in ``run_dir`` to ``out_dir`` (replaced if it is a report).

    ``target``: ``"label"`` or ``"pred"`` when the run explained both (default: ``"label"``).
    The folder is built next to ``out_dir`` under a temporary name and renamed when complete, so a
    failed build leaves no half-written report. An ``out_dir`` that exists, is not empty and is not
    a report is refused.
    """
    reader = RunReader(run_dir)
    settings, config = reader.settings, reader.config
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise OutputError(
            f"{str(out)!r} exists and is not a camlens report; pass a new or empty folder as -o (a previous report is replaced)"
        )
    if thumb_size < 8 or shard_size < 1 or not 1 <= quality <= 100:
        raise ArgumentError(f"thumb_size >= 8, shard_size >= 1 and quality 1..100 expected; got {thumb_size}, {shard_size}, {quality}")
    kinds = list(settings["targets"])
    if target is None:
        target = "label" if "label" in kinds else kinds[0]
    if target not in kinds:
        raise ArgumentError(f"target {target!r} is not in this run; it explained {', '.join(kinds)}")

    import pyarrow.compute as pc

    full = reader.table()
    table = full.filter(pc.equal(full["target"], target))
    if table.num_rows == 0:
        raise ArgumentError(f"run {str(run_dir)!r} has no finished images yet; run `camlens run` to the end (or further) first")
    metrics = list(settings["metrics"])
    methods = [m for m in settings["methods"]]
    cols = table.to_pydict()
    order = sorted(set(cols["index"]))
    pos = {idx: k for k, idx in enumerate(order)}
    n = len(order)
    image_id: list[Any] = [None] * n
    path: list[Any] = [None] * n
    label: list[Any] = [None] * n
    pred: list[Any] = [None] * n
    cls: list[Any] = [None] * n
    score: list[Any] = [None] * n
    names = methods + ([CENTER] if CENTER in set(cols["method"]) else [])
    values = {m: {k: [None] * n for k in metrics} for m in names}
    has_top = "top5_classes" in cols
    top5: list[Any] = [None] * n
    curve_cols = [c for c in (CURVE_COLUMNS[m] for m in metrics if m in CURVE_COLUMNS) if c in cols]
    curves: dict[str, dict[str, list[Any]]] = {c: {m: [] for m in names} for c in curve_cols}
    for r in range(table.num_rows):
        k = pos[cols["index"][r]]
        m = cols["method"][r]
        if m not in values:
            continue
        if m != CENTER or image_id[k] is None:
            image_id[k], path[k], label[k] = cols["image_id"][r], cols["path"][r], cols["label"][r]
            pred[k], cls[k] = cols["prediction"][r], cols["class"][r]
        if m != CENTER and score[k] is None:
            score[k] = _clean(cols["score"][r])
        for mt in metrics:
            values[m][mt][k] = _clean(cols[mt][r])
        if has_top and top5[k] is None and cols["top5_classes"][r] is not None:
            top5[k] = [[int(c), round(float(p), 5)] for c, p in zip(cols["top5_classes"][r], cols["top5_probs"][r])]
        for c in curve_cols:
            if cols[c][r] is not None:
                curves[c][m].append(cols[c][r])

    summary = reader.summary()
    rows = [r for r in summary["rows"] if r.get("target") == target] if summary else summarise(table, names, [target], metrics)

    maps_info = settings.get("maps")
    layer_maps: dict[str, list[np.ndarray]] = {}
    if maps_info:
        import zarr

        group = zarr.open_group(str(Path(run_dir) / MAPS_DIR), mode="r")
        idx = np.asarray(order)
        for m in methods:
            layer_maps[m] = [np.asarray(group[f"{m}/{target}/{j}"][:], dtype=np.float32)[idx] for j in range(len(maps_info["layers"]))]
    dis = _disagreement([layer_maps[m][0] for m in methods]) if maps_info else None

    geo = settings["geometry"]
    resize = tuple(geo["resize"]) if isinstance(geo.get("resize"), list) else geo.get("resize")
    geometry = Preprocessing(resize, geo.get("crop"))
    found = _items_by_id(config)
    boxes = [found[i].boxes if i in found else None for i in image_id]
    sources = [found.get(i) or Item(i, p) for i, p in zip(image_id, path)]
    tmp = out.parent / f".tmp-report-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    try:
        (tmp / "data").mkdir()
        workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        ok, boxes_in = _write_images(sources, boxes, geometry, tmp, thumb_size, quality, workers)
        shards = 0
        if maps_info:
            shards = (n + shard_size - 1) // shard_size
            for s in range(shards):
                lo, hi = s * shard_size, min(n, (s + 1) * shard_size)
                payload = {m: [[_encode_map(a[k]) for a in layer_maps[m]] for k in range(lo, hi)] for m in methods}
                text = f"window.camlensMapsLoaded({s}, {json.dumps(payload, separators=(',', ':'))});\n"
                (tmp / "data" / f"maps-{s:04d}.js").write_text(text)
        classes = config.get("class_names") or config.get("classes")
        data = {
            "version": 1,
            "title": title or f"camlens report: {Path(run_dir).resolve().name}",
            "run": str(Path(run_dir).resolve()),
            "model": settings.get("model"),
            "target": target,
            "targets": kinds,
            "inputSize": (maps_info or {}).get("input_size") or None,
            "methods": methods,
            "baseline": CENTER if CENTER in values else None,
            "metrics": [{"name": k, "higher": METRICS[k][0], "desc": METRICS[k][2]} for k in metrics if k in METRICS],
            "summary": [{k: _clean(v) for k, v in r.items()} for r in rows],
            "classes": classes,
            "images": {
                "id": image_id, "label": label, "pred": pred, "cls": cls, "score": score, "img": ok, "boxes": boxes_in,
            },
            "values": values,
            "disagreement": None if dis is None else [_clean(float(v)) for v in dis],
            "top5": top5 if has_top else None,
            "curves": _mean_curves(curves, int(settings.get("steps") or 0)),
            "maps": {"layers": maps_info["layers"], "sizes": maps_info["sizes"], "shard": shard_size, "shards": shards}
            if maps_info else None,
            "errors": reader.errors().select(["image_id", "reason"]).slice(0, 500).to_pylist(),
        }
        text = "window.CAMLENS_REPORT = " + json.dumps(data, separators=(",", ":"), allow_nan=False) + ";\n"
        (tmp / MARKER).write_text(text)
        _copy_static(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    missing = ok.count(False)
    if missing:
        warnings.warn(
            f"camlens report: {missing} of {n} image files could not be read (moved since the run?); they show without a picture",
            stacklevel=2,
        )
    return ReportResult(out, n, methods, target, missing)
