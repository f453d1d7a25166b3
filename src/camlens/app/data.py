"""Images and their ground truth for ``camlens evaluate``: a folder, an annotation file, or bundled photos.

Annotations (optional; ``annotations.json`` or ``annotations.csv`` in the folder is used
automatically):

* JSON: a list of ``{"file": "img.jpg", "label": 281, "boxes_xyxy": [[x1, y1, x2, y2], ...]}``
  (or ``{"annotations": [...]}``); ``file`` is relative to the annotation file's folder;
* CSV with a header ``file,label,x1,y1,x2,y2``: one row per box (repeat the file for several
  boxes; leave the box cells empty for none, the label cell empty for "use the top class").

Boxes are in pixel coordinates of the image file (inclusive indices) and follow the image
through resizing and cropping (:func:`camlens.image.resize_and_crop`). A malformed file raises
:class:`~camlens.errors.FileFormatError` naming the file, the entry (JSON) or line (CSV), what was
expected and what was found.

Example::

    import tempfile
    from pathlib import Path
    from PIL import Image
    from camlens.app.data import load_samples
    from camlens.app.zoo import Preprocessing

    folder = Path(tempfile.mkdtemp())
    Image.new("RGB", (40, 30), "red").save(folder / "a.png")
    samples = load_samples(folder, preprocessing=Preprocessing(32, 24))
    assert len(samples) == 1
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DependencyError, FileFormatError, MissingFileError
from ..image import load_image
from .zoo import Preprocessing

__all__ = ["IMAGE_SUFFIXES", "Sample", "load_annotations", "load_samples", "bundled_samples"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".jfif", ".tif", ".tiff")

_EXPECTED_JSON = 'a JSON list of {"file": "img.jpg", "label": 281, "boxes_xyxy": [[x1, y1, x2, y2], ...]} objects'
_EXPECTED_CSV = "a CSV file with the header file,label,x1,y1,x2,y2"


@dataclass
class Sample:
    """One image as the model sees it (geometry applied), with optional label and boxes."""

    name: str
    image: np.ndarray
    """Float RGB ``(H, W, 3)`` in ``[0, 1]`` after resizing/cropping."""
    label: int | None = None
    boxes: np.ndarray | None = None
    """``(K, 4)`` xyxy boxes in the pixel grid of ``image``; ``None``: no ground truth."""


# ------------------------------------------------------------------------------ annotations
def _label(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        isinstance(value, float) and not value.is_integer()
    ):
        raise FileFormatError(f"{where}: 'label' must be a class index (an integer >= 0) or null; got {value!r}")
    if value < 0:
        raise FileFormatError(f"{where}: 'label' must be a class index >= 0; got {value!r}")
    return int(value)


def _box(values: Any, where: str) -> list[float]:
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        n = f"{len(values)} values" if isinstance(values, (list, tuple)) else f"a {type(values).__name__}"
        raise FileFormatError(f"{where}: got {n} {values!r:.60}; expected a box [x1, y1, x2, y2] of 4 numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise FileFormatError(f"{where}: {values!r:.60} is not 4 finite numbers; expected a box [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (float(v) for v in values)
    if x2 < x1 or y2 < y1:
        raise FileFormatError(f"{where}: box {values!r} has x2 < x1 or y2 < y1; expected [x1, y1, x2, y2] with x1 <= x2, y1 <= y2")
    return [x1, y1, x2, y2]


def _boxes(value: Any, where: str) -> np.ndarray | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise FileFormatError(f"{where}: 'boxes_xyxy' must be a list of [x1, y1, x2, y2] boxes; got {value!r:.60}")
    if len(value) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        value = [value]  # one box given without the outer list
    boxes = [_box(b, f"{where}, box {k}") for k, b in enumerate(value)]
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _read_text(path: Path, expected: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            f"annotation file {str(path)!r} is not a UTF-8 text file (undecodable byte at offset {exc.start}); expected {expected}"
        ) from None


def _load_json(path: Path) -> list[dict[str, Any]]:
    text = _read_text(path, _EXPECTED_JSON)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(
            f"annotation file {str(path)!r}, line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg}); expected {_EXPECTED_JSON}"
        ) from None
    if isinstance(data, dict) and "annotations" in data:
        data = data["annotations"]
    if not isinstance(data, list):
        raise FileFormatError(
            f"annotation file {str(path)!r}: got a JSON {type(data).__name__}; expected {_EXPECTED_JSON} "
            "(or {\"annotations\": [...]})"
        )
    entries: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(item, dict) or "file" not in item:
            raise FileFormatError(f"{where} has no 'file' key; got {item!r:.80}; expected {_EXPECTED_JSON}")
        if not isinstance(item["file"], str) or not item["file"]:
            raise FileFormatError(f"{where}: 'file' must be a relative image path (a string); got {item['file']!r:.60}")
        where = f"{path}: entry {i} ({item['file']!r})"
        entries[item["file"]] = {
            "file": path.parent / item["file"],
            "label": _label(item.get("label"), where),
            "boxes": _boxes(item.get("boxes_xyxy", item.get("boxes")), where),
            "where": where,
        }
    return list(entries.values())


def _number(text: str, column: str, where: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise FileFormatError(f"{where}: {column} is {text!r}; expected a number") from None
    if not math.isfinite(v):
        raise FileFormatError(f"{where}: {column} is {text!r}; expected a finite number")
    return v


def _load_csv(path: Path) -> list[dict[str, Any]]:
    text = _read_text(path, _EXPECTED_CSV)
    reader = csv.DictReader(text.splitlines())
    try:
        fields = reader.fieldnames
        if fields is None or "file" not in fields:
            raise FileFormatError(f"annotation file {str(path)!r}: header is {fields}; expected {_EXPECTED_CSV}")
        entries: dict[str, dict[str, Any]] = {}
        for row in reader:
            where = f"{path}: line {reader.line_num}"
            name = (row.get("file") or "").strip()
            if not name:
                raise FileFormatError(f"{where}: the file cell is empty; expected a relative image path")
            e = entries.setdefault(name, {"file": path.parent / name, "label": None, "boxes": None, "where": where})
            label = (row.get("label") or "").strip()
            if label:
                value = _number(label, "label", where)
                e["label"] = _label(int(value) if value.is_integer() else value, where)
            coords = [(row.get(k) or "").strip() for k in ("x1", "y1", "x2", "y2")]
            if any(coords):
                if not all(coords):
                    raise FileFormatError(f"{where}: box cells {coords}; expected all four of x1,y1,x2,y2 (or none)")
                box = _box([_number(c, k, where) for c, k in zip(coords, ("x1", "y1", "x2", "y2"))], where)
                b = np.asarray([box])
                e["boxes"] = b if e["boxes"] is None else np.concatenate([e["boxes"], b])
    except csv.Error as exc:
        raise FileFormatError(f"annotation file {str(path)!r}, line {reader.line_num}: {exc}; expected {_EXPECTED_CSV}") from None
    return list(entries.values())


def load_annotations(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON or CSV annotation file -> ``[{"file": Path, "label": int|None, "boxes": (K,4)|None, "where": str}]``.

    ``where`` names the entry (JSON) or line (CSV) for later messages.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"annotation file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _load_json(path)
    if suffix == ".csv":
        return _load_csv(path)
    raise FileFormatError(f"annotation file must be .json or .csv; got {path.name!r}")


# ------------------------------------------------------------------------------ samples
def load_samples(
    folder: str | Path,
    annotations: str | Path | None = None,
    *,
    preprocessing: Preprocessing | None = None,
    size: int | None = None,
    limit: int | None = None,
) -> list[Sample]:
    """Images of ``folder`` (or those listed in ``annotations``), as the model will see them.

    ``annotations``: a JSON/CSV file (see the module docs); default: ``folder/annotations.json``
    or ``.csv`` when present. ``preprocessing``: its resize and crop are applied (boxes move
    along); ``size``: squash every image to ``size x size`` instead (default 224).
    ``limit``: the first ``limit`` images only.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"image folder {str(folder)!r} does not exist or is not a folder")
    if preprocessing is None:
        preprocessing = Preprocessing(resize=(size or 224, size or 224), crop=None)
    if annotations is None:
        for cand in ("annotations.json", "annotations.csv"):
            if (folder / cand).is_file():
                annotations = folder / cand
                break
    if annotations is not None:
        items = load_annotations(annotations)
    else:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        items = [{"file": p, "label": None, "boxes": None, "where": str(p)} for p in files]
    if not items:
        raise MissingFileError(f"no images found in {str(folder)!r} (looked for {', '.join(IMAGE_SUFFIXES)})")
    if limit is not None:
        items = items[: int(limit)]
    samples = []
    for item in items:
        path = Path(item["file"])
        if not path.is_file():
            raise MissingFileError(f"{item['where']}: image {str(path)!r} does not exist")
        img, boxes = preprocessing.apply(load_image(path), item["boxes"])
        samples.append(Sample(path.name, img, item["label"], boxes))
    return samples


def bundled_samples(preprocessing: Preprocessing) -> list[Sample]:
    """Photos shipped inside registry packages (scikit-image, matplotlib): no download."""
    samples = []
    try:
        from skimage import data

        for name in ("chelsea", "coffee", "astronaut", "rocket"):
            img = np.asarray(getattr(data, name)(), dtype=np.float32) / 255.0
            samples.append(Sample(name, preprocessing.geometry(img[..., :3])))
    except ImportError:
        pass
    try:
        from matplotlib import cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            img = np.asarray(Image.open(fh).convert("RGB"), dtype=np.float32) / 255.0
        samples.append(Sample("grace_hopper", preprocessing.geometry(img)))
    except (ImportError, FileNotFoundError, ValueError):
        pass
    if not samples:
        raise DependencyError(
            "no bundled photos found: install the demo extra (pip install 'camlens[demo]') or pass an image folder"
        )
    return samples
