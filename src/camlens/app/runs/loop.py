"""The work of ``camlens run``: explain and score every image once, in units, and store the results.

Each process (rank) loads the model on its own device, takes its share of the unfinished units
(:func:`camlens.app.runs.shard.my_units`), decodes their images in DataLoader workers, and per
unit: the prediction and the top-5 classes (softmax probabilities) from one forward without
autograd when a ground-truth label is explained (when only the predicted class is explained, the
first method's own pass gives them), every method for every target,
every metric on the method's maps (and on the image-centre baseline), then maps, errors and rows to
the store (:mod:`camlens.app.runs.store`). When every rank is done, rank 0 writes the summary.

Example::

    # docs: skip needs an image folder and downloads resnet18's weights (tests/test_runs.py runs it offline)
    from camlens.app.runs import RunOptions, execute
    execute(RunOptions("images/", "runs/val", model="resnet18", methods=["gradcam"]))
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import postprocess as pp
from ...errors import ArgumentError, InputShapeError, ModelOutputError
from ...image import IMAGENET_MEAN, IMAGENET_STD
from ...metrics import center_baseline
from ...registry import get_method
from ...targets import ClassifierOutputTarget
from ..evaluate import CENTER, METRICS, _make_metrics, check_metric_names
from ..zoo import Preprocessing, load_model_file
from .data import ImageDataset, Item, collate, discover
from .shard import Shard, my_units, setup
from .store import CURVE_COLUMNS, RunReader, RunStore
from .summary import format_summary, summarise

__all__ = ["CRASH_ENV", "METRIC_ALIASES", "TARGET_CHOICES", "RunOptions", "RunResult", "execute"]

METRIC_ALIASES = {
    "pointing": "pointing_game",
    "energy": "energy_pointing_game",
    "energy_pointing": "energy_pointing_game",
    "deletion": "deletion_auc",
    "insertion": "insertion_auc",
    "drop": "average_drop",
    "increase": "increase_in_confidence",
    "road": "road_combined",
}
TARGET_CHOICES = ("auto", "label", "pred", "both")
TOP_K = 5
"""Classes (and softmax probabilities) stored per image: the ``top5_classes`` / ``top5_probs`` columns."""
CURVE_METRICS = CURVE_COLUMNS
"""Metrics whose per-image curve is stored too (a ``list<float32>`` column of ``steps + 1`` points)."""
CRASH_ENV = "CAMLENS_RUN_CRASH_AFTER_UNITS"
"""Test hook: a process that has committed this many units dies (``os._exit(17)``) while committing
the next one, after its maps and error rows are written and before its table part is. Under
torchrun only in the first attempt (``TORCHELASTIC_RESTART_COUNT`` 0), so ``--max-restarts`` can
finish the job."""


@dataclass
class RunOptions:
    """Everything a run needs; the fields marked *result* must match when a run is resumed."""

    data: str
    output: str
    model: str = "efficientnet-lite0"
    """Zoo name (torchvision / timm / bundled) or a ``.py`` file whose ``load*()`` returns the model."""
    weights: str = "default"
    model_fn: str | None = None
    layers: list[str] | None = None
    methods: Sequence[str] = ("gradcam",)
    targets: str = "auto"
    """``label`` (ground truth), ``pred`` (top class), ``both``, or ``auto`` (label when every image has one)."""
    metrics: Sequence[str] = ()
    image_size: int | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    batch_size: int = 32
    workers: int | None = None
    steps: int = 20
    tolerance: float = 15.0
    seed: int = 0
    device: str = "auto"
    map_dtype: str = "float16"
    maps: bool = True
    baseline: bool = True
    flush_every: int = 8
    limit: int | None = None
    layout: str = "auto"
    progress: bool = True
    dist_timeout_minutes: float = 360.0
    quiet: bool = False


@dataclass
class RunResult:
    """What :func:`execute` returns on every rank."""

    output: Path
    rank: int
    world: int
    images: int
    """Images this rank handled (explained or recorded as errors) in this call."""
    errors: int
    seconds: float
    """Wall time of this rank's share (from its first batch request to its last commit)."""
    complete: bool = False
    """Rank 0: every unit is finished (the summary was written)."""
    summary: list[dict[str, Any]] = field(default_factory=list)


def _canonical_metrics(names: Sequence[str]) -> list[str]:
    flat = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    return check_metric_names([METRIC_ALIASES.get(n.lower().replace("-", "_"), n) for n in flat])


def _canonical_methods(names: Sequence[str]) -> list[str]:
    flat = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    if not flat:
        raise ArgumentError("no method given; pass --method gradcam (see `camlens methods`)")
    out: list[str] = []
    for n in flat:
        name = get_method(n).name
        if name not in out:
            out.append(name)
    return out


def _load(opts: RunOptions, device: torch.device) -> tuple[torch.nn.Module, Preprocessing, tuple, tuple, Any, str, Any]:
    """Model (eval, on ``device``), geometry, mean, std, layers, description, class names (or ``None``)."""
    torch.manual_seed(opts.seed)  # random weights (--weights none, a file's fresh model) equal on every rank
    layers: Any = list(opts.layers) if opts.layers else None
    if opts.model.endswith(".py"):
        model, module = load_model_file(opts.model, opts.model_fn)
        mean = tuple(opts.mean or getattr(module, "MEAN", IMAGENET_MEAN))
        std = tuple(opts.std or getattr(module, "STD", IMAGENET_STD))
        size = opts.image_size or 224
        geometry = Preprocessing((size, size), None, mean, std)
        name = Path(opts.model).name
        categories = getattr(module, "CLASSES", None)
        categories = [str(c) for c in categories] if categories is not None else None
    else:
        from ..zoo import load_model

        zm = load_model(opts.model, weights=opts.weights)
        model, pre = zm.model, zm.preprocessing
        mean, std = tuple(opts.mean or pre.mean), tuple(opts.std or pre.std)
        if opts.image_size:
            geometry = Preprocessing((opts.image_size, opts.image_size), None, mean, std)
        else:
            geometry = Preprocessing(pre.resize, pre.crop, mean, std)
        layers = layers or ([zm.target_layer] if zm.target_layer else None)
        name = zm.name
        categories = list(zm.categories) if zm.categories else None
    return model.eval().to(device), geometry, mean, std, layers, name, categories


def _input_size(geometry: Preprocessing) -> tuple[int, int]:
    if isinstance(geometry.resize, tuple) and geometry.crop is None:
        return int(geometry.resize[0]), int(geometry.resize[1])
    if geometry.crop is not None:
        return geometry.crop, geometry.crop
    raise ArgumentError("camlens run needs one input size for every image; pass --image-size")


def _target_kinds(choice: str, items: Sequence[Item]) -> list[str]:
    unlabelled = [it.image_id for it in items if it.label is None]
    if choice == "auto":
        return ["pred"] if unlabelled else ["label"]
    if choice == "pred":
        return ["pred"]
    if unlabelled:
        raise ArgumentError(
            f"--target {choice} explains ground-truth labels, but {len(unlabelled)} of {len(items)} images have none "
            f"(first: {unlabelled[0]!r}); use an ImageFolder layout or a manifest with labels, or --target pred"
        )
    return ["label"] if choice == "label" else ["label", "pred"]


def _probe_map_sizes(cam: Any, size: tuple[int, int], device: torch.device) -> list[tuple[int, int]]:
    """Layer-resolution map size of each target layer (one cheap Grad-CAM pass on a blank image)."""
    probe = get_method("gradcam")(
        cam.model, target_layers=cam.target_layers, reshape_transform=cam.reshape_transform,
        output_adapter=cam.output_adapter, progress=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = probe.explain(torch.zeros(1, 3, *size, device=device), target_category=0)
    return [tuple(m.shape[-2:]) for m in exp.layer_maps]  # type: ignore[misc]


def _prepare(opts: RunOptions, store: RunStore, ctx: dict[str, Any]) -> dict[str, Any]:
    """Rank 0: list the items, prepare the store, find the unfinished units."""
    source = discover(opts.data, layout=opts.layout, limit=opts.limit)
    items = source.items
    kinds = _target_kinds(opts.targets, items)
    n_units = (len(items) + opts.batch_size - 1) // opts.batch_size
    size = _input_size(ctx["geometry"])
    map_sizes = _probe_map_sizes(ctx["first"], size, ctx["device"]) if opts.maps else []
    layer_names = ctx["first"].target_layer_names
    arrays = {
        f"{m}/{k}/{j}": {
            "shape": (len(items), *hw), "chunks": (opts.batch_size, *hw), "dtype": opts.map_dtype,
            "attrs": {"method": m, "target": k, "layer": layer_names[j]},
        }
        for m in ctx["methods"] for k in kinds for j, hw in enumerate(map_sizes)
    }
    g = ctx["geometry"]
    settings = {
        "model": ctx["model_name"], "weights": opts.weights if not opts.model.endswith(".py") else None,
        "model_fn": opts.model_fn, "layers": layer_names, "methods": ctx["methods"], "targets": kinds,
        "metrics": ctx["metrics"], "geometry": {"resize": list(g.resize) if isinstance(g.resize, tuple) else g.resize, "crop": g.crop},
        "mean": list(ctx["mean"]), "std": list(ctx["std"]), "batch_size": opts.batch_size, "steps": opts.steps,
        "tolerance": opts.tolerance, "seed": opts.seed, "baseline": ctx["baseline"],
        "top_k": TOP_K, "curves": [CURVE_METRICS[m] for m in ctx["metrics"] if m in CURVE_METRICS],
        "maps": {"dtype": opts.map_dtype, "layers": layer_names, "sizes": [list(s) for s in map_sizes],
                 "input_size": list(size), "chunk": opts.batch_size} if opts.maps else None,
    }
    # names of the model's outputs (top-5, predictions): the zoo model's categories (ImageNet) or a
    # model file's CLASSES, else the ImageFolder's sorted class folders (the label indices)
    names = ctx["categories"] or source.classes
    config = {"settings": settings, "data": str(Path(opts.data).resolve()), "layout": source.layout,
              "classes": source.classes, "class_names": names}
    store.prepare(config, items, arrays)
    done = store.finished_units()
    pending = [u for u in range(n_units) if u not in done]
    done_items = len(items) - sum(min(opts.batch_size, len(items) - u * opts.batch_size) for u in pending)
    return {"items": items, "kinds": kinds, "pending": pending, "map_sizes": map_sizes, "done_items": done_items}


def _values(t: torch.Tensor) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in t.detach().double().cpu().tolist()]


def _logits(cam: Any, x: torch.Tensor) -> torch.Tensor:
    logits = cam.engine.forward_outputs(x)
    if logits.dim() != 2:
        raise ModelOutputError(f"the model returned shape {tuple(logits.shape)}; camlens run needs (N, classes)")
    return logits


class _TopClass(ClassifierOutputTarget):
    """The top class of the first output it scores (the explained image's own forward pass).

    The class is fixed at that first scoring, whose outputs are kept in ``box["outputs"]``: so the
    method's own pass gives the prediction and the top-5, with no extra forward (perturbation
    methods then score the same class on their masked inputs).
    """

    def __init__(self, box: dict[str, Any]) -> None:
        super().__init__(0)
        self.box = box

    @classmethod
    def score_batch(cls, targets: Sequence[Any], outputs: torch.Tensor) -> torch.Tensor:
        box = targets[0].box
        if "outputs" not in box and outputs.dim() == 2 and outputs.shape[0] == len(targets):
            box["outputs"] = outputs.detach()
            for t, c in zip(targets, outputs.detach().argmax(dim=1).tolist()):
                t.category = int(c)
        return super().score_batch(targets, outputs)


def _explain_top_class(cam: Any, x: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """Explain each image's top class; returns the explanation and the logits ``(N, classes)``.

    The logits come from the method's own forward pass (checked: the explained scores must be those
    logits at the chosen classes); where a method scored another batch first, one forward without
    autograd gives them and the images are explained again.
    """
    box: dict[str, Any] = {}
    targets = [_TopClass(box) for _ in range(x.shape[0])]
    exp = cam.explain(x, targets)
    out = box.get("outputs")
    if out is not None:
        cats = torch.tensor([t.category for t in targets], device=out.device)
        picked = out.gather(1, cats[:, None]).squeeze(1).float()
        if torch.allclose(picked, exp.scores.float().to(out.device), rtol=1e-6, atol=1e-7):
            return exp, out
    logits = _logits(cam, x)
    return cam.explain(x, [ClassifierOutputTarget(int(c)) for c in logits.argmax(dim=1).tolist()]), logits


@dataclass
class _UnitWork:
    """Explains and scores one work unit: rows for the table, map blocks for Zarr, error rows."""

    items: list[Item]
    kinds: list[str]
    methods: list[str]
    names: list[str]
    """The methods, then the centre baseline when metrics are asked for."""
    metrics: list[str]
    cams: dict[str, Any]
    scorers: dict[tuple[str, str], dict[str, Any]]
    map_sizes: list[tuple[int, int]]
    """Layer-resolution map size per target layer; empty when no maps are stored."""
    device: torch.device
    batch_size: int
    columns: list[str]

    def unit(self, batch: Any, unit: int) -> tuple[dict[str, list[Any]], dict[str, np.ndarray], list[dict[str, Any]]]:
        items = self.items
        start = unit * self.batch_size
        length = min(len(items), start + self.batch_size) - start
        err_rows = [
            {"image_id": items[i].image_id, "index": i, "unit": unit, "path": items[i].path, "reason": reason}
            for i, reason in batch.errors
        ]
        blocks = {
            f"{m}/{k}/{j}": np.full((length, *hw), np.nan, dtype=np.float32)
            for m in self.methods for k in self.kinds for j, hw in enumerate(self.map_sizes)
        }
        rows: dict[str, list[Any]] = {f: [] for f in self.columns}
        if batch.x is None:  # every image of the unit failed to load
            return rows, blocks, err_rows
        x = batch.x.to(self.device, non_blocking=True)
        n, idx = x.shape[0], batch.indices
        local = np.asarray(idx) - start
        labels = [items[i].label for i in idx]
        has_boxes = any(b is not None and len(b) > 0 for b in batch.boxes)
        boxes = [b if b is not None else np.zeros((0, 4)) for b in batch.boxes]
        preds: list[int] | None = None
        top_c: list[list[int]] = []
        top_p: list[list[float]] = []

        def read_logits(logits: torch.Tensor) -> list[int]:
            nonlocal top_c, top_p
            p, c = torch.softmax(logits.float(), dim=1).topk(min(TOP_K, logits.shape[1]), dim=1)
            top_p, top_c = p.cpu().tolist(), c.cpu().tolist()
            return logits.argmax(dim=1).tolist()

        if "label" in self.kinds:  # the prediction and top-5 need their own forward (without autograd)
            preds = read_logits(_logits(self.cams[self.methods[0]], x))
        results: list[tuple[str, str, list[int], list[float], dict[str, list[Any]]]] = []
        for kind in self.kinds:
            classes = labels if kind == "label" else preds
            target_t = None
            for name in self.names:
                if name == CENTER:
                    maps = center_baseline(n, tuple(x.shape[-2:]), device=self.device)
                    scores = [float("nan")] * n
                else:
                    cam = self.cams[name]
                    if classes is None:  # predicted class: this first pass picks it and gives the top-5
                        exp, logits = _explain_top_class(cam, x)
                        preds = classes = read_logits(logits)
                    else:
                        exp = cam.explain(x, [ClassifierOutputTarget(int(c)) for c in classes])
                    maps, scores = exp.cam, exp.scores.double().cpu().tolist()
                    for j, hw in enumerate(self.map_sizes):
                        raw = exp.layer_maps[j]
                        if tuple(raw.shape[-2:]) != hw:
                            raise InputShapeError(
                                f"{name} returned a {tuple(raw.shape[-2:])} map for layer {j}; the run stores "
                                f"{hw} (images of one run must share a size)"
                            )
                        m = pp.relu(raw)
                        blocks[f"{name}/{kind}/{j}"][local] = pp.minmax_normalize(m).cpu().numpy()
                if target_t is None:
                    target_t = torch.tensor(classes, device=self.device)
                vals: dict[str, list[Any]] = {}
                for mname, metric in self.scorers[(name, kind)].items():
                    if METRICS[mname][1]:  # localisation: maps and boxes
                        vals[mname] = _values(metric.update(maps, boxes=boxes)) if has_boxes else [None] * n
                    else:  # faithfulness: the model on the masked input
                        vals[mname] = _values(metric.update(x, maps, target_t))
                        if mname in CURVE_METRICS:  # (N, steps + 1), float32 in the table
                            vals[CURVE_METRICS[mname]] = metric.curves.float().cpu().tolist()
                    metric.reset()  # per-image values go to the table; nothing accumulates
                results.append((name, kind, list(classes), scores, vals))  # type: ignore[arg-type]
        for name, kind, classes, scores, vals in results:
            for k, i in enumerate(idx):
                it = items[i]
                rows["image_id"].append(it.image_id)
                rows["index"].append(i)
                rows["unit"].append(unit)
                rows["path"].append(it.path)
                rows["label"].append(it.label)
                rows["prediction"].append(preds[k] if preds is not None else None)
                rows["method"].append(name)
                rows["target"].append(kind)
                rows["class"].append(int(classes[k]))
                rows["score"].append(None if math.isnan(scores[k]) else float(scores[k]))
                for mname in self.metrics:
                    rows[mname].append(vals[mname][k])
                    if mname in CURVE_METRICS:
                        rows[CURVE_METRICS[mname]].append(vals[CURVE_METRICS[mname]][k])
                rows["top5_classes"].append(top_c[k])
                rows["top5_probs"].append(top_p[k])
        return rows, blocks, err_rows


def execute(opts: RunOptions) -> RunResult:
    """Run (or resume) a dataset run in this process; under torchrun, every rank calls this."""
    shard = setup(opts.device, opts.dist_timeout_minutes)
    try:
        return _execute(opts, shard)
    finally:
        shard.close()


def _execute(opts: RunOptions, shard: Shard) -> RunResult:
    if opts.targets not in TARGET_CHOICES:
        raise ArgumentError(f"--target must be one of {', '.join(TARGET_CHOICES)}; got {opts.targets!r}")
    if opts.batch_size < 1 or opts.flush_every < 1:
        raise ArgumentError(f"--batch-size and --flush-every must be >= 1; got {opts.batch_size} and {opts.flush_every}")
    if opts.map_dtype not in ("float16", "float32"):
        raise ArgumentError(f"--map-dtype must be float16 or float32; got {opts.map_dtype!r}")
    methods = _canonical_methods(opts.methods)
    metrics = _canonical_metrics(opts.metrics)
    device = shard.device
    model, geometry, mean, std, layers, model_name, categories = _load(opts, device)
    cams = {
        m: get_method(m)(model, target_layers=layers, batch_size=opts.batch_size, progress=False) for m in methods
    }
    first = next(iter(cams.values()))
    baseline = bool(opts.baseline and metrics)
    store = RunStore(opts.output)

    plan: dict[str, Any]
    failure: BaseException | None = None
    if shard.is_main:
        try:
            ctx = dict(geometry=geometry, first=first, device=device, methods=methods, metrics=metrics,
                       mean=mean, std=std, model_name=model_name, baseline=baseline, categories=categories)
            plan = _prepare(opts, store, ctx)
        except Exception as exc:  # noqa: BLE001 - every rank must hear about it, then rank 0 re-raises
            failure = exc
            plan = {"error": f"{exc}"}
    else:
        plan = {}
    plan = shard.broadcast(plan)
    if failure is not None:
        raise failure
    if "error" in plan:
        raise ArgumentError(f"rank 0 could not start the run: {plan['error']}")

    items: list[Item] = plan["items"]
    kinds: list[str] = plan["kinds"]
    map_sizes: list[tuple[int, int]] = [tuple(s) for s in plan["map_sizes"]]  # type: ignore[misc]
    n_items, bsz = len(items), opts.batch_size
    units = my_units(plan["pending"], shard)
    store.open_for_writing(metrics)
    opts_m = dict(batch_size=bsz, steps=opts.steps, tolerance=opts.tolerance, mean=mean, std=std,
                  deletion_baseline="zero", insertion_baseline="blur", seed=opts.seed, output_adapter=None)
    names = methods + ([CENTER] if baseline else [])
    scorers = {(n, k): _make_metrics(metrics, model, opts_m) for n in names for k in kinds}

    workers = opts.workers
    if workers is None:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        workers = min(4, max(0, (os.cpu_count() or 1) // local_world))
    loader = torch.utils.data.DataLoader(
        ImageDataset(items, geometry),
        batch_sampler=[list(range(u * bsz, min(n_items, (u + 1) * bsz))) for u in units],
        num_workers=workers,
        collate_fn=collate(mean, std),
        pin_memory=device.type == "cuda",
    )

    crash_after = os.environ.get(CRASH_ENV)
    if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        crash_after = None
    committed = [0]
    if crash_after is not None:
        def _crash() -> None:
            if committed[0] >= int(crash_after):
                os._exit(17)
        store.before_commit = _crash

    bar = None
    if shard.is_main and opts.progress and not opts.quiet:
        try:
            from tqdm import tqdm

            bar = tqdm(total=n_items, initial=plan["done_items"], desc="camlens run", unit="img", dynamic_ncols=True)
        except ImportError:  # tqdm is optional
            bar = None
    start_parts = store.part_names() if bar is not None and shard.world > 1 else set()
    last_poll = time.monotonic()
    mine = errors = 0
    t_start = time.perf_counter()

    work = _UnitWork(
        items=items, kinds=kinds, methods=methods, names=names, metrics=metrics, cams=cams, scorers=scorers,
        map_sizes=map_sizes if opts.maps else [], device=device, batch_size=bsz, columns=store.schema.names,
    )
    for unit, batch in zip(units, loader):
        start = unit * bsz
        length = min(n_items, start + bsz) - start
        rows, blocks, err_rows = work.unit(batch, unit)
        if blocks:
            store.write_maps(unit, start, blocks)
        store.add_errors(err_rows)
        store.add_rows(rows)
        store.finish_unit(unit, length)
        mine += length
        errors += len(err_rows)
        if store.pending_units >= opts.flush_every:
            pending = store.pending_units
            store.flush()
            committed[0] += pending
        if bar is not None:
            if shard.world > 1 and time.monotonic() - last_poll > 2.0:
                last_poll = time.monotonic()
                bar.n = min(n_items, plan["done_items"] + store.parts_items(exclude=start_parts))
                bar.refresh()
            elif shard.world == 1:
                bar.update(length)
    store.flush()
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t_start
    if not opts.quiet:
        rate = mine / seconds if seconds > 0 else 0.0
        print(
            f"camlens run: rank {shard.rank}/{shard.world} on {device} finished its share: {mine} images "
            f"({errors} unreadable) in {seconds:.1f} s ({rate:.2f} images/s, after setup)",
            file=sys.stderr,
        )
    result = RunResult(Path(opts.output), shard.rank, shard.world, mine, errors, seconds)
    shard.barrier()
    if shard.is_main:
        n_units = (n_items + bsz - 1) // bsz
        missing = n_units - len(store.finished_units())
        if missing:
            if not opts.quiet:
                print(f"camlens run: {missing} of {n_units} units are unfinished; run the same command again to finish", file=sys.stderr)
        else:
            reader = RunReader(opts.output)
            rows_s = summarise(reader.table(), names, kinds, metrics)
            text = format_summary(rows_s)
            meta = {"model": model_name, "images": n_items, "errors": reader.errors().num_rows, "methods": methods,
                    "targets": kinds, "metrics": metrics, "world_size": shard.world}
            store.write_summary(rows_s, text, meta)
            result.complete, result.summary = True, rows_s
    return result
