"""``camlens run`` throughput against a plain inference loop, and the store's size per image.

GradCAM (resnet18, random weights, predicted class, layer4) over N JPEG images at 224 px, decoded
and preprocessed by the same DataLoader (same dataset class, collate, batch size and workers) in
both cases, measured side by side in this process:

* ``plain``: ``model(x)`` under ``torch.no_grad()`` for every batch (the floor: decode + inference);
* ``camlens run``: :func:`camlens.app.runs.execute` end to end (model load, setup, explain, write
  Parquet + Zarr, summary), in one process (world size 1).

Reported: images/s of each and their ratio (target >= 0.8: explaining and writing cost at most 25%
over inference), and the output folder's bytes per image (total, maps, table).

Environment: ``BENCH_RUNS_N`` images (default 512), ``BENCH_RUNS_BATCH`` (default 32),
``BENCH_RUNS_WORKERS`` DataLoader workers (default 2), ``BENCH_REPS`` repetitions (default 1;
medians reported), ``BENCH_RUNS_DEVICE`` (default auto).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import print_table

from camlens.app.zoo import Preprocessing
from camlens.app.runs import RunOptions, execute
from camlens.app.runs.data import ImageDataset, collate, discover
from camlens.app.zoo import load_model
from camlens.devices import resolve_device


def _write_images(folder: Path, n: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    base = np.linspace(0, 255, 224, dtype=np.float32)
    for i in range(n):  # smooth images with some noise: JPEG sizes like photos, not like white noise
        r, g = np.meshgrid(np.roll(base, 7 * i), base)
        img = np.stack([r, g, (r + g) / 2], axis=-1) + rng.normal(0, 12, (224, 224, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    n = int(os.environ.get("BENCH_RUNS_N", "512"))
    batch = int(os.environ.get("BENCH_RUNS_BATCH", "32"))
    workers = int(os.environ.get("BENCH_RUNS_WORKERS", "2"))
    reps = int(os.environ.get("BENCH_REPS", "1"))
    device = resolve_device(os.environ.get("BENCH_RUNS_DEVICE", "auto"))
    tmp = Path(tempfile.mkdtemp(prefix="camlens-bench-runs-"))
    try:
        data = tmp / "images"
        _write_images(data, n)
        torch.manual_seed(0)
        zm = load_model("resnet18", weights="none", device=device)
        pre = zm.preprocessing
        items = discover(data).items

        def plain(limit: int = n) -> None:
            loader = torch.utils.data.DataLoader(
                ImageDataset(items, Preprocessing(pre.resize, pre.crop)),
                batch_sampler=[list(range(s, min(limit, s + batch))) for s in range(0, limit, batch)],
                num_workers=workers, collate_fn=collate(pre.mean, pre.std), pin_memory=device.type == "cuda",
            )
            with torch.no_grad():
                for b in loader:
                    out = zm.model(b.x.to(device, non_blocking=True))
                    out.argmax(dim=1).tolist()  # the prediction reaches the host, as in a real loop

        outs: list[Path] = []

        def run() -> None:
            out = tmp / f"run{len(outs)}"
            outs.append(out)
            res = execute(RunOptions(str(data), str(out), model="resnet18", weights="none", methods=["gradcam"],
                                     targets="pred", batch_size=batch, workers=workers, device=str(device),
                                     progress=False, quiet=True))
            assert res.complete and res.images == n

        plain(min(n, 2 * batch))  # warm-up: allocator, worker start-up paths (the images are in the page cache)
        times: dict[str, list[float]] = {"plain": [], "run": []}
        for _ in range(reps):
            for key, fn in (("plain", plain), ("run", run)):
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
        t_plain, t_run = statistics.median(times["plain"]), statistics.median(times["run"])
        last = outs[-1]
        total, maps, table = _size(last), _size(last / "maps.zarr"), _size(last / "table")
        print(f"GradCAM, resnet18 (random weights), {n} JPEGs at 224 px, batch {batch}, {workers} workers, "
              f"{device}, torch {torch.__version__}, {torch.get_num_threads()} threads, median of {reps}")
        print_table(
            ["loop", "images/s", "ratio to plain (target >= 0.8)"],
            [["plain inference (same DataLoader)", n / t_plain, 1.0], ["camlens run (gradcam)", n / t_run, t_plain / t_run]],
        )
        print_table(
            ["store", "bytes per image"],
            [["whole folder", total / n], ["maps.zarr (7x7 float16)", maps / n], ["table (Parquet)", table / n]],
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
