"""``camlens report``: the static page over a run, driven in a real headless Chromium (Playwright).

One small run (the tiny random CNN of ``test_runs`` with class names, 12 images of 32 px from a
manifest with labels and boxes, GradCAM and LayerCAM, four metrics) is built once per module; the browser tests
open the report from ``file://`` and skip, with the reason, where no Chromium is installed
(``apt-get install chromium``; CI installs it in ``.ci/run``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("zarr")
pytest.importorskip("PIL")

from PIL import Image
from test_runs import MODEL_FILE, _options, _run_inprocess

from camlens.app import runs
from camlens.app.cli import main as cli_main
from camlens.app.report import build_report
from camlens.errors import CamLensError

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES = 12
CLASSES = ["ant", "bee", "cat", "dog", "eel"]
METRICS = ["pointing", "deletion", "insertion", "drop"]
SCREENSHOT_ENV = "CAMLENS_REPORT_SCREENSHOT"
"""Set to a path to also write the screenshot there (``docs/report.png`` is made this way)."""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run over 12 labelled 32 px images with one box each; 2 methods + centre baseline."""
    root = tmp_path_factory.mktemp("report")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(1)
    lines = []
    for i in range(N_IMAGES):
        img = rng.integers(0, 90, (32, 32, 3), dtype=np.uint8)
        x, y = int(rng.integers(2, 18)), int(rng.integers(2, 18))
        img[y : y + 12, x : x + 12] = rng.integers(150, 255, 3, dtype=np.uint8)  # a bright square: the "object"
        Image.fromarray(img).save(data / f"{i:02d}.png")
        lines.append(json.dumps({"path": f"{i:02d}.png", "label": i % 3, "boxes": [[x, y, x + 11, y + 11]]}))
    manifest = data / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    model = root / "tiny_model.py"
    model.write_text(MODEL_FILE + f"\nCLASSES = {CLASSES!r}\n")  # a model file may name its classes
    out = root / "run"
    result = _run_inprocess(_options(manifest, out, model, image_size=32, metrics=METRICS))
    assert result.complete
    return out


@pytest.fixture(scope="module")
def report_dir(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "report"
    result = build_report(run_dir, out)
    assert result.images == N_IMAGES and result.methods == ["gradcam", "layercam"] and result.missing_images == 0
    return out


def _data(report: Path) -> dict:
    text = (report / "data" / "report.js").read_text()
    assert text.startswith("window.CAMLENS_REPORT = ") and text.rstrip().endswith(";")
    return json.loads(text[len("window.CAMLENS_REPORT = ") :].rstrip().rstrip(";"))


# ------------------------------------------------------------------------------ the folder
def test_folder_is_self_contained(report_dir: Path) -> None:
    names = {p.relative_to(report_dir).as_posix() for p in report_dir.rglob("*") if p.is_file()}
    assert {"index.html", "app.js", "style.css", "data/report.js", "data/maps-0000.js"} <= names
    assert len([n for n in names if n.startswith("img/")]) == N_IMAGES == len([n for n in names if n.startswith("thumb/")])
    for name in ("index.html", "app.js", "style.css"):
        text = (report_dir / name).read_text().replace("http://www.w3.org/2000/svg", "")  # a namespace name, not a fetch
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE), f"{name} refers to the network"
    assert not list(report_dir.parent.glob(".tmp-report-*"))


def test_data_matches_the_run(report_dir: Path, run_dir: Path) -> None:
    d = _data(report_dir)
    run = runs.open(run_dir)
    table = run.table().to_pylist()
    gc = {r["image_id"]: r for r in table if r["method"] == "gradcam"}
    assert d["images"]["id"] == sorted(gc)
    for k, image_id in enumerate(d["images"]["id"]):
        assert d["images"]["label"][k] == gc[image_id]["label"] and d["images"]["pred"][k] == gc[image_id]["prediction"]
        assert d["values"]["gradcam"]["deletion_auc"][k] == pytest.approx(gc[image_id]["deletion_auc"], abs=1e-6)
    assert [r["method"] for r in d["summary"]] == ["gradcam", "layercam", "center-baseline"]
    assert d["summary"] == [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in run.summary()["rows"]]
    # top-5 of each image as the run stored it; class names from the model file
    assert d["classes"] == CLASSES
    for k, image_id in enumerate(d["images"]["id"]):
        want = [[c, p] for c, p in zip(gc[image_id]["top5_classes"], gc[image_id]["top5_probs"])]
        assert [c for c, _ in d["top5"][k]] == [c for c, _ in want]
        assert [p for _, p in d["top5"][k]] == pytest.approx([p for _, p in want], abs=1e-5)
    # mean curves per method (and the baseline): the mean of the stored per-image curves
    assert [c["name"] for c in d["curves"]] == ["deletion_curve", "insertion_curve"]
    ins = d["curves"][1]
    assert sorted(ins["methods"]) == ["center-baseline", "gradcam", "layercam"] and ins["x"][0] == 0 and ins["x"][-1] == 1
    lc = np.mean([r["insertion_curve"] for r in table if r["method"] == "layercam"], axis=0)
    assert ins["methods"]["layercam"]["mean"] == pytest.approx(lc.tolist(), abs=1e-6)
    assert ins["methods"]["layercam"]["images"] == N_IMAGES and len(lc) == 21
    # boxes from the manifest, in input pixels (the images are 32 px and the input is 32 px: unchanged)
    assert d["images"]["boxes"][0] is not None and len(d["images"]["boxes"][0]) == 1
    # the shard holds the stored layer map, 16-bit quantised
    shard = (report_dir / "data" / "maps-0000.js").read_text()
    payload = json.loads(shard[shard.index(",") + 1 : shard.rindex(")")])
    raw = np.frombuffer(base64.b64decode(payload["layercam"][3][0]), dtype="<u2").astype(np.float32) / 65535
    ref = run.map(d["images"]["id"][3], "layercam", upsample=False)
    assert raw.reshape(ref.shape) == pytest.approx(ref, abs=1e-4)
    # disagreement: mean |gradcam - layercam| of the stored maps
    g = run.map(d["images"]["id"][3], "gradcam", upsample=False)
    assert d["disagreement"][3] == pytest.approx(float(np.abs(g - ref).mean()), abs=1e-4)


def test_refuses_a_folder_that_is_not_a_report(run_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(CamLensError, match="is not a camlens report"):
        build_report(run_dir, other)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(CamLensError, match="not a camlens run folder"):
        build_report(tmp_path, tmp_path / "r")
    with pytest.raises(CamLensError, match="target 'pred' is not in this run; it explained label"):
        build_report(run_dir, tmp_path / "r", target="pred")


def test_cli_builds_and_replaces_a_report(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rep"
    assert cli_main(["report", str(run_dir), "-o", str(out)]) == 0
    assert "report of 12 images" in capsys.readouterr().out
    (out / "img" / "stale.jpg").write_bytes(b"x")
    assert cli_main(["report", str(run_dir), "-o", str(out), "--thumb-size", "16"]) == 0
    assert not (out / "img" / "stale.jpg").exists()
    with Image.open(out / "thumb" / "0.jpg") as im:
        assert max(im.size) == 16


# ------------------------------------------------------------------------------ the page in Chromium
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium found (apt-get install chromium); the report's browser tests need one")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def test_page_in_headless_chromium(browser, run_dir: Path, report_dir: Path, tmp_path: Path) -> None:
    d = _data(report_dir)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((report_dir / "index.html").as_uri())
    # overview: the summary table with one row per method and the baseline, and one plot per metric
    assert page.locator("#summary tr").count() == 1 + 3
    assert page.locator(".plot").count() >= 4
    # the mean deletion and insertion curves: one line per method and the baseline, 21 points each
    assert page.eval_on_selector_all(".plot.curve", "ps => ps.map(p => p.dataset.curve)") == ["deletion_curve", "insertion_curve"]
    lines = page.eval_on_selector_all(".plot.curve[data-curve='insertion_curve'] polyline",
                                      "ls => ls.map(l => [l.dataset.method, l.getAttribute('points').split(' ').length])")
    assert lines == [["gradcam", 21], ["layercam", 21], ["center-baseline", 21]]
    page.click("#tab-gallery")
    page.wait_for_selector(".card")
    assert page.locator(".card").count() == N_IMAGES
    assert page.locator("#count").inner_text().startswith(f"{N_IMAGES} of {N_IMAGES} images")
    page.wait_for_selector(".card canvas[data-painted='gradcam']")

    page.select_option("#method", "layercam")
    page.wait_for_function(f"document.querySelectorAll(\".card canvas[data-painted='layercam']\").length === {N_IMAGES}")

    # sort by deletion AUC of layercam, descending: the card order is the data's order
    page.select_option("#sort", "deletion_auc")
    page.select_option("#order", "desc")
    shown = page.eval_on_selector_all(".card", "cs => cs.map(c => Number(c.dataset.k))")
    vals = d["values"]["layercam"]["deletion_auc"]
    expected = sorted(range(N_IMAGES), key=lambda k: (-vals[k], k))
    assert shown == expected
    texts = [float(t) for t in page.eval_on_selector_all(".card .sort-value", "es => es.map(e => e.textContent)")]
    assert texts == sorted(texts, reverse=True)

    # wrong predictions only
    wrong = [k for k in range(N_IMAGES) if d["images"]["label"][k] != d["images"]["pred"][k]]
    assert 0 < len(wrong) < N_IMAGES  # random weights: some right, some wrong
    page.select_option("#correct-filter", "wrong")
    assert sorted(page.eval_on_selector_all(".card", "cs => cs.map(c => Number(c.dataset.k))")) == wrong
    assert page.locator(".card .wrong").count() == len(wrong)

    # image view: every method side by side, the box, the metric table; slider and keyboard
    first = expected_first = next(k for k in expected if k in wrong)
    page.click(".card >> nth=0")
    page.wait_for_selector("#view:not([hidden])")
    assert page.locator("#view-title").inner_text() == d["images"]["id"][first]
    assert page.locator(".panel").count() == 1 + 2
    assert page.locator(".panel svg rect").count() == 3 * len(d["images"]["boxes"][first])
    assert page.locator("#view-metrics tr").count() == 1 + 3
    # the top-5 classes with names and probabilities, most probable (the prediction) first
    top = page.locator("#view-top5 li").all_inner_texts()
    assert len(top) == 5 and top[0].startswith(f"{CLASSES[d['images']['pred'][first]]} ({d['images']['pred'][first]})")
    assert [float(re.search(r"([\d.]+)%$", t).group(1)) for t in top] == pytest.approx([100 * p for _, p in d["top5"][first]], abs=0.051)
    page.wait_for_selector(".panel canvas[data-painted='gradcam']")
    # the overlay is the run's CAM: the page upsamples the stored map as RunReader.map does
    rgba = page.eval_on_selector(
        ".panel[data-method='gradcam'] canvas",
        "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)",
    )
    shown_rgb = np.asarray(rgba, dtype=np.float64).reshape(32, 32, 4)[..., :3]
    cam = runs.open(run_dir).map(d["images"]["id"][first], "gradcam")
    jet = np.stack([np.clip(1.5 - np.abs(4 * cam - c), 0, 1) for c in (3, 2, 1)], axis=-1) * 255
    assert np.abs(shown_rgb - jet).max() <= 4.0, np.abs(shown_rgb - jet).max()
    assert np.abs(shown_rgb - np.flip(jet, 0)).max() > 50  # (the comparison can fail)
    page.fill("#opacity", "80")
    page.dispatch_event("#opacity", "input")
    opacity = page.eval_on_selector(".panel canvas", "c => getComputedStyle(c).opacity")
    assert float(opacity) == pytest.approx(0.8) and page.locator("#opacity-value").inner_text() == "80%"
    box = page.locator(".panel[data-method='layercam'] .stack").bounding_box()
    page.mouse.move(box["x"] + 1, box["y"] + 1)
    assert re.match(r"layercam: map cell \(0, 0\) of 16x16 = \d\.\d{3}", page.locator("#hover-value").inner_text())
    page.click("#view-title")  # focus off the slider (there the arrow keys move it)
    page.keyboard.press("ArrowRight")
    nxt = [k for k in expected if k in wrong][1]
    page.wait_for_function(f"location.hash === '#image/{nxt}'")
    assert page.locator("#view-title").inner_text() == d["images"]["id"][nxt]
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(f"location.hash === '#image/{expected_first}'")
    page.keyboard.press("Escape")
    page.wait_for_selector("#gallery:not([hidden])")

    # narrow window: the gallery still fits, no horizontal scrolling
    page.set_viewport_size({"width": 380, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.click(".card >> nth=0")
    page.wait_for_selector("#view:not([hidden])")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")

    page.set_viewport_size({"width": 860, "height": 540})
    page.goto((report_dir / "index.html").as_uri() + "#image/" + str(expected[0]))
    page.wait_for_selector(".panel canvas[data-painted='layercam']")
    page.fill("#opacity", "55")
    page.dispatch_event("#opacity", "input")
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=False)
    with Image.open(shot) as im:
        assert im.size == (860, 540)
        if os.environ.get(SCREENSHOT_ENV):  # docs/report.png: 256 colours keep it small
            im.convert("RGB").quantize(256).save(os.environ[SCREENSHOT_ENV], optimize=True)
    assert not errors, errors
    assert all(u.startswith("file://") for u in requests), [u for u in requests if not u.startswith("file://")]
    page.close()


@pytest.fixture(scope="module")
def mapless(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of 5 images with ``--no-maps --target both``."""
    cfg = runs.open(run_dir).config
    out = tmp_path_factory.mktemp("mapless") / "run"
    result = _run_inprocess(_options(Path(cfg["data"]), out, run_dir.parent / "tiny_model.py", image_size=32, maps=False,
                                     targets="both", limit=5))
    assert result.complete
    return out


def test_run_without_maps_and_with_both_targets(mapless: Path, tmp_path: Path) -> None:
    """``--no-maps --target both``: the report picks the asked target and has no map files."""
    out = mapless
    rep = build_report(out, tmp_path / "rep", target="pred")
    d = _data(rep.output)
    assert rep.target == "pred" and d["target"] == "pred" and d["maps"] is None and d["disagreement"] is None
    assert d["images"]["cls"] == d["images"]["pred"]  # the explained class is the prediction
    assert not list((rep.output / "data").glob("maps-*.js"))
    assert build_report(out, tmp_path / "rep2").target == "label"


def test_page_without_maps(browser, mapless: Path, tmp_path: Path) -> None:
    rep = build_report(mapless, tmp_path / "rep").output
    page = browser.new_page()
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(rep.as_uri() + "/index.html#gallery")
    page.wait_for_selector(".card")
    assert page.locator(".card").count() == 5 and page.locator(".card canvas").count() == 0
    page.click(".card >> nth=0")
    page.wait_for_selector("#view:not([hidden])")
    assert page.locator(".panel").count() == 3 and page.locator("#view-metrics tr").count() == 4
    assert page.locator("#view-top5 li").count() == 5
    assert not errors, errors
    page.close()


@pytest.fixture(scope="module")
def moved(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of 3 images plus an unreadable file, then one image file deleted; its report."""
    tmp = tmp_path_factory.mktemp("moved")
    src = Path(runs.open(run_dir).config["data"]).parent
    data = tmp / "data"
    data.mkdir()
    for i in range(3):
        shutil.copy(src / f"{i:02d}.png", data / f"{i:02d}.png")
    (data / "03.png").write_bytes(b"not an image")
    out = tmp / "run"
    assert _run_inprocess(_options(data, out, run_dir.parent / "tiny_model.py", image_size=32)).complete
    (data / "01.png").unlink()
    with pytest.warns(UserWarning, match="1 of 3 image files could not be read"):
        rep = build_report(out, tmp / "rep")
    assert rep.missing_images == 1
    return rep.output


def test_moved_image_file_and_unreadable_image(moved: Path) -> None:
    """An image file gone since the run shows without a picture (with a warning); an unreadable one is listed."""
    d = _data(moved)
    assert d["images"]["img"] == [True, False, True]
    assert not (moved / "img" / "1.jpg").exists()
    assert [e["image_id"] for e in d["errors"]] == ["03.png"]


def test_page_with_missing_and_unreadable_images(browser, moved: Path) -> None:
    page = browser.new_page()
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(moved.as_uri() + "/index.html")
    assert page.locator("#errors li").all_inner_texts() == ["03.png: " + _data(moved)["errors"][0]["reason"]]
    page.click("#tab-gallery")
    page.wait_for_selector(".card")
    assert page.locator(".card").count() == 3 and page.locator(".card .none").count() == 1
    assert not errors, errors
    page.close()


def test_report_of_a_run_written_before_top5(run_dir: Path, tmp_path: Path) -> None:
    """A run without the top-5 and curve columns (written before they existed): no top-5, no curves."""
    import pyarrow.parquet as pq

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    cfg = json.loads((old / "run.json").read_text())
    for key in ("top_k", "curves"):
        del cfg["settings"][key]
    del cfg["class_names"]
    (old / "run.json").write_text(json.dumps(cfg))
    for part in (old / "table").glob("part-*.parquet"):
        pq.write_table(pq.read_table(part).drop_columns(["deletion_curve", "insertion_curve", "top5_classes", "top5_probs"]), part)
    d = _data(build_report(old, tmp_path / "rep").output)
    assert d["top5"] is None and d["curves"] == [] and d["classes"] is None and len(d["images"]["id"]) == N_IMAGES


def test_report_of_a_webdataset_run(run_dir: Path, tmp_path: Path) -> None:
    """Images and boxes of a run over tar shards are read from the shards' members."""
    from test_runs import write_shards

    write_shards(tmp_path / "shards", np.random.default_rng(4))
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="no image member"):
        assert _run_inprocess(_options(tmp_path / "shards", out, run_dir.parent / "tiny_model.py", image_size=24,
                                       metrics=[], methods=["gradcam"])).complete
    d = _data(build_report(out, tmp_path / "rep").output)
    assert d["images"]["id"][1] == "train-0000.tar/s0/001" and d["images"]["img"] == [True] * 5
    assert d["images"]["boxes"][1] == [[0.0, 0.0, 11.0, 10.8]]  # the .json box [0, 0, 11, 9]; 20 px high squashed to 24
    with Image.open(tmp_path / "rep" / "img" / "0.jpg") as im:
        assert im.size == (24, 24)
