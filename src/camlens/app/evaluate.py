"""Score CAM methods with the metrics of :mod:`camlens.metrics` over a set of images.

Runs every chosen method (plus the image-centre Gaussian baseline) over the samples, computes the
chosen metrics batch by batch and returns one row per method. Images and ground truth come from
:mod:`camlens.app.data`; :mod:`camlens.app.tables` prints and writes the rows; the ``camlens
evaluate`` command (:mod:`camlens.app.cli`) joins the three. The explained class is the label
when given, else the model's top class (read through the model's output adapter, so models that
return a dict with ``"logits"`` or a HuggingFace output work).

Python use::

    from camlens.app.data import load_samples
    from camlens.app.evaluate import evaluate
    rows = evaluate(model, load_samples("images/", size=224), ["gradcam"], target_layers=["layer4"])
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..engine import Engine, OutputAdapter, model_device
from ..errors import ArgumentError, InputShapeError, TargetIndexError
from ..hooks import eval_mode
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
from ..progress import progress_bar
from ..registry import get_method
from ..targets import ClassifierOutputTarget
from .data import Sample

__all__ = ["METRICS", "DEFAULT_METHODS", "DEFAULT_METRICS", "CENTER", "check_metric_names", "evaluate"]

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
            raise ArgumentError(f"unknown metric {name!r}; available: {', '.join(METRICS)}")
    return out


def check_metric_names(metrics: Sequence[str]) -> list[str]:
    """Canonical metric names (``Deletion-AUC`` -> ``deletion_auc``); an unknown one raises ArgumentError."""
    out = []
    for m in metrics:
        key = m.strip().lower().replace("-", "_")
        if key not in METRICS:
            raise ArgumentError(f"unknown metric {m!r}; available: {', '.join(METRICS)}")
        out.append(key)
    return out


def _check_labels(forward: Engine, samples: Sequence[Sample], mean: Any, std: Any, device: torch.device) -> None:
    """Every given label must be a class of the model: checked on one image before any work."""
    labelled = [s for s in samples if s.label is not None]
    if not labelled:
        return
    with eval_mode(forward.model):
        out = forward.forward_outputs(preprocess_image(samples[0].image, mean, std).to(device))
    classes = out.reshape(1, -1).shape[1]
    for s in labelled:
        if not 0 <= s.label < classes:
            raise TargetIndexError(
                f"image {s.name!r} has label {s.label}, but the model has {classes} classes (0..{classes - 1}); "
                "fix the label in the annotation file"
            )


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
    output_adapter: OutputAdapter | None = None,
) -> list[dict[str, Any]]:
    """Score ``methods`` (and the centre baseline) with ``metrics`` on ``samples``.

    Returns one row per method: ``{"method", "images", <metric>: mean, ..., "cam_seconds"}``;
    a localisation metric is the mean over images with boxes (``None`` when no image has any).
    Images are processed ``batch_size`` at a time on the model's device; the model is left as found.
    """
    if not samples:
        raise ArgumentError("no images to evaluate: pass at least one sample")
    metric_names = check_metric_names(metrics)
    classes = [get_method(m) for m in methods]
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
    forward = Engine(model, [], output_adapter)  # the library's output adapter unless the user gives one
    _check_labels(forward, samples, mean, std, device)
    batches = range(0, len(samples), batch_size)
    for start in progress_bar(batches, total=len(batches), enabled=progress, desc="evaluate"):
        chunk = samples[start : start + batch_size]
        shapes = {s.image.shape for s in chunk}
        if len(shapes) != 1:
            raise InputShapeError(
                f"images of one batch must share a size after preprocessing; got {sorted(shapes)}: "
                "give every image the same resize and crop"
            )
        x = preprocess_image(np.stack([s.image for s in chunk]), mean, std).to(device)
        labels = [s.label for s in chunk]
        if any(lb is None for lb in labels):
            with eval_mode(model):
                out = forward.forward_outputs(x)
            top = out.reshape(len(chunk), -1).argmax(dim=1).tolist()
            labels = [top[i] if lb is None else lb for i, lb in enumerate(labels)]
        target = torch.tensor(labels, device=device)
        has_boxes = [s.boxes is not None and len(s.boxes) > 0 for s in chunk]
        boxes = [s.boxes if s.boxes is not None else np.zeros((0, 4)) for s in chunk]
        for name in names:
            t0 = time.perf_counter()
            if name == CENTER:
                maps = center_baseline(len(chunk), tuple(x.shape[-2:]), device=device)
            else:
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
