"""The `camlens` command, run in-process on temporary directories."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from camlens import available_methods, get_method
from camlens.app.cli import _resolve_methods, build_parser, main

pytest.importorskip("PIL")
pytest.importorskip("efficientnet_lite_pytorch")
skdata = pytest.importorskip("skimage.data")


def _write(path: Path, arr: np.ndarray) -> str:
    from PIL import Image

    Image.fromarray(arr).save(path)
    return str(path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("photos")
    return {"cat": _write(d / "cat.png", skdata.chelsea()), "coffee": _write(d / "coffee.jpg", skdata.coffee())}


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("camlens: error: ")
    return lines[0]


def test_explain_writes_overlay_map_and_guided_images(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", photos["cat"], "--method", "gradcam", "--output-dir", str(out), "--device", "cpu"]) == 0
    stdout = capsys.readouterr().out
    top1 = int(stdout.split("top-5: ")[1].split()[0])
    assert 281 <= top1 <= 285  # a domestic-cat class
    assert f"gradcam: {photos['cat']} explains class {top1} " in stdout
    cam = np.load(out / "cat_gradcam_cam.npy")
    assert cam.shape == (224, 224) and cam.dtype == np.float32
    assert cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    from PIL import Image

    for name in ("cat_gradcam_cam.png", "cat_gb.png", "cat_gradcam_cam_gb.png"):
        with Image.open(out / name) as im:
            assert im.size == (224, 224) and im.mode == "RGB"
    assert not (out / "cat_methods.png").exists()  # one method: no comparison grid


def test_explain_batches_images_and_matches_one_by_one(photos, tmp_path, capsys):
    both = [photos["cat"], photos["coffee"]]
    args = ["explain", *both, "-m", "gradcam", "-m", "layercam", "--no-guided"]
    assert main([*args, "-o", str(tmp_path / "batched"), "--batch-size", "2"]) == 0
    assert main([*args, "-o", str(tmp_path / "single"), "--batch-size", "1"]) == 0
    stdout = capsys.readouterr().out
    assert "explains class 967 espresso" in stdout
    for stem in ("cat", "coffee"):
        for m in ("gradcam", "layercam"):
            a = np.load(tmp_path / "batched" / f"{stem}_{m}_cam.npy")
            b = np.load(tmp_path / "single" / f"{stem}_{m}_cam.npy")
            np.testing.assert_allclose(a, b, atol=1e-4)
        assert (tmp_path / "batched" / f"{stem}_methods.png").is_file()
        assert not (tmp_path / "batched" / f"{stem}_gb.png").exists()


def test_explain_target_categories_write_one_set_per_class(photos, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["explain", photos["coffee"], "--target-category", "281", "967", "-m", "gradcam", "-o", str(out)])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "explains class 281 tabby" in stdout and "explains class 967 espresso" in stdout
    maps = {c: np.load(out / f"coffee_c{c}_gradcam_cam.npy") for c in (281, 967)}
    assert not np.allclose(maps[281], maps[967])
    assert (out / "coffee_c281_gb.png").is_file() and (out / "coffee_c967_gradcam_cam_gb.png").is_file()


def test_explain_with_state_dict_file_and_explicit_layer(photos, tmp_path, capsys):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    rc = main(["explain", photos["cat"], "--model", "resnet18", "--weights", str(path), "--target-layer", "layer4",
               "-m", "hirescam", "-o", str(tmp_path / "o"), "--no-guided"])
    assert rc == 0
    assert "target layer: layer4" in capsys.readouterr().out
    assert np.load(tmp_path / "o" / "cat_hirescam_cam.npy").shape == (224, 224)


# ------------------------------------------------------------------ errors: one line, the common exit codes
@pytest.mark.parametrize(
    ("extra", "pattern", "code"),
    [
        (["--method", "gradcamm"], r"unknown CAM method 'gradcamm'.*did you mean 'gradcam'", 2),
        (["--model", "resnet5"], r"unknown model 'resnet5'.*did you mean 'resnet50'", 2),
        (["--target-layer", "head.9"], r"head\.9", 2),
        (["--target-category", "1000"], r"--target-category 1000 is out of range.*1000 classes", 2),
        (["--target-category", "-1"], r"--target-category -1 is out of range", 2),
        (["--weights", "/nonexistent/w.pth"], r"weights file '/nonexistent/w.pth' does not exist", 1),
    ],
)
def test_explain_user_errors_print_one_line(photos, tmp_path, capsys, extra, pattern, code):
    import re

    assert main(["explain", photos["cat"], "-o", str(tmp_path / "out"), "--no-guided", *extra]) == code
    captured = capsys.readouterr()
    assert re.search(pattern, _one_error_line(captured.err))
    assert not (tmp_path / "out").exists()  # nothing created before every argument was checked


def test_every_class_is_checked_before_the_first_file(photos, tmp_path, capsys):
    """`--target-category 5 1000` used to write class 5's files, then fail on 1000."""
    out = tmp_path / "out"
    assert main(["explain", photos["cat"], "--target-category", "5", "1000", "-o", str(out), "--no-guided"]) == 2
    assert "--target-category 1000 is out of range" in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_unwritable_output_folder_is_said_in_words(photos, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["explain", photos["cat"], "-o", str(blocker / "out"), "--no-guided"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "cannot create output folder" in line and "is a file, not a folder" in line and "Errno" not in line
    assert main(["explain", photos["cat"], "-o", str(blocker), "--no-guided"]) == 1
    assert "exists as a file" in _one_error_line(capsys.readouterr().err)


def test_missing_and_unreadable_images(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "nope.jpg")]) == 1
    assert "image file" in _one_error_line(capsys.readouterr().err)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["explain", str(bad)]) == 1
    assert "cannot read image" in _one_error_line(capsys.readouterr().err)
    assert main(["explain", str(tmp_path)]) == 1
    assert "is a directory" in _one_error_line(capsys.readouterr().err)


def test_weights_that_do_not_fit(photos, tmp_path, capsys):
    path = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    assert main(["explain", photos["cat"], "--weights", str(path)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "does not fit model 'efficientnet-lite0'" in line and "missing keys" in line
    path.write_bytes(b"garbage")
    assert main(["explain", photos["cat"], "--weights", str(path)]) == 1
    assert "could not read weights file" in _one_error_line(capsys.readouterr().err)


def test_default_weights_offline_says_how_to_pass_a_file(photos, tmp_path, capsys, monkeypatch):
    api = pytest.importorskip("torchvision.models._api")
    if not hasattr(api, "load_state_dict_from_url"):
        pytest.skip("torchvision's download function moved")

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    assert main(["explain", photos["cat"], "--model", "resnet18", "--target-layer", "layer4"]) == 3  # environment
    line = _one_error_line(capsys.readouterr().err)
    assert "could not get the default torchvision weights for 'resnet18'" in line
    assert "offline" in line and "--weights weights.pth" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_use_cuda_without_cuda(photos, capsys):
    assert main(["explain", photos["cat"], "--use-cuda"]) == 3  # environment
    assert "CUDA is not available" in _one_error_line(capsys.readouterr().err)
    assert main(["explain", photos["cat"], "--device", "cuda"]) == 3
    assert "CUDA is not available" in _one_error_line(capsys.readouterr().err)


def test_usage_errors_and_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "camlens demo" in out and "camlens explain" in out
    assert main(["explain", "--help"]) == 0
    assert "--target-category" in capsys.readouterr().out
    assert main([]) == 2
    assert main(["explain"]) == 2  # argparse: IMAGE is required
    assert main(["explain", "x.png", "--batch-size", "0"]) == 2
    assert "positive integer" in capsys.readouterr().err


# ------------------------------------------------------------------ methods, dispatch
def test_methods_lists_every_registered_method_with_its_paper(capsys):
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = available_methods()
    assert len(lines) == len(names)
    for name, line in zip(names, lines):
        cls = get_method(name)
        assert line.split()[0] == name
        assert cls.paper in line and cls.summary in line


def test_method_all_expands_to_every_registered_method_once():
    classes = _resolve_methods(["gradcam", "all"])
    assert [c.name for c in classes] == ["gradcam"] + [m for m in available_methods() if m != "gradcam"]
    assert _resolve_methods(None) == [get_method("gradcam")]


def test_evaluate_subcommand_is_wired(capsys):
    assert main(["evaluate", "--help"]) == 0
    assert "usage: camlens evaluate" in capsys.readouterr().out


def test_python_dash_m_runs_the_command():
    res = subprocess.run([sys.executable, "-m", "camlens", "methods"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == available_methods()[0]


def test_parser_choices_come_from_the_registry():
    parser = build_parser()
    args = parser.parse_args(["explain", "a.png", "-m", "GradCAM++"])
    assert [c.name for c in _resolve_methods(args.method)] == ["gradcam++"]


@pytest.mark.slow
def test_method_all_writes_a_comparison_grid(photos, tmp_path, capsys):
    """Every registered method (perturbation ones included) on resnet18, random weights."""
    rc = main(["explain", photos["cat"], "--model", "resnet18", "--weights", "none", "--target-layer", "layer4",
               "-m", "all", "-o", str(tmp_path), "--batch-size", "64"])
    assert rc == 0
    for m in available_methods():
        assert (tmp_path / f"cat_{m}_cam.npy").is_file()
    assert (tmp_path / "cat_methods.png").is_file()


def test_interrupt_while_writing_leaves_no_partial_file(photos, tmp_path, capsys, monkeypatch):
    """In-process: Ctrl-C arrives while a .npy is half written -> exit 130, no partial or temporary file."""
    from PIL import Image

    real_save = np.save

    def interrupted_save(path, arr, *a, **k):
        with open(path, "wb") as fh:
            fh.write(b"\x93NUMPY half")  # a truncated file, as a real interrupt would leave
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", interrupted_save)
    out = tmp_path / "out"
    assert main(["explain", photos["cat"], "-m", "gradcam", "-o", str(out)]) == 130
    assert "camlens: error: interrupted" in capsys.readouterr().err
    monkeypatch.setattr(np, "save", real_save)
    names = sorted(f.name for f in out.iterdir())
    assert names == ["cat_gb.png", "cat_gradcam_cam.png"]  # the .npy never appeared, not even half
    for n in names:
        with Image.open(out / n) as im:
            im.load()


@pytest.mark.slow
def test_ctrl_c_leaves_no_unreadable_file(tmp_path):
    """SIGINT midway through `python -m camlens explain`: exit 130, every file written opens, no temporary left."""
    import os
    import signal
    import time

    from PIL import Image

    rng = np.random.default_rng(0)
    images = [_write(tmp_path / f"im{i}.png", (rng.random((40, 40, 3)) * 255).astype(np.uint8)) for i in range(12)]
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "camlens", "explain", *images, "--model", "resnet18", "--weights", "none",
         "--target-layer", "layer4", "-m", "gradcam", "-m", "layercam", "--batch-size", "1", "-o", str(out), "--device", "cpu"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_dir() and len(list(out.iterdir())) >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"finished before it could be interrupted: {proc.stderr.read()}"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "camlens: error: interrupted" in err and "Traceback" not in err
    files = sorted(out.iterdir())
    assert files and len(files) < 12 * 4  # stopped midway
    assert not [f.name for f in files if f.name.startswith(".") or ".tmp" in f.name]
    for f in files:
        if f.suffix == ".png":
            with Image.open(f) as im:
                im.load()
        else:
            assert f.suffix == ".npy" and np.load(f).shape == (224, 224)


def test_exit_codes_are_documented_where_users_look():
    import re

    from camlens.app import exitcodes

    codes = {exitcodes.OK, exitcodes.DATA_ERROR, exitcodes.USAGE_ERROR, exitcodes.ENVIRONMENT, exitcodes.INTERRUPTED}
    root = Path(__file__).parents[1]
    for doc in ("README.md", "docs/cli.md"):
        text = (root / doc).read_text(encoding="utf-8")
        assert {int(c) for c in re.findall(r"^\| (\d+) \|", text, flags=re.M)} == codes, doc
