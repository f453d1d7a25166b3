"""The results store of ``camlens run``: Parquet tables and Zarr maps, written as the run goes.

One output folder::

    run.json              the settings (checked on restart: a resumed run must compute the same thing)
    items.parquet         every input: index, image_id, path, label (written once, at the start)
    table/part-*.parquet  one row per image x method x target (read the folder as one dataset):
                          ids, label, prediction, class, score, each metric, the image's top-5
                          classes and probabilities, the deletion / insertion curves
    errors/part-*.parquet images that could not be read, with the reason
    maps.zarr/            METHOD/TARGET/LAYER arrays (images, h, w) at layer resolution
    summary.json/.txt     per method and target: the mean of every metric (when the run completes)

Commit protocol. Work comes in *units* (``batch_size`` consecutive items); a unit's maps go into
the Zarr chunk of that unit (chunks are one unit long, so no two processes ever write the same
chunk file), then its error rows, then its table rows; a table part is written to a temporary name
and renamed, and its Parquet metadata lists the units it holds. A unit is finished exactly when a
table part lists it. A process killed at any point leaves at most maps and error parts of units no
part lists: a restart deletes those error parts and redoes those units, overwriting their chunks
with the same values. So the finished store never holds a duplicate or a missing row.

Maps: for each target layer, the method's map at layer resolution after its ReLU (for the methods
that apply one), min-max normalised to ``[0, 1]``, ``float16`` by default. Bilinear upsampling and
min-max normalisation commute with a positive affine rescaling, so upsampling a stored map and
normalising it again gives the method's ``cam`` (to float16 precision, ~1e-3); with several layers
the reader combines them as the method does (mean). Rows of images that could not be read hold NaN.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import CamLensError, ArgumentError, DependencyError

__all__ = ["CONFIG_FILE", "ITEMS_FILE", "NotARunError", "RunReader", "RunStore", "open_run", "part_name"]

CONFIG_FILE = "run.json"
ITEMS_FILE = "items.parquet"
TABLE_DIR = "table"
ERRORS_DIR = "errors"
MAPS_DIR = "maps.zarr"
SUMMARY_JSON = "summary.json"
SUMMARY_TXT = "summary.txt"
UNITS_KEY = b"camlens.units"
FORMAT_VERSION = 1


class NotARunError(CamLensError, FileNotFoundError):
    """The folder given to the reader is not the output folder of ``camlens run``."""


def _pa() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet
    except ImportError:
        raise DependencyError("camlens run writes Parquet tables: pip install 'camlens[runs]' (pyarrow, zarr)") from None
    return pa


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise DependencyError("camlens run writes Zarr maps: pip install 'camlens[runs]' (pyarrow, zarr)") from None
    return zarr


CURVE_COLUMNS = {"deletion_auc": "deletion_curve", "insertion_auc": "insertion_curve"}


def table_schema(metrics: Sequence[str], *, extras: bool = True) -> Any:
    """Arrow schema of the results table (one row per image x method x target).

    After the metrics (``float64``), with ``extras`` (runs written since the top-5 columns came in):
    ``deletion_curve`` / ``insertion_curve`` (``list<float32>``, ``steps + 1`` points, when that
    metric is asked for), ``top5_classes`` (``list<int32>``, most probable first) and
    ``top5_probs`` (``list<float32>``, their softmax probabilities).
    """
    pa = _pa()
    fields = [
        pa.field("image_id", pa.string()),
        pa.field("index", pa.int64()),
        pa.field("unit", pa.int64()),
        pa.field("path", pa.string()),
        pa.field("label", pa.int64()),
        pa.field("prediction", pa.int64()),
        pa.field("method", pa.string()),
        pa.field("target", pa.string()),
        pa.field("class", pa.int64()),
        pa.field("score", pa.float64()),
    ]
    fields += [pa.field(m, pa.float64()) for m in metrics]
    if extras:
        fields += [pa.field(CURVE_COLUMNS[m], pa.list_(pa.float32())) for m in metrics if m in CURVE_COLUMNS]
        fields += [pa.field("top5_classes", pa.list_(pa.int32())), pa.field("top5_probs", pa.list_(pa.float32()))]
    return pa.schema(fields)


def errors_schema() -> Any:
    pa = _pa()
    return pa.schema(
        [
            pa.field("image_id", pa.string()),
            pa.field("index", pa.int64()),
            pa.field("unit", pa.int64()),
            pa.field("path", pa.string()),
            pa.field("reason", pa.string()),
        ]
    )


def part_name(first_unit: int, items: int) -> str:
    """``part-u<first unit>-n<items covered>.parquet`` (the item count feeds rank 0's progress bar)."""
    return f"part-u{first_unit:09d}-n{items:06d}.parquet"


def _items_in_name(name: str) -> int:
    try:
        return int(name.rsplit("-n", 1)[1].split(".", 1)[0])
    except (IndexError, ValueError):
        return 0


def ids_digest(ids: Iterable[str]) -> str:
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


def _float_columns(schema: Any) -> list[str]:
    pa = _pa()
    out = []
    for f in schema:
        t = f.type.value_type if pa.types.is_list(f.type) else f.type
        if pa.types.is_floating(t):
            out.append(f.name)
    return out


def _write_atomic_parquet(table: Any, path: Path) -> None:
    """Write a Parquet file under a temporary name, then rename it.

    Zstandard compression; float columns (metrics, curves, probabilities) with the standard
    BYTE_STREAM_SPLIT encoding and no dictionary, which compresses noisy floats about a third
    better (every Parquet reader since format 2.8 reads both: pyarrow, pandas, DuckDB, Spark).
    """
    import pyarrow.parquet as pq

    floats = set(_float_columns(table.schema))
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        pq.write_table(
            table, tmp, compression="zstd", use_byte_stream_split=sorted(floats) or False,
            use_dictionary=[f.name for f in table.schema if f.name not in floats],
        )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_atomic_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class RunStore:
    """Writer side of a run folder (rank 0 prepares it; every rank adds its units)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.table_dir = self.root / TABLE_DIR
        self.errors_dir = self.root / ERRORS_DIR
        self.maps_dir = self.root / MAPS_DIR
        self._rows: dict[str, list[Any]] | None = None
        self._errors: list[dict[str, Any]] = []
        self._units: list[int] = []
        self._items = 0
        self._arrays: dict[str, Any] = {}
        self.schema: Any = None
        self.before_commit: Any = None
        """Called between a flush's error part and its table part (a test hook that simulates a crash)."""

    # ------------------------------------------------------------------ setup (rank 0)
    def prepare(self, config: dict[str, Any], items: Sequence[Any], map_arrays: dict[str, dict[str, Any]]) -> None:
        """Create the folder, or check that an existing one holds the same run; tidy half-done work.

        ``config["settings"]`` must equal the stored one on a restart (same model, methods, targets,
        metrics, geometry, batch size, ...), and the item list must be the same.
        """
        pa = _pa()
        self.root.mkdir(parents=True, exist_ok=True)
        cfg_path = self.root / CONFIG_FILE
        digest = ids_digest(it.image_id for it in items)
        config = dict(config, format=FORMAT_VERSION, items=len(items), ids_sha256=digest)
        if cfg_path.exists():
            old = json.loads(cfg_path.read_text())
            if old.get("settings") != config["settings"]:
                diff = sorted(
                    k for k in set(old.get("settings", {})) | set(config["settings"])
                    if old.get("settings", {}).get(k) != config["settings"].get(k)
                )
                detail = "; ".join(f"{k}: stored {old['settings'].get(k)!r}, now {config['settings'].get(k)!r}" for k in diff)
                older = "top_k" not in old.get("settings", {}) and "top_k" in config["settings"]
                raise ArgumentError(
                    f"{self.root} holds a run with other settings ({detail}); "
                    + ("it was started by a camlens version that stored no top-5 classes or curves: finish it with "
                       "that version, or write to a new output folder" if older else
                       "resume with the same options or write to a new output folder")
                )
            if old.get("ids_sha256") != digest:
                raise ArgumentError(
                    f"{self.root} was started on {old.get('items')} images and the data now lists {len(items)} "
                    "(or other ones); a run resumes only on the same images: use a new output folder"
                )
        else:
            _write_atomic_text(json.dumps(config, indent=2, sort_keys=True), cfg_path)
        if not (self.root / ITEMS_FILE).exists():
            table = pa.table(
                {
                    "index": pa.array(range(len(items)), pa.int64()),
                    "image_id": pa.array([it.image_id for it in items], pa.string()),
                    "path": pa.array([it.path for it in items], pa.string()),
                    "label": pa.array([it.label for it in items], pa.int64()),
                }
            )
            _write_atomic_parquet(table, self.root / ITEMS_FILE)
        self.table_dir.mkdir(exist_ok=True)
        self.errors_dir.mkdir(exist_ok=True)
        for d in (self.root, self.table_dir, self.errors_dir):  # temporaries of a killed process
            for p in d.glob(".tmp-*"):
                p.unlink(missing_ok=True)
        committed = {p.name for p in self.table_dir.glob("part-*.parquet")}
        for p in self.errors_dir.glob("part-*.parquet"):  # error rows of units no table part lists
            if p.name not in committed:
                p.unlink()
        if map_arrays:
            zarr = _zarr()
            group = zarr.open_group(str(self.maps_dir), mode="a")
            for name, spec in map_arrays.items():
                if name in group:
                    continue
                arr = group.create_array(
                    name, shape=tuple(spec["shape"]), chunks=tuple(spec["chunks"]), dtype=spec["dtype"],
                    fill_value=float("nan"),
                )
                arr.attrs.update(spec.get("attrs", {}))

    def finished_units(self) -> set[int]:
        """Units listed by the table parts on disk."""
        import pyarrow.parquet as pq

        done: set[int] = set()
        if not self.table_dir.is_dir():
            return done
        for p in self.table_dir.glob("part-*.parquet"):
            meta = pq.read_schema(p).metadata or {}
            text = meta.get(UNITS_KEY, b"").decode()
            done.update(int(u) for u in text.split(",") if u)
        return done

    def parts_items(self, exclude: set[str] = frozenset()) -> int:  # type: ignore[assignment]
        """Items covered by the table parts on disk (from their names), leaving out ``exclude``."""
        if not self.table_dir.is_dir():
            return 0
        return sum(_items_in_name(p.name) for p in os.scandir(self.table_dir) if p.name.startswith("part-") and p.name not in exclude)

    def part_names(self) -> set[str]:
        return {p.name for p in self.table_dir.glob("part-*.parquet")} if self.table_dir.is_dir() else set()

    # ------------------------------------------------------------------ writing (every rank)
    def open_for_writing(self, metrics: Sequence[str]) -> None:
        self.schema = table_schema(metrics)
        self._rows = {f.name: [] for f in self.schema}
        if self.maps_dir.exists():
            zarr = _zarr()
            group = zarr.open_group(str(self.maps_dir), mode="r+")
            self._arrays = {path: group[path] for path in _array_paths(group)}

    def write_maps(self, unit: int, start: int, blocks: dict[str, np.ndarray]) -> None:
        """Write one unit's maps: ``blocks[name]`` is ``(unit length, h, w)`` starting at item ``start``."""
        for name, block in blocks.items():
            arr = self._arrays[name]
            arr[start : start + block.shape[0]] = block.astype(arr.dtype, copy=False)

    def add_rows(self, rows: dict[str, list[Any]]) -> None:
        assert self._rows is not None
        for k in self._rows:
            self._rows[k].extend(rows[k])

    def add_errors(self, errors: list[dict[str, Any]]) -> None:
        self._errors.extend(errors)

    def finish_unit(self, unit: int, items: int) -> None:
        self._units.append(unit)
        self._items += items

    @property
    def pending_units(self) -> int:
        return len(self._units)

    def flush(self) -> None:
        """Commit the units added since the last flush: their error part, then their table part."""
        if not self._units:
            return
        pa = _pa()
        assert self._rows is not None
        name = part_name(self._units[0], self._items)
        if self._errors:
            es = errors_schema()
            cols = {f.name: [e[f.name] for e in self._errors] for f in es}
            _write_atomic_parquet(pa.table(cols, schema=es), self.errors_dir / name)
        if self.before_commit is not None:
            self.before_commit()
        meta = {UNITS_KEY: ",".join(str(u) for u in self._units).encode()}
        table = pa.table(self._rows, schema=self.schema.with_metadata(meta))
        _write_atomic_parquet(table, self.table_dir / name)
        self._rows = {k: [] for k in self._rows}
        self._errors = []
        self._units = []
        self._items = 0

    def write_summary(self, rows: list[dict[str, Any]], text: str, meta: dict[str, Any]) -> None:
        _write_atomic_text(json.dumps({"meta": meta, "rows": rows}, indent=2), self.root / SUMMARY_JSON)
        _write_atomic_text(text + "\n", self.root / SUMMARY_TXT)


def _array_paths(group: Any, prefix: str = "") -> list[str]:
    out = []
    for name, node in group.members():
        path = f"{prefix}{name}"
        if hasattr(node, "members"):
            out += _array_paths(node, path + "/")
        else:
            out.append(path)
    return out


# ------------------------------------------------------------------------------ reading
class RunReader:
    """Read a run folder: ``table()``, ``errors()``, ``map(image_id, method)``, ``summary()``.

    Example::

        # docs: skip needs a finished `camlens run` folder (tests/test_runs.py reads one)
        from camlens.app import runs
        run = runs.open("runs/val")
        df = run.table().to_pandas()
        heat = run.map("n01440764/ILSVRC2012_val_00000293.JPEG", "gradcam")   # (224, 224) in [0, 1]
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        cfg = self.root / CONFIG_FILE
        if not cfg.is_file():
            raise NotARunError(f"{str(self.root)!r} is not a camlens run folder (no {CONFIG_FILE}); pass the -o folder of `camlens run`")
        self.config: dict[str, Any] = json.loads(cfg.read_text())
        self._index: dict[str, int] | None = None

    @property
    def settings(self) -> dict[str, Any]:
        return self.config["settings"]

    def items(self) -> Any:
        """Every input of the run (``index, image_id, path, label``) as a ``pyarrow.Table``."""
        import pyarrow.parquet as pq

        _pa()
        return pq.read_table(self.root / ITEMS_FILE)

    def _read_dir(self, name: str, schema: Any) -> Any:
        import pyarrow.parquet as pq

        files = sorted((self.root / name).glob("part-*.parquet")) if (self.root / name).is_dir() else []
        if not files:
            return schema.empty_table()
        return _pa().concat_tables([pq.read_table(f).replace_schema_metadata(None) for f in files])

    def table(self) -> Any:
        """All result rows as one ``pyarrow.Table``, sorted by image index, method, target.

        Runs written before top-5 and curves were stored (no ``top_k`` in their settings) have no
        ``top5_*`` / ``*_curve`` columns.

        (``.to_pandas()`` for pandas; DuckDB and Spark read ``table/*.parquet`` directly.)
        """
        t = self._read_dir(TABLE_DIR, table_schema(self.settings["metrics"], extras="top_k" in self.settings))
        return t.sort_by([("index", "ascending"), ("method", "ascending"), ("target", "ascending")])

    def errors(self) -> Any:
        """Images that could not be read: ``image_id, index, unit, path, reason``."""
        return self._read_dir(ERRORS_DIR, errors_schema()).sort_by([("index", "ascending")])

    def summary(self) -> dict[str, Any] | None:
        """The per-method summary (``None`` until the run has completed)."""
        p = self.root / SUMMARY_JSON
        return json.loads(p.read_text()) if p.is_file() else None

    def index_of(self, image_id: str) -> int:
        if self._index is None:
            t = self.items()
            self._index = dict(zip(t.column("image_id").to_pylist(), t.column("index").to_pylist()))
        if image_id not in self._index:
            import difflib

            close = difflib.get_close_matches(image_id, list(self._index), n=3)
            hint = f"; close matches: {', '.join(map(repr, close))}" if close else ""
            raise ArgumentError(f"image {image_id!r} is not in this run ({len(self._index)} images){hint}")
        return self._index[image_id]

    def map(
        self,
        image_id: str | int,
        method: str,
        target: str | None = None,
        *,
        layer: int | None = None,
        upsample: bool = True,
    ) -> np.ndarray:
        """The map of one image, float32.

        ``upsample=True`` (default): the method's CAM at the model input's size ``(H, W)`` in
        ``[0, 1]`` (each stored layer map upsampled bilinearly and min-max normalised; several
        layers combined by their mean and normalised again). ``upsample=False``: the stored map at
        layer resolution ``(h, w)`` (``layer`` picks one of several target layers; default the first).
        ``target``: ``"label"`` or ``"pred"``; needed only when the run explained both.
        ``image_id`` may also be the image's integer index.
        """
        import torch

        from ...postprocess import combine, minmax_normalize
        from ...postprocess import upsample as up

        maps = self.settings.get("maps")
        if not maps:
            raise ArgumentError(f"run {str(self.root)!r} stored no maps (it was started with --no-maps)")
        index = image_id if isinstance(image_id, int) else self.index_of(image_id)
        methods = self.settings["methods"]
        if method not in methods:
            raise ArgumentError(f"method {method!r} is not in this run; it has {', '.join(methods)}")
        kinds = self.settings["targets"]
        if target is None:
            if len(kinds) > 1:
                raise ArgumentError(f"this run explained targets {kinds}; pass target='label' or target='pred'")
            target = kinds[0]
        if target not in kinds:
            raise ArgumentError(f"target {target!r} is not in this run; it has {', '.join(kinds)}")
        zarr = _zarr()
        group = zarr.open_group(str(self.root / MAPS_DIR), mode="r")
        layers = maps["layers"]
        picked = range(len(layers)) if layer is None and upsample else [layer or 0]
        out = []
        for j in picked:
            if not 0 <= j < len(layers):
                raise ArgumentError(f"layer must be 0..{len(layers) - 1} (the run's layers: {layers}); got {j}")
            arr = np.asarray(group[f"{method}/{target}/{j}"][index], dtype=np.float32)
            if np.isnan(arr).all():
                raise ArgumentError(f"image {image_id!r} has no map for {method}/{target}: it is not explained yet or could not be read (see errors())")
            out.append(arr)
        if not upsample:
            return out[0]
        size = tuple(maps["input_size"])
        per_layer = [minmax_normalize(up(torch.from_numpy(a)[None], size)) for a in out]  # type: ignore[arg-type]
        cam = per_layer[0] if len(per_layer) == 1 else minmax_normalize(combine(per_layer, "mean"))
        return cam[0].numpy()


def open_run(root: str | Path) -> RunReader:
    """Open a ``camlens run`` output folder for reading (see :class:`RunReader`)."""
    return RunReader(root)
