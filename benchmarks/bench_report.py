"""``camlens report`` at dataset scale: build time of a 2,000-image report, first-screen render time.

A run store is synthesised directly through the run's own writer (:class:`camlens.app.runs.store.RunStore`;
no model): N JPEG photos-like images at 224 px in 50 class folders, 3 methods with 7x7 float16
maps, 4 metrics, the image-centre baseline, and the summary. Then, measured in this process:

* ``build``: :func:`camlens.app.report.build_report` end to end (read the run, write N images and
  N thumbnails, the data and map files, copy the page); target: under a minute for 2,000 images;
* ``first screen`` (when Playwright and a Chromium are installed): headless Chromium opens
  ``index.html#gallery`` from ``file://`` until the first page of cards has its overlays painted,
  and ``index.html`` (the overview: table and plots) until loaded; target: under two seconds
  (measured, not asserted). Browser start-up is not counted.

Environment: ``BENCH_REPORT_N`` images (default 2000), ``BENCH_REPS`` repetitions of the browser
measurement (default 3; medians reported).
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

sys.path.insert(0, os.path.dirname(__file__))
from common import print_table

from camlens.app.evaluate import CENTER
from camlens.app.report import build_report
from camlens.app.runs.data import Item
from camlens.app.runs.store import RunReader, RunStore
from camlens.app.runs.summary import format_summary, summarise

METHODS = ["gradcam", "layercam", "scorecam"]
METRICS = ["pointing_game", "deletion_auc", "insertion_auc", "average_drop"]
CLASSES = 50
GALLERY_DONE = (
    "document.querySelectorAll('.card').length === 48 && "
    "document.querySelectorAll('.card canvas[data-painted]').length === 48"
)


def synthesise(root: Path, n: int, batch: int = 64) -> Path:
    """A finished run folder of ``n`` images (written with the run's store, as `camlens run` would)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    data = root / "images"
    items = []
    base = np.linspace(0, 255, 224, dtype=np.float32)
    for i in range(n):
        c = i % CLASSES
        (data / f"c{c:02d}").mkdir(parents=True, exist_ok=True)
        path = data / f"c{c:02d}" / f"{i:05d}.jpg"
        r, g = np.meshgrid(np.roll(base, 7 * i), base)
        img = np.stack([r, g, (r + g) / 2], axis=-1) + rng.normal(0, 12, (224, 224, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
        items.append(Item(path.relative_to(data).as_posix(), str(path), c))
    items.sort(key=lambda it: it.image_id)
    run = root / "run"
    store = RunStore(run)
    arrays = {f"{m}/label/0": {"shape": (n, 7, 7), "chunks": (batch, 7, 7), "dtype": "float16",
                               "attrs": {"method": m, "target": "label", "layer": "layer4"}} for m in METHODS}
    settings = {
        "model": "synthetic", "weights": None, "model_fn": None, "layers": ["layer4"], "methods": METHODS,
        "targets": ["label"], "metrics": METRICS, "geometry": {"resize": [224, 224], "crop": None},
        "mean": [0.5] * 3, "std": [0.25] * 3, "batch_size": batch, "steps": 20, "tolerance": 15.0, "seed": 0,
        "baseline": True,
        "maps": {"dtype": "float16", "layers": ["layer4"], "sizes": [[7, 7]], "input_size": [224, 224], "chunk": batch},
    }
    store.prepare({"settings": settings, "data": str(data), "layout": "imagefolder",
                   "classes": [f"class {c}" for c in range(CLASSES)]}, items, arrays)
    store.open_for_writing(METRICS)
    names = METHODS + [CENTER]
    for unit, start in enumerate(range(0, n, batch)):
        idx = list(range(start, min(n, start + batch)))
        yy, xx = np.mgrid[0:7, 0:7]
        blocks = {}
        for m in METHODS:
            cy, cx = rng.uniform(0, 6, (2, len(idx), 1, 1))
            maps = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4) + rng.uniform(0, 0.2, (len(idx), 7, 7))
            lo, hi = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
            blocks[f"{m}/label/0"] = ((maps - lo) / (hi - lo)).astype(np.float32)
        store.write_maps(unit, start, blocks)
        rows: dict[str, list] = {f: [] for f in store.schema.names}
        for name in names:
            for i in idx:
                label = items[i].label
                pred = label if rng.random() < 0.7 else int(rng.integers(CLASSES))
                row = {"image_id": items[i].image_id, "index": i, "unit": unit, "path": items[i].path, "label": label,
                       "prediction": pred, "method": name, "target": "label", "class": label,
                       "score": float(rng.normal(8, 2)), "pointing_game": float(rng.random() < 0.8),
                       "deletion_auc": float(rng.uniform(0, 0.5)), "insertion_auc": float(rng.uniform(0.3, 0.9)),
                       "average_drop": float(rng.uniform(0, 60))}
                for metric in ("deletion_auc", "insertion_auc"):  # curves falling/rising through steps + 1 points
                    points = np.sort(rng.uniform(0, 1, settings["steps"] + 1)).astype(np.float32)
                    row[metric.replace("_auc", "_curve")] = (points[::-1] if metric == "deletion_auc" else points).tolist()
                top5 = rng.permutation(CLASSES)[:5]
                row["top5_classes"] = [int(c) for c in top5]
                row["top5_probs"] = np.sort(rng.dirichlet(np.ones(len(top5))))[::-1].astype(np.float32).tolist()
                for k, col in rows.items():
                    col.append(row[k])
        store.add_rows(rows)
        store.finish_unit(unit, len(idx))
        store.flush()
    reader = RunReader(run)
    rows_s = summarise(reader.table(), names, ["label"], METRICS)
    store.write_summary(rows_s, format_summary(rows_s), {"model": "synthetic", "images": n})
    return run


def _first_screen(report: Path, reps: int) -> list[list[object]] | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("first screen: Playwright is not installed (pip install playwright): not measured")
        return None
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        print("first screen: no Chromium found (apt-get install chromium): not measured")
        return None
    url = (report / "index.html").as_uri()
    times: dict[str, list[float]] = {"overview": [], "gallery": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        try:
            for _ in range(reps):
                for key, suffix, done in (
                    ("overview", "", "document.querySelectorAll('.plot svg').length > 0"),
                    ("gallery", "#gallery", GALLERY_DONE),
                ):
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    t0 = time.perf_counter()
                    page.goto(url + suffix)
                    page.wait_for_function(done, polling=16)
                    times[key].append(time.perf_counter() - t0)
                    page.close()
        finally:
            browser.close()
    return [
        ["overview (table + plots)", statistics.median(times["overview"])],
        ["gallery (48 cards, overlays painted)", statistics.median(times["gallery"])],
    ]


def main() -> None:
    n = int(os.environ.get("BENCH_REPORT_N", "2000"))
    reps = int(os.environ.get("BENCH_REPS", "3"))
    tmp = Path(tempfile.mkdtemp(prefix="camlens-bench-report-"))
    try:
        t0 = time.perf_counter()
        run = synthesise(tmp, n)
        t_synth = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = build_report(run, tmp / "report")
        t_build = time.perf_counter() - t0
        assert result.images == n and result.missing_images == 0
        size = sum(p.stat().st_size for p in (tmp / "report").rglob("*") if p.is_file())
        data = (tmp / "report" / "data" / "report.js").stat().st_size
        print(f"{n} images (224 px JPEG), {len(METHODS)} methods, {len(METRICS)} metrics, 7x7 maps; "
              f"run synthesised in {t_synth:.1f} s; {os.cpu_count()} cores")
        print_table(
            ["build", "seconds (target < 60)", "MB written", "data/report.js MB"],
            [["camlens report", t_build, size / 1e6, data / 1e6]],
        )
        rows = _first_screen(tmp / "report", reps)
        if rows:
            print(f"first screen in headless Chromium, median of {reps} (target < 2 s, measured, not asserted)")
            print_table(["page", "seconds"], rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
