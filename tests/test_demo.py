"""The offline demo end to end: real photos, the bundled ImageNet model, several methods."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("skimage")
pytest.importorskip("matplotlib")

from camlens.app.cli import main  # noqa: E402
from camlens.app.demo import DEMO_METHODS, TILE, demo_scene, format_report, run_demo  # noqa: E402

DOCS_FIGURE = Path(__file__).resolve().parents[1] / "docs" / "demo.png"
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):
    return run_demo(tmp_path_factory.mktemp("demo"))


def test_scene_is_two_real_photos_side_by_side():
    scene, sources = demo_scene()
    assert scene.shape == (TILE, 2 * TILE, 3) and scene.dtype == np.float32
    assert 0 <= scene.min() and scene.max() <= 1
    assert sources == ["skimage.data.chelsea()", "skimage.data.coffee()"]
    assert not np.allclose(scene[:, :TILE], scene[:, TILE:])


def test_the_model_recognises_both_objects(result):
    left, right = result.classes
    assert left.side == "left" and left.index in CAT_CLASSES
    assert right.side == "right" and right.index in COFFEE_CLASSES
    assert left.tile_prob > 0.3 and right.tile_prob > 0.5
    top5 = [i for i, _, _ in result.scene_top5]
    assert right.index in top5 and any(i in CAT_CLASSES for i in top5)


def test_each_class_map_peaks_on_its_own_object(result):
    assert result.methods == [m for m in DEMO_METHODS]
    for m in result.methods:
        maps = result.maps[m]
        assert maps.shape == (2, TILE, 2 * TILE)
        assert result.hits[m] == [True, True], (m, result.peaks[m])
        # most of the map's mass lies on the object's half, not just the peak
        assert maps[0][:, :TILE].sum() > maps[0][:, TILE:].sum()
        assert maps[1][:, TILE:].sum() > maps[1][:, :TILE].sum()


def test_report_and_figure(result):
    text = format_report(result)
    assert "8/8 maps peak on the object of their class" in text
    assert "scene top-5: " in text
    for m in result.methods:
        assert text.count(" ok") >= 2 and m in text
    from PIL import Image

    with Image.open(result.figure) as im:
        w, h = im.size
    assert w > h > 200  # rows of wide scenes
    assert result.figure.stat().st_size < 300_000


def test_cli_demo_smoke(tmp_path, capsys):
    assert main(["demo", "--output-dir", str(tmp_path), "--method", "gradcam", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "2/2 maps peak on the object of their class" in out
    assert (tmp_path / "demo.png").is_file() and (tmp_path / "scene.png").is_file()


def test_committed_demo_figure_is_small():
    if not DOCS_FIGURE.exists():
        pytest.skip("docs/demo.png is not in this checkout")
    assert DOCS_FIGURE.stat().st_size < 300_000
