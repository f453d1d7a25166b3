"""``camlens run``: sharding through torchrun, resuming after a crash, errors table, reader, inputs.

A tiny random CNN (a Python model file, seeded) on 16 px images. Every comparison between runs is
exact: units hold the same images whatever the number of processes, so the numbers are bit-equal.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pa = pytest.importorskip("pyarrow")
zarr = pytest.importorskip("zarr")
pytest.importorskip("PIL")

from PIL import Image

from camlens import GradCAM
from camlens.app import runs
from camlens.app.runs import RunOptions, execute
from camlens.app.runs.data import discover
from camlens.app.runs.loop import CRASH_ENV
from camlens.errors import CamLensError
from camlens.image import load_image
from camlens.targets import ClassifierOutputTarget

SRC = Path(__file__).resolve().parents[1] / "src"

MODEL_FILE = """\
from torch import nn

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


def load():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )
"""

ARGS = ["--layer", "2", "--method", "gradcam,layercam", "--metrics", "pointing,deletion,drop",
        "--image-size", "16", "--batch-size", "4", "--workers", "0", "--no-progress"]


def _options(data: Path, out: Path, model: Path, **kw: object) -> RunOptions:
    base = dict(model=str(model), layers=["2"], methods=["gradcam", "layercam"],
                metrics=["pointing", "deletion", "drop"], image_size=16, batch_size=4, workers=0,
                progress=False, quiet=True, flush_every=1)
    base.update(kw)
    return RunOptions(str(data), str(out), **base)  # type: ignore[arg-type]


def _run_inprocess(opts: RunOptions):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the torchrun workers (OMP_NUM_THREADS=1)
    try:
        return execute(opts)
    finally:
        torch.set_num_threads(threads)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _torchrun(nproc: int, data: Path, out: Path, model: Path, *extra: str, env: dict[str, str] | None = None,
              launcher: tuple[str, ...] = ()):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *launcher,
           "-m", "camlens", "run", str(data), "--model", str(model), "-o", str(out), *ARGS, *extra]
    return subprocess.run(cmd, env=env or _env(), capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """ImageFolder of 3 classes x 7 images (24x28 px) plus one corrupt file; 22 items, 6 units of 4."""
    root = tmp_path_factory.mktemp("runs")
    data = root / "data"
    rng = np.random.default_rng(0)
    for c in "abc":
        (data / c).mkdir(parents=True)
        for i in range(7):
            Image.fromarray(rng.integers(0, 255, (24, 28, 3), dtype=np.uint8)).save(data / c / f"{i}.png")
    (data / "b" / "bad.png").write_bytes(b"not an image")
    model = root / "tiny_model.py"
    model.write_text(MODEL_FILE)
    return data, model


@pytest.fixture(scope="module")
def reference(dataset: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted single-process run."""
    data, model = dataset
    out = tmp_path_factory.mktemp("ref") / "run"
    result = _run_inprocess(_options(data, out, model))
    assert result.complete and result.world == 1 and result.images == 22 and result.errors == 1
    return out


def _same_run(a: Path, b: Path) -> None:
    ra, rb = runs.open(a), runs.open(b)
    ta, tb = ra.table(), rb.table()
    assert ta.num_rows == tb.num_rows == 21 * 3  # 21 readable images x (2 methods + centre baseline)
    assert ta.equals(tb)
    assert ra.errors().equals(rb.errors())
    keys = list(zip(tb.column("index").to_pylist(), tb.column("method").to_pylist(), tb.column("target").to_pylist()))
    assert len(set(keys)) == len(keys)  # no duplicate rows
    ga, gb = zarr.open_group(str(a / "maps.zarr"), mode="r"), zarr.open_group(str(b / "maps.zarr"), mode="r")
    for name in ("gradcam/label/0", "layercam/label/0"):
        assert np.array_equal(ga[name][:], gb[name][:], equal_nan=True)
    assert ra.summary()["rows"] == rb.summary()["rows"]


def test_two_processes_under_torchrun_equal_one_process(dataset, reference, tmp_path):
    data, model = dataset
    out = tmp_path / "run2"
    proc = _torchrun(2, data, out, model)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0/2" in proc.stderr and "rank 1/2" in proc.stderr
    assert "center-baseline" in proc.stdout  # rank 0 printed the summary
    _same_run(reference, out)
    # one part per rank (--flush-every 8 > 3 units each): units 0, 2, 4 on rank 0 and 1, 3, 5 on rank 1
    parts = sorted(p.name for p in (out / "table").glob("part-*.parquet"))
    assert parts == ["part-u000000000-n000012.parquet", "part-u000000001-n000010.parquet"]


def test_crash_midway_then_resume_with_other_process_count(dataset, reference, tmp_path):
    data, model = dataset
    out = tmp_path / "crashed"
    # both ranks die while committing their second unit (maps and error rows written, table part not)
    proc = _torchrun(2, data, out, model, "--flush-every", "1", env=_env(**{CRASH_ENV: "1"}))
    assert proc.returncode != 0
    committed = sorted(p.name for p in (out / "table").glob("part-*.parquet"))
    assert 1 <= len(committed) < 6 and not (out / "summary.json").exists()
    # resume in one process, committing two units per part: same table, maps, errors and summary
    result = _run_inprocess(_options(data, out, model, flush_every=2))
    assert result.complete and result.images < 22
    _same_run(reference, out)


@pytest.mark.slow
def test_torchrun_max_restarts_finishes_a_crashed_job(dataset, reference, tmp_path):
    """torchrun restarts the workers after the crash; the second attempt resumes and completes."""
    data, model = dataset
    # TORCH_DISABLE_SHARE_RDZV_TCP_STORE: see docs/scale.md (pytorch/pytorch#135712)
    env = _env(**{CRASH_ENV: "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"})
    proc = _torchrun(2, data, tmp_path / "elastic2", model, "--flush-every", "1", env=env,
                     launcher=("--max-restarts", "1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exitcode: 17" in proc.stderr  # the first attempt crashed; the restart completed the job
    _same_run(reference, tmp_path / "elastic2")


def test_resume_after_orphaned_error_rows(dataset, reference, tmp_path):
    """A crash between a unit's error part and its table part: the restart drops the orphan."""
    data, model = dataset
    out = tmp_path / "orphan"
    env = _env(**{CRASH_ENV: "3"})  # dies while committing unit 3, the one with the corrupt image
    cmd = [sys.executable, "-m", "camlens", "run", str(data), "--model", str(model), "-o", str(out), *ARGS,
           "--flush-every", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 17, proc.stderr[-2000:]
    assert [p.name for p in (out / "errors").iterdir()] == ["part-u000000003-n000004.parquet"]
    assert len(list((out / "table").glob("part-*"))) == 3
    assert _run_inprocess(_options(data, out, model, flush_every=3)).complete
    _same_run(reference, out)


def test_corrupt_image_is_in_the_errors_table(reference):
    run = runs.open(reference)
    errors = run.errors().to_pylist()
    assert [e["image_id"] for e in errors] == ["b/bad.png"]
    assert errors[0]["reason"].startswith("FileFormatError: cannot read image") and "UnidentifiedImageError" in errors[0]["reason"]
    assert "b/bad.png" not in run.table().column("image_id").to_pylist()
    assert run.summary()["meta"]["errors"] == 1
    with pytest.raises(CamLensError, match="has no map for gradcam/label"):
        run.map("b/bad.png", "gradcam")


def test_table_columns_labels_and_summary(reference, dataset):
    run = runs.open(reference)
    t = run.table()
    assert t.column_names[:10] == ["image_id", "index", "unit", "path", "label", "prediction", "method",
                                   "target", "class", "score"]
    rows = t.to_pylist()
    by_id = {r["image_id"]: r for r in rows if r["method"] == "gradcam"}
    assert by_id["a/0.png"]["label"] == 0 and by_id["c/6.png"]["label"] == 2  # ImageFolder: sorted class folders
    assert all(r["class"] == r["label"] and r["target"] == "label" for r in rows)  # auto: labels known
    assert all(r["pointing_game"] is None for r in rows)  # no boxes in an ImageFolder
    # the summary is the mean of the table's column, per method
    dels = [r["deletion_auc"] for r in rows if r["method"] == "layercam"]
    summ = {r["method"]: r for r in run.summary()["rows"]}
    assert summ["layercam"]["deletion_auc"] == pytest.approx(float(np.mean(dels)), rel=1e-12)
    assert summ["layercam"]["images"] == 21 and summ["center-baseline"]["pointing_game"] is None
    assert (reference / "summary.txt").read_text().startswith("method")


def test_reader_map_is_the_methods_cam(reference, dataset):
    """Upsampling the stored float16 layer map gives GradCAM's own map to float16 precision."""
    data, model_file = dataset
    run = runs.open(reference)
    spec = importlib.util.spec_from_file_location("tiny_model_for_test", model_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)  # the run's --seed: the same random weights
    model = module.load().eval()
    img = torch.from_numpy(load_image(data / "c" / "3.png")).permute(2, 0, 1)[None]
    img = torch.nn.functional.interpolate(img, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    x = (img.clamp(0, 1) - 0.5) / 0.25
    label = 2
    want = GradCAM(model, target_layers=["2"]).explain(x, [ClassifierOutputTarget(label)])
    got = run.map("c/3.png", "gradcam")
    assert got.shape == (16, 16) and got.dtype == np.float32
    np.testing.assert_allclose(got, want.cam[0].numpy(), atol=2e-3)
    small = run.map("c/3.png", "gradcam", upsample=False)
    assert small.shape == (8, 8) and float(small.max()) == 1.0 and float(small.min()) >= 0.0
    row = next(r for r in run.table().to_pylist() if r["image_id"] == "c/3.png" and r["method"] == "gradcam")
    assert row["score"] == pytest.approx(float(want.scores[0]), rel=1e-6)
    with pytest.raises(CamLensError, match="close matches: 'c/3.png'"):
        run.map("c/3.jpg", "gradcam")
    with pytest.raises(CamLensError, match="method 'scorecam' is not in this run"):
        run.map("c/3.png", "scorecam")


def test_manifest_with_boxes_scores_pointing_and_both_targets(dataset, tmp_path):
    data, model = dataset
    lines = [
        {"path": "data/a/0.png", "label": 1, "boxes": [[0, 0, 27, 23]]},  # the whole image: always a hit
        {"path": "data/a/1.png", "label": 4, "boxes": [[0, 0, 1, 1]]},
        {"file": "data/c/2.png", "label": 3},
    ]
    manifest = data.parent / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in lines))
    out = tmp_path / "m"
    res = _run_inprocess(_options(manifest, out, model, targets="both", metrics=["pointing", "energy"], methods=["gradcam"]))
    assert res.complete
    rows = runs.open(out).table().to_pylist()
    assert len(rows) == 3 * 2 * 2  # images x (gradcam + baseline) x (label, pred)
    g = {(r["image_id"], r["target"]): r for r in rows if r["method"] == "gradcam"}
    assert g[("data/a/0.png", "label")]["class"] == 1 and g[("data/a/0.png", "pred")]["class"] == g[("data/a/0.png", "pred")]["prediction"]
    assert g[("data/a/0.png", "label")]["pointing_game"] == 1.0
    assert g[("data/a/0.png", "label")]["energy_pointing_game"] == pytest.approx(1.0)
    assert g[("data/c/2.png", "label")]["pointing_game"] is None  # no boxes: no value
    with pytest.raises(CamLensError, match="pass target='label' or target='pred'"):
        runs.open(out).map("data/a/0.png", "gradcam")
    assert runs.open(out).map("data/a/0.png", "gradcam", target="pred").shape == (16, 16)


def test_csv_manifest_and_plain_folder(tmp_path):
    root = tmp_path / "d"
    (root / "x" / "y").mkdir(parents=True)
    for p in ("one.png", "x/two.jpg", "x/y/three.png"):
        Image.new("RGB", (8, 8)).save(root / p)
    src = discover(root)
    assert src.layout == "folder" and [it.image_id for it in src.items] == ["one.png", "x/two.jpg", "x/y/three.png"]
    assert all(it.label is None for it in src.items)
    csv = root / "m.csv"
    csv.write_text("path,label,x1,y1,x2,y2\none.png,3,0,0,4,4\none.png,3,5,5,7,7\nx/two.jpg,,,,,\n")
    items = discover(csv).items
    assert items[0].image_id == "one.png" and items[0].label == 3 and items[0].boxes == ((0, 0, 4, 4), (5, 5, 7, 7))
    assert items[1].label is None and items[1].boxes is None
    bad = root / "dup.jsonl"
    bad.write_text('{"path": "one.png"}\n{"path": "one.png"}\n')
    with pytest.raises(CamLensError, match="listed twice"):
        discover(bad)
    with pytest.raises(CamLensError, match="does not exist"):
        discover(root / "nope")


def test_restart_with_other_settings_is_refused(reference, dataset):
    data, model = dataset
    with pytest.raises(CamLensError, match=r"other settings \(methods: stored \['gradcam', 'layercam'\], now \['gradcam'\]"):
        _run_inprocess(_options(data, reference, model, methods=["gradcam"]))


def test_label_target_without_labels_and_bad_metric(tmp_path, dataset):
    _, model = dataset
    folder = tmp_path / "flat"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    with pytest.raises(CamLensError, match="1 of 1 images have none"):
        _run_inprocess(_options(folder, tmp_path / "o", model, targets="label"))
    with pytest.raises(CamLensError, match="unknown metric 'pointy'"):
        _run_inprocess(_options(folder, tmp_path / "o2", model, metrics=["pointy"]))
    with pytest.raises(FileNotFoundError, match="not a camlens run folder"):
        runs.open(tmp_path)


def test_cli_registers_run():
    from camlens.app.cli import build_parser

    args = build_parser().parse_args(["run", "data", "-o", "out", "--method", "gradcam", "--metrics", "pointing"])
    assert args.func.__name__ == "cmd_run" and args.batch_size == 32 and args.target == "auto"


def test_restart_on_changed_data_is_refused(tmp_path, dataset):
    _, model = dataset
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{i}.png")
    assert _run_inprocess(_options(folder, tmp_path / "o", model, metrics=[])).complete
    Image.new("RGB", (8, 8)).save(folder / "2.png")
    with pytest.raises(CamLensError, match="was started on 2 images and the data now lists 3"):
        _run_inprocess(_options(folder, tmp_path / "o", model, metrics=[]))


def test_shares_are_disjoint_and_cover_the_pending_units():
    from camlens.app.runs.shard import Shard, my_units

    pending = [0, 3, 4, 7, 8, 9, 12]
    for world in (1, 2, 3, 8):
        shares = [my_units(pending, Shard(rank=r, world=world)) for r in range(world)]
        assert sorted(u for s in shares for u in s) == pending
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_top5_and_curves_are_stored(reference, dataset):
    """Top-5 classes and softmax probabilities per image; deletion curves of ``steps + 1`` points."""
    data, model_file = dataset
    run = runs.open(reference)
    t = run.table()
    assert t.schema.field("top5_classes").type == pa.list_(pa.int32())
    assert t.schema.field("deletion_curve").type == pa.list_(pa.float32())
    assert "insertion_curve" not in t.column_names  # only the curves of the metrics asked for
    assert run.settings["top_k"] == 5 and run.settings["curves"] == ["deletion_curve"]
    rows = t.to_pylist()
    for r in rows:
        assert r["top5_classes"][0] == r["prediction"] and sorted(r["top5_classes"]) == [0, 1, 2, 3, 4]
        assert r["top5_probs"] == sorted(r["top5_probs"], reverse=True)
        assert sum(r["top5_probs"]) == pytest.approx(1.0, abs=1e-5)  # 5 classes: all of them
        curve = np.asarray(r["deletion_curve"], dtype=np.float64)
        assert curve.shape == (21,)  # --steps 20
        auc = (curve[0] / 2 + curve[1:-1].sum() + curve[-1] / 2) / 20  # the trapezoid of the stored curve
        assert auc == pytest.approx(r["deletion_auc"], abs=1e-6)
    # the same image's top-5 as the model computes it, and step 0 of deletion = the intact image
    spec = importlib.util.spec_from_file_location("tiny_model_for_top5", model_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.load().eval()
    img = torch.from_numpy(load_image(data / "a" / "5.png")).permute(2, 0, 1)[None]
    img = torch.nn.functional.interpolate(img, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        probs = torch.softmax(model((img.clamp(0, 1) - 0.5) / 0.25), dim=1)[0]
    p, c = probs.topk(5)
    row = next(r for r in rows if r["image_id"] == "a/5.png" and r["method"] == "gradcam")
    assert row["top5_classes"] == c.tolist()
    np.testing.assert_allclose(row["top5_probs"], p.numpy(), atol=1e-6)
    assert row["deletion_curve"][0] == pytest.approx(float(probs[row["class"]]), abs=1e-6)


def test_a_run_written_before_top5_still_opens(reference, tmp_path):
    """The reader opens runs without the top-5/curve columns (written before they were stored)."""
    import shutil

    import pyarrow.parquet as pq

    old = tmp_path / "old"
    shutil.copytree(reference, old)
    cfg = json.loads((old / "run.json").read_text())
    for key in ("top_k", "curves"):
        del cfg["settings"][key]
    (old / "run.json").write_text(json.dumps(cfg))
    for part in (old / "table").glob("part-*.parquet"):
        tab = pq.read_table(part)
        pq.write_table(tab.drop_columns(["deletion_curve", "top5_classes", "top5_probs"]), part)
    run = runs.open(old)
    t = run.table()
    assert "top5_classes" not in t.column_names and t.num_rows == 63
    assert t.select(["image_id", "deletion_auc"]).equals(runs.open(reference).table().select(["image_id", "deletion_auc"]))
    assert run.map("c/3.png", "gradcam").shape == (16, 16)


def _tar_add(tar, name: str, data: bytes) -> None:
    import io
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder: Path, rng: np.random.Generator) -> dict[str, bytes]:
    """Two WebDataset shards written with tarfile + Pillow: 5 good samples, a corrupt one, one without an image."""
    import io
    import tarfile

    folder.mkdir(parents=True)
    images: dict[str, bytes] = {}
    for s in range(2):
        with tarfile.open(folder / f"train-{s:04d}.tar", "w") as tar:
            for i in range(3):
                key = f"s{s}/{i:03d}"
                buf = io.BytesIO()
                fmt = "PNG" if i != 1 else "JPEG"
                Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(buf, fmt)
                images[f"train-{s:04d}.tar/{key}"] = buf.getvalue()
                if s == 1 and i == 2:  # a corrupt image member: lands in the errors table
                    _tar_add(tar, f"{key}.jpg", b"not a jpeg")
                    _tar_add(tar, f"{key}.cls", b"1")
                    continue
                _tar_add(tar, f"{key}.{'png' if fmt == 'PNG' else 'jpg'}", buf.getvalue())
                if i == 1:
                    _tar_add(tar, f"{key}.json", json.dumps({"label": 4, "boxes": [[0, 0, 11, 9]]}).encode())
                else:
                    _tar_add(tar, f"{key}.cls", f"{(s + i) % 5}\n".encode())
            if s == 0:
                _tar_add(tar, "s0/orphan.txt", b"a caption and no image")
    return images


def test_webdataset_shards(dataset, tmp_path):
    """A folder of tar shards, one shard, a glob: ids <shard>/<key>, labels, boxes, a corrupt member."""
    from camlens.app.runs.data import read_image

    _, model = dataset
    images = write_shards(tmp_path / "shards", np.random.default_rng(3))
    with pytest.warns(UserWarning, match="1 WebDataset sample"):
        src = discover(tmp_path / "shards")
    assert src.layout == "webdataset"
    assert [it.image_id for it in src.items] == [
        "train-0000.tar/s0/000", "train-0000.tar/s0/001", "train-0000.tar/s0/002",
        "train-0001.tar/s1/000", "train-0001.tar/s1/001", "train-0001.tar/s1/002",
    ]
    by_id = {it.image_id: it for it in src.items}
    assert [it.label for it in src.items] == [0, 4, 2, 1, 4, 1]
    assert by_id["train-0000.tar/s0/001"].boxes == ((0, 0, 11, 9),) and by_id["train-0000.tar/s0/000"].boxes is None
    assert by_id["train-0001.tar/s1/000"].path == str(tmp_path / "shards" / "train-0001.tar") + "/s1/000.png"
    # decoded from the member's bytes exactly as from a file
    (tmp_path / "x.png").write_bytes(images["train-0000.tar/s0/002"])
    np.testing.assert_array_equal(read_image(by_id["train-0000.tar/s0/002"]), load_image(tmp_path / "x.png"))
    with pytest.warns(UserWarning):
        assert [it.image_id for it in discover(tmp_path / "shards" / "train-0001.tar").items][0] == "train-0001.tar/s1/000"
        assert len(discover(str(tmp_path / "shards" / "train-*.tar")).items) == 6
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="no image member"):
        res = _run_inprocess(_options(tmp_path / "shards", out, model, metrics=["pointing"], methods=["gradcam"]))
    assert res.complete and res.images == 6 and res.errors == 1
    run = runs.open(out)
    assert run.config["layout"] == "webdataset"
    assert [e["image_id"] for e in run.errors().to_pylist()] == ["train-0001.tar/s1/002"]
    rows = {r["image_id"]: r for r in run.table().to_pylist() if r["method"] == "gradcam"}
    assert len(rows) == 5 and rows["train-0000.tar/s0/001"]["label"] == 4
    assert rows["train-0000.tar/s0/001"]["pointing_game"] in (0.0, 1.0) and rows["train-0000.tar/s0/000"]["pointing_game"] is None
    assert run.map("train-0001.tar/s1/001", "gradcam").shape == (16, 16)
    gz = tmp_path / "bad.tar"
    gz.write_bytes(b"\x1f\x8b" + b"\0" * 600)
    with pytest.raises(CamLensError, match="not an uncompressed tar file"):
        discover(gz)


def test_predicted_class_top5_from_the_methods_own_pass(dataset, tmp_path):
    """Without labels (target pred) the first method's pass gives the prediction and the top-5."""
    _, model_file = dataset
    folder = tmp_path / "flat"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "o"
    assert _run_inprocess(_options(folder, out, model_file, methods=["scorecam", "gradcam"], metrics=[])).complete
    spec = importlib.util.spec_from_file_location("tiny_model_for_pred", model_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.load().eval()
    for r in runs.open(out).table().to_pylist():
        x = (torch.from_numpy(load_image(folder / r["image_id"])).permute(2, 0, 1)[None] - 0.5) / 0.25
        with torch.no_grad():
            logits = model(x)[0]
        p, c = torch.softmax(logits, 0).topk(5)
        assert r["target"] == "pred" and r["class"] == r["prediction"] == r["top5_classes"][0] == int(c[0])
        assert r["top5_classes"] == c.tolist()
        np.testing.assert_allclose(r["top5_probs"], p.numpy(), atol=1e-6)
        if r["method"] == "gradcam":
            assert r["score"] == pytest.approx(float(logits[r["class"]]), rel=1e-5)


def test_resuming_a_run_written_before_top5_is_refused(reference, dataset, tmp_path):
    import shutil

    data, model = dataset
    old = tmp_path / "old"
    shutil.copytree(reference, old)
    cfg = json.loads((old / "run.json").read_text())
    del cfg["settings"]["top_k"], cfg["settings"]["curves"]
    (old / "run.json").write_text(json.dumps(cfg))
    with pytest.raises(CamLensError, match="stored no top-5 classes or curves: finish it with that version"):
        _run_inprocess(_options(data, old, model))
