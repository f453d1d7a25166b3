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

* WebDataset tar shards: one ``.tar`` file, a folder of ``*.tar`` files (searched recursively, no
  images besides them), or a glob pattern (``"shards/train-*.tar"``). Read with Python's
  :mod:`tarfile` (no ``webdataset`` package needed): members are grouped into samples by their
  *key*, the member path up to the first dot of its file name (``"dir/0001.seg.png"``: key
  ``"dir/0001"``, extension ``"seg.png"``), WebDataset's rule. A sample's image is its ``.jpg``,
  ``.jpeg``, ``.png`` or ``.webp`` member (the first of these, in that order); its label the
  integer text of a ``.cls`` member, or ``"label"`` of a ``.json`` member, which may also hold
  ``"boxes"`` (xyxy pixels). Samples without an image are left out with a warning. The id of a
  sample is ``<shard>/<key>`` (``"train-0000.tar/0001"``; the shard's path relative to the
  folder, its file name otherwise); its ``path`` is ``<shard path>/<image member>``. Only the
  member headers and label members are read while listing; the image bytes are read (by offset,
  so the shard must be uncompressed) and decoded in the DataLoader workers.

Items are sorted by id, so every process and every restart sees the same list in the same order.
Boxes are xyxy pixel coordinates (inclusive) of the image file and follow it through resizing and
cropping (:class:`camlens.app.zoo.Preprocessing`, i.e. :func:`camlens.image.resize_and_crop`).
"""

from __future__ import annotations

import csv
import glob
import io
import json
import tarfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import ArgumentError, CamLensError, FileFormatError, MissingFileError
from ...image import load_image, preprocess_image
from ..data import IMAGE_SUFFIXES
from ..zoo import Preprocessing

__all__ = ["Batch", "ImageDataset", "Item", "LAYOUTS", "Source", "collate", "discover", "read_image"]

MANIFEST_SUFFIXES = (".jsonl", ".json", ".csv")
TAR_SUFFIX = ".tar"
WDS_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
"""Image members of a WebDataset sample, by preference when a sample has several."""
LAYOUTS = ("auto", "folder", "imagefolder", "manifest", "webdataset")


@dataclass(frozen=True)
class Item:
    """One input image: a stable id (the result store's key), where it is, label and boxes."""

    image_id: str
    path: str
    label: int | None = None
    boxes: tuple[tuple[float, float, float, float], ...] | None = None
    member: tuple[str, int, int] | None = None
    """WebDataset: ``(shard file, byte offset, byte size)`` of the image member; ``None`` for a file."""


@dataclass
class Source:
    """What :func:`discover` found: the sorted items, the layout, and class names when known."""

    items: list[Item]
    layout: str
    """``"folder"``, ``"imagefolder"``, ``"manifest"`` or ``"webdataset"``."""
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


def _wds_key(name: str) -> tuple[str, str]:
    """WebDataset's split of a member path: key (up to the first dot of the file name), extension."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext.lower() if dot else "")


def _read_shard(shard: Path, shard_id: str) -> tuple[list[Item], int]:
    """The samples of one uncompressed tar shard, and how many keys had no image."""
    samples: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                key, ext = _wds_key(m.name)
                s = samples.setdefault(key, {})
                where = f"{shard}:{m.name}"
                if ext in WDS_IMAGE_EXTS:
                    s.setdefault("images", {})[ext] = (m.name, m.offset_data, m.size)
                elif ext in ("cls", "json"):
                    fh = tar.extractfile(m)
                    text = fh.read().decode("utf-8", "replace") if fh is not None else ""
                    if ext == "cls":
                        s["cls"] = _label(text.strip(), where)
                    else:
                        try:
                            obj = json.loads(text)
                        except json.JSONDecodeError as exc:
                            raise FileFormatError(f"{where}: not valid JSON ({exc.msg}); expected {{\"label\": 3, \"boxes\": [...]}}") from None
                        if isinstance(obj, dict):
                            s["json_label"] = _label(obj.get("label"), where)
                            s["boxes"] = _boxes(obj.get("boxes", obj.get("boxes_xyxy")), where)
                        elif isinstance(obj, int) and not isinstance(obj, bool):
                            s["json_label"] = obj
    except tarfile.ReadError as exc:
        raise FileFormatError(
            f"{shard}: not an uncompressed tar file ({exc}); WebDataset shards are read by offset, so "
            "decompress .tar.gz shards first (gunzip)"
        ) from None
    items, missing = [], 0
    for key, s in samples.items():
        images = s.get("images")
        if not images:
            missing += 1
            continue
        name, offset, size = next(images[e] for e in WDS_IMAGE_EXTS if e in images)
        label = s.get("cls", s.get("json_label"))
        items.append(Item(f"{shard_id}/{key}", f"{shard}/{name}", label, s.get("boxes"), (str(shard), offset, size)))
    return items, missing


def _shards(path_or_glob: str) -> tuple[list[tuple[Path, str]], bool]:
    """``(shard path, shard id)`` of a .tar file, a folder of .tar files or a glob; and whether it is one."""
    path = Path(path_or_glob)
    if path.is_file():
        return ([(path, path.name)], True) if path.suffix.lower() == TAR_SUFFIX else ([], False)
    if path.is_dir():
        tars = sorted(p for p in path.rglob(f"*{TAR_SUFFIX}") if p.is_file())
        return [(p, p.relative_to(path).as_posix()) for p in tars], bool(tars)
    if glob.has_magic(path_or_glob):
        tars = sorted(Path(p) for p in glob.glob(path_or_glob, recursive=True) if p.lower().endswith(TAR_SUFFIX))
        return [(p, p.name) for p in tars], True
    return [], False


def _read_webdataset(data: str) -> list[Item]:
    shards, _ = _shards(data)
    if not shards:
        raise MissingFileError(f"no .tar shards found for {data!r}; pass a .tar file, a folder of .tar files or a glob like 'shards/*.tar'")
    items: list[Item] = []
    missing = 0
    for shard, shard_id in shards:
        found, skipped = _read_shard(shard, shard_id)
        items += found
        missing += skipped
    if missing:
        warnings.warn(
            f"{missing} WebDataset sample(s) in {data!r} have no image member ({', '.join('.' + e for e in WDS_IMAGE_EXTS)}) "
            "and are left out", stacklevel=3,
        )
    seen: set[str] = set()
    for it in items:
        if it.image_id in seen:
            raise FileFormatError(f"{data}: sample {it.image_id!r} appears twice; give each shard a distinct file name")
        seen.add(it.image_id)
    return items


def discover(data: str | Path, *, layout: str = "auto", limit: int | None = None) -> Source:
    """Find the items of ``data`` (a folder or a manifest file), sorted by id.

    ``layout``: ``"auto"`` (a manifest file; WebDataset for a ``.tar`` file, a glob, or a folder
    whose only images are in ``.tar`` shards; else ImageFolder when ``data`` holds sub-folders and
    no images of its own, else a plain folder), ``"folder"``, ``"imagefolder"``, ``"manifest"`` or
    ``"webdataset"``.
    ``limit``: the first ``limit`` items in id order.
    """
    path = Path(data)
    if layout not in LAYOUTS:
        raise ArgumentError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    if layout == "auto":
        if path.is_dir():  # shards and no images of its own (else a folder that also holds tar files)
            suffixes = {p.suffix.lower() for p in path.rglob("*")}
            is_wds = TAR_SUFFIX in suffixes and not suffixes.intersection(IMAGE_SUFFIXES)
        else:
            is_wds = path.suffix.lower() == TAR_SUFFIX or (not path.exists() and glob.has_magic(str(data)))
        if is_wds:
            layout = "webdataset"
    if layout == "webdataset":
        items = _read_webdataset(str(data))
        if not items:
            raise MissingFileError(f"no samples with an image found in the WebDataset shards {str(data)!r}")
        items.sort(key=lambda it: it.image_id)
        return Source(items[: int(limit)] if limit is not None else items, "webdataset", None)
    if not path.exists():
        raise MissingFileError(
            f"DATA {str(path)!r} does not exist; pass an image folder, a manifest (.jsonl/.json/.csv) or WebDataset .tar shards"
        )
    classes = None
    if path.is_file():
        if path.suffix.lower() not in MANIFEST_SUFFIXES or layout not in ("auto", "manifest"):
            raise FileFormatError(
                f"DATA file {path.name!r} is not a manifest or a shard: expected a .jsonl, .json, .csv or .tar file, or a folder"
            )
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
def read_image(item: Item) -> np.ndarray:
    """The image of ``item`` as float RGB ``(H, W, 3)`` in ``[0, 1]``: its file, or its tar member.

    A tar member is read by its offset and size (no tarfile parsing) and decoded as
    :func:`camlens.image.load_image` decodes a file; an unreadable one raises
    :class:`~camlens.errors.FileFormatError`.
    """
    if item.member is None:
        return load_image(item.path)
    from PIL import Image, UnidentifiedImageError

    from ...image import _pixels  # load_image's decoding, for bytes rather than a path

    shard, offset, size = item.member
    try:
        with open(shard, "rb") as fh:
            fh.seek(offset)
            data = fh.read(size)
    except FileNotFoundError:
        raise MissingFileError(f"shard {shard!r} of image {item.image_id!r} does not exist") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return _pixels(im, item.path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, CamLensError):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise FileFormatError(
            f"cannot read image {item.path!r}: not an image Pillow can open ({type(exc).__name__}: {first})"
        ) from None


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
            img = read_image(item)
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
