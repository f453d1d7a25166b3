"""``camlens run``: the command-line front of :func:`camlens.app.runs.execute`.

Works the same as one process and under torchrun (``torchrun --nproc-per-node 8 -m camlens run ...``):
rank 0 prints the progress bar and the summary, every rank logs one line when its share is done.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..evaluate import METRICS
from ..options import floats3
from ..tables import format_table
from ..options import device_arg, positive_int
from .data import LAYOUTS
from .loop import METRIC_ALIASES, TARGET_CHOICES, RunOptions, execute

__all__ = ["cmd_run", "register_cli"]

EPILOG = """\
examples:
  camlens run val/ --model resnet50 --method gradcam --method scorecam --metrics pointing,deletion -o runs/val
  torchrun --nproc-per-node 8 -m camlens run val/ --model resnet50 --method gradcam -o runs/val
  torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m camlens run ...

DATA: a folder of images (recursive), an ImageFolder layout (DATA/<class>/<image>: labels from the
sorted class folder names), a manifest (.jsonl / .json / .csv: path, label, boxes), or WebDataset
tar shards (a .tar file, a folder of .tar files, or a quoted glob 'shards/*.tar'; per sample an image
.jpg/.jpeg/.png/.webp and an optional .cls label or .json {"label", "boxes"}; ids <shard>/<key>).
Rerun the same command to resume: finished images are skipped (also with another process count).
Read the results back with `from camlens.app import runs; runs.open(OUTPUT).table()`.
"""


def cmd_run(args: argparse.Namespace) -> int:
    """Entry point of ``camlens run``."""
    opts = RunOptions(
        data=args.data, output=args.output, model=args.model, weights=args.weights, model_fn=args.model_fn,
        layers=args.layer, methods=args.method or ["gradcam"], targets=args.target, metrics=args.metrics or [],
        image_size=args.image_size, mean=args.mean, std=args.std, batch_size=args.batch_size,
        workers=args.workers, steps=args.steps, tolerance=args.tolerance, seed=args.seed, device=args.device,
        map_dtype=args.map_dtype, maps=not args.no_maps, baseline=not args.no_baseline,
        flush_every=args.flush_every, limit=args.limit, layout=args.layout, progress=not args.no_progress,
        dist_timeout_minutes=args.dist_timeout,
    )
    result = execute(opts)
    if result.rank == 0:
        if result.complete:
            if opts.metrics or len(result.summary) > 0:
                print(format_table(result.summary))
            print(f"results in {result.output} (read with: from camlens.app import runs; runs.open({str(result.output)!r}).table())")
        else:
            return 3
    return 0


def register_cli(subparsers: Any) -> None:
    """Add the ``run`` sub-command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "run",
        help="explain and score a whole dataset (sharded with torchrun, resumable; Parquet + Zarr results)",
        description="Explain every image of DATA with the chosen methods and targets, score the maps with "
        "camlens's metrics, and store the results as they come: a Parquet table (one row per image x method x "
        "target), Zarr maps at layer resolution, an errors table and a summary. Under torchrun each process "
        "takes its own share of the images and its own device.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", metavar="DATA", help="image folder, ImageFolder root, manifest (.jsonl/.json/.csv), or WebDataset .tar shard(s)/folder/glob")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="run folder (created; reused to resume)")
    p.add_argument("--model", default="efficientnet-lite0", metavar="NAME_OR_FILE",
                   help="zoo model name (torchvision, timm:NAME, efficientnet-lite0) or a .py file whose load*() returns the model "
                   "(its optional MEAN, STD and CLASSES: normalisation and class names)")
    p.add_argument("--weights", default="default", metavar="default|none|PATH", help="zoo weights (none: random, seeded by --seed)")
    p.add_argument("--model-fn", default=None, help="function of the .py model file to call (default: its only load* function)")
    p.add_argument("--layer", "-l", action="append", default=None, help="target layer (repeatable; default: automatic)")
    p.add_argument("--method", "-m", action="append", default=None, metavar="NAME",
                   help="CAM method, repeatable or comma-separated (default gradcam; see `camlens methods`)")
    p.add_argument("--target", default="auto", choices=TARGET_CHOICES,
                   help="class to explain: label (ground truth), pred (top class), both; auto: label when every image has one")
    p.add_argument("--metrics", "--metric", action="append", default=None, metavar="LIST",
                   help=f"comma-separated metrics: {', '.join(METRICS)} (short: {', '.join(METRIC_ALIASES)}); default none")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="squash images to SIZE x SIZE (default: the zoo model's resize/crop; 224 with a .py model)")
    p.add_argument("--mean", type=floats3, default=None, help="input normalisation mean (default: the model's)")
    p.add_argument("--std", type=floats3, default=None, help="input normalisation std (default: the model's)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per batch and per Zarr chunk (default 32)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader decoding workers per process (default: cores / local processes, at most 4)")
    p.add_argument("--steps", type=positive_int, default=20, help="deletion/insertion steps (default 20)")
    p.add_argument("--tolerance", type=float, default=15.0, help="pointing-game tolerance in pixels (default 15)")
    p.add_argument("--seed", type=int, default=0, help="seed of random weights, tie-breaking and ROAD noise (default 0)")
    p.add_argument("--device", type=device_arg, default="auto", help="auto, cpu, cuda (cuda:LOCAL_RANK under torchrun), cuda:N, mps")
    p.add_argument("--map-dtype", default="float16", choices=("float16", "float32"), help="dtype of the stored maps (default float16)")
    p.add_argument("--no-maps", action="store_true", help="store the table only, no maps")
    p.add_argument("--no-baseline", action="store_true", help="no image-centre baseline rows")
    p.add_argument("--flush-every", type=positive_int, default=8, help="batches per Parquet part (default 8)")
    p.add_argument("--limit", type=positive_int, default=None, help="the first N images (in id order) only")
    p.add_argument("--layout", default="auto", choices=LAYOUTS, help="how to read DATA (default auto)")
    p.add_argument("--dist-timeout", type=float, default=360.0, metavar="MINUTES", help="how long ranks wait for each other at the end (default 360)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)


