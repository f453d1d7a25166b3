"""Inputs of ``camlens run``: which images, their stable ids, labels and boxes, and their decoding.

``DATA`` may be

* a folder of images, searched recursively (no labels): the id of an image is its path relative
  to the folder, with ``/`` separators (``"cats/001.jpg"``);
* an ImageFolder layout (``DATA/<class>/.../<image>``, no images directly in ``DATA``): the label is
  the index of the class folder among the sorted class folder names, torchvision's rule (so the
  ImageNet validation set in ``<wnid>/`` folders gets the standard class indices);
* a manifest file, relative paths resolved against the manifest's folder:

  - JSON lines (``.jsonl``): one ``{"path": "a.jpg", "label": 3, "boxes": [[x1, y1, x2, y2], ...]}``
    per line (``"file"`` is accepted for ``"path"``, ``"boxes_xyxy"`` for ``"boxes"``);
  - JSON (``.json``): a list of such objects, or ``{"annotations": [...]}`` (``camlens evaluate``'s
    annotation files);
  - CSV (``.csv``): a header with ``path`` (or ``file``), optional ``label``, optional
    ``x1,y1,x2,y2`` (one row per box; repeat the path for more boxes, leave them empty for none).

  The id of a manifest entry is its path as written in the manifest.

WebDataset tar shards are not supported yet (the ``webdataset`` package is not a dependency).

Items are sorted by id, so every process and every restart sees the same list in the same order.
Boxes are xyxy pixel coordinates (inclusive) of the image file and follow it through resizing and
cropping (:class:`camlens.app.zoo.Preprocessing`, i.e. :func:`camlens.image.resize_and_crop`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import ArgumentError, FileFormatError, MissingFileError
from ...image import load_image, preprocess_image
from ..data import IMAGE_SUFFIXES
from ..zoo import Preprocessing

__all__ = ["Batch", "ImageDataset", "Item", "Source", "collate", "discover"]

MANIFEST_SUFFIXES = (".jsonl", ".json", ".csv")


@dataclass(frozen=True)
class Item:
    """One input image: a stable id (the result store's key), where it is, label and boxes."""

    image_id: str
    path: str
    label: int | None = None
    boxes: tuple[tuple[float, float, float, float], ...] | None = None


@dataclass
class Source:
    """What :func:`discover` found: the sorted items, the layout, and class names when known."""

    items: list[Item]
    layout: str
    """``"folder"``, ``"imagefolder"`` or ``"manifest"``."""
    classes: list[str] | None = None


def _images_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def _boxes(value: Any, where: str) -> tuple[tuple[float, float, float, float], ...] | None:
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1, 4)
    except (ValueError, TypeError):
        raise FileFormatError(f"{where}: boxes must be a list of [x1, y1, x2, y2]; got {value!r:.80}") from None
    return tuple(tuple(float(v) for v in row) for row in arr)  # type: ignore[misc]


def _label(value: Any, where: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FileFormatError(f"{where}: label must be an integer class index; got {value!r}") from None


def _manifest_entry(obj: Any, where: str, root: Path) -> Item:
    if not isinstance(obj, dict):
        raise FileFormatError(f"{where}: expected an object with 'path', 'label' and 'boxes'; got {obj!r:.80}")
    rel = obj.get("path", obj.get("file"))
    if not isinstance(rel, str) or not rel:
        raise FileFormatError(f"{where}: entry has no 'path' (or 'file'); got keys {sorted(obj)}")
    boxes = obj.get("boxes", obj.get("boxes_xyxy"))
    return Item(Path(rel).as_posix(), str(root / rel), _label(obj.get("label"), where), _boxes(boxes, where))


def _read_manifest(path: Path) -> list[Item]:
    root = path.parent
    suffix = path.suffix.lower()
    items: list[Item] = []
    if suffix == ".jsonl":
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise FileFormatError(f"{path}:{n}: not valid JSON ({exc.msg}); expected one object per line") from None
                items.append(_manifest_entry(obj, f"{path}:{n}", root))
    elif suffix == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            data = data.get("annotations")
        if not isinstance(data, list):
            raise FileFormatError(f"{path}: expected a JSON list of {{'path', 'label', 'boxes'}} objects (or {{'annotations': [...]}})")
        items = [_manifest_entry(obj, f"{path} entry {i}", root) for i, obj in enumerate(data)]
    else:  # .csv: one row per box
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            fields = set(reader.fieldnames or ())
            key = "path" if "path" in fields else "file" if "file" in fields else None
            if key is None:
                raise FileFormatError(f"{path}: expected a CSV header 'path,label,x1,y1,x2,y2'; got {reader.fieldnames}")
            merged: dict[str, dict[str, Any]] = {}
            for n, row in enumerate(reader, 2):
                where = f"{path}:{n}"
                e = merged.setdefault(row[key], {"label": None, "boxes": []})
                lb = _label(row.get("label"), where)
                e["label"] = lb if lb is not None else e["label"]
                coords = [row.get(k) for k in ("x1", "y1", "x2", "y2")]
                if all(c not in (None, "") for c in coords):
                    e["boxes"].append([float(c) for c in coords])  # type: ignore[arg-type]
            for rel, e in merged.items():
                items.append(Item(Path(rel).as_posix(), str(root / rel), e["label"], _boxes(e["boxes"] or None, str(path))))
    seen: set[str] = set()
    for it in items:
        if it.image_id in seen:
            raise FileFormatError(f"{path}: image {it.image_id!r} is listed twice; list each image once (boxes as a list)")
        seen.add(it.image_id)
    return items


def discover(data: str | Path, *, layout: str = "auto", limit: int | None = None) -> Source:
    """Find the items of ``data`` (a folder or a manifest file), sorted by id.

    ``layout``: ``"auto"`` (a manifest file, else ImageFolder when ``data`` holds sub-folders and
    no images of its own, else a plain folder), ``"folder"``, ``"imagefolder"`` or ``"manifest"``.
    ``limit``: the first ``limit`` items in id order.
    """
    path = Path(data)
    if layout not in ("auto", "folder", "imagefolder", "manifest"):
        raise ArgumentError(f"layout must be auto, folder, imagefolder or manifest; got {layout!r}")
    if not path.exists():
        raise MissingFileError(f"DATA {str(path)!r} does not exist; pass an image folder or a manifest (.jsonl/.json/.csv)")
    classes = None
    if path.is_file():
        if path.suffix.lower() not in MANIFEST_SUFFIXES or layout not in ("auto", "manifest"):
            raise FileFormatError(f"DATA file {path.name!r} is not a manifest: expected a .jsonl, .json or .csv file, or a folder")
        items, layout = _read_manifest(path), "manifest"
    elif layout == "manifest":
        raise ArgumentError(f"--layout manifest needs a manifest file as DATA; {str(path)!r} is a folder")
    else:
        top_images = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if layout == "auto":
            layout = "imagefolder" if subdirs and not top_images else "folder"
        if layout == "imagefolder":
            if not subdirs:
                raise MissingFileError(f"ImageFolder layout expects class sub-folders in {str(path)!r}; found none")
            classes = [d.name for d in subdirs]
            items = [
                Item(p.relative_to(path).as_posix(), str(p), label)
                for label, d in enumerate(subdirs)
                for p in _images_under(d)
            ]
        else:
            items = [Item(p.relative_to(path).as_posix(), str(p)) for p in _images_under(path)]
    if not items:
        raise MissingFileError(f"no images found in {str(path)!r} (looked for {', '.join(IMAGE_SUFFIXES)})")
    items.sort(key=lambda it: it.image_id)
    if limit is not None:
        items = items[: int(limit)]
    return Source(items, layout, classes)


# ------------------------------------------------------------------------------ decoding
@dataclass
class Batch:
    """A collated work unit: the images that decoded (normalised, ``(n, 3, H, W)``) and those that did not."""

    indices: list[int]
    """Dataset indices of the images in ``x``, in order."""
    x: torch.Tensor | None
    boxes: list[np.ndarray | None]
    """Per image of ``x``: ``(K, 4)`` boxes in the model input's pixel grid, or ``None``."""
    errors: list[tuple[int, str]]
    """``(dataset index, reason)`` of the images that could not be read or prepared."""


class ImageDataset(torch.utils.data.Dataset):
    """Decodes item ``i`` (in a DataLoader worker): ``(i, image or None, boxes, error reason)``.

    A file Pillow cannot read, or one the geometry cannot use, gives an error reason instead of an
    exception, so one bad image never stops a run.
    """

    def __init__(self, items: Sequence[Item], geometry: Preprocessing) -> None:
        self.items = list(items)
        self.geometry = geometry

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, np.ndarray | None, str | None]:
        item = self.items[i]
        try:
            img = load_image(item.path)
            boxes = None if item.boxes is None else np.asarray(item.boxes, dtype=np.float64)
            shown, boxes = self.geometry.apply(img, boxes)
        except Exception as exc:  # noqa: BLE001 - Pillow and the geometry raise many kinds; each becomes a row
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return i, None, None, f"{type(exc).__name__}: {msg}"[:500]
        return i, shown, boxes, None


class Collate:
    """Stacks the decoded images of a work unit and normalises them ``(x - mean) / std``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, samples: list[tuple[int, Any, Any, str | None]]) -> Batch:
        good = [s for s in samples if s[3] is None]
        errors = [(s[0], str(s[3])) for s in samples if s[3] is not None]
        x = preprocess_image(np.stack([s[1] for s in good]), self.mean, self.std) if good else None
        return Batch([s[0] for s in good], x, [s[2] for s in good], sorted(errors))


def collate(mean: Sequence[float], std: Sequence[float]) -> Collate:
    """The DataLoader ``collate_fn`` of a run (picklable, for worker processes)."""
    return Collate(mean, std)
