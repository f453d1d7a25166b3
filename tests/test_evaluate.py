import argparse
import json

import numpy as np
import pytest

from camlens.app.evaluate import Geometry, evaluate, format_table, load_annotations, load_samples, register_cli

PIL = pytest.importorskip("PIL.Image")

MODEL_FILE = '''
import torch
from torch import nn
MEAN = STD = (0.5, 0.5, 0.5)

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.fc = nn.Linear(6, 3)
    def forward(self, x):
        return self.fc(torch.relu(self.features(x)).mean(dim=(2, 3)))

def load_tiny():
    return Tiny().eval()
'''


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        arr = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
        PIL.fromarray(arr).save(tmp_path / f"im{i}.png")
    ann = [
        {"file": "im0.png", "label": 1, "boxes_xyxy": [[3, 2, 14, 9]]},
        {"file": "im1.png", "label": 2, "boxes_xyxy": [[0, 0, 29, 19], [5, 5, 6, 6]]},
        {"file": "im2.png", "boxes_xyxy": []},
    ]
    (tmp_path / "annotations.json").write_text(json.dumps(ann))
    (tmp_path / "model.py").write_text(MODEL_FILE)
    return tmp_path


def test_load_annotations_json_and_csv(folder):
    js = load_annotations(folder / "annotations.json")
    assert [e["label"] for e in js] == [1, 2, None]
    assert js[1]["boxes"].shape == (2, 4)
    (folder / "a.csv").write_text("file,label,x1,y1,x2,y2\nim0.png,1,3,2,14,9\nim0.png,1,0,0,1,1\nim1.png,,,,,\n")
    cs = load_annotations(folder / "a.csv")
    assert cs[0]["boxes"].tolist() == [[3, 2, 14, 9], [0, 0, 1, 1]]
    assert cs[1]["label"] is None and cs[1]["boxes"] is None
    (folder / "bad.json").write_text(json.dumps([{"label": 1}]))
    with pytest.raises(Exception, match="has no 'file' key"):
        load_annotations(folder / "bad.json")


def test_geometry_moves_boxes_with_the_image():
    img = np.zeros((20, 40, 3), np.float32)
    out, boxes = Geometry(squash=10).apply(img, np.array([[4.0, 2.0, 20.0, 10.0]]))
    assert out.shape == (10, 10, 3)
    assert boxes.tolist() == [[1.0, 1.0, 5.0, 5.0]]  # x scaled by 10/40, y by 10/20
    out, boxes = Geometry(squash=None, resize=10, crop=10).apply(img, np.array([[0.0, 0.0, 39.0, 19.0]]))
    assert out.shape == (10, 10, 3)  # 10x20 after resize, centre-crop columns 5..14
    assert boxes.tolist() == [[0.0, 0.0, 9.0, 9.0]]


def test_evaluate_api_rows(folder):
    import importlib.util

    spec = importlib.util.spec_from_file_location("tinymodel", folder / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.load_tiny()
    samples = load_samples(folder, size=16)
    assert [s.label for s in samples] == [1, 2, None]
    rows = evaluate(model, samples, ["gradcam", "eigencam"], target_layers=["features.2"], mean=mod.MEAN, std=mod.STD,
                    batch_size=2, steps=4)
    assert [r["method"] for r in rows] == ["gradcam", "eigencam", "center-baseline"]
    for r in rows:
        assert r["images"] == 3
        assert 0 <= r["pointing_game"] <= 1 and 0 <= r["energy_pointing_game"] <= 1
        assert 0 <= r["deletion_auc"] <= 1 and 0 <= r["insertion_auc"] <= 1
        assert 0 <= r["average_drop"] <= 100
    text = format_table(rows)
    assert "pointing_game (+)" in text and "deletion_auc (-)" in text and "center-baseline" in text


def _parse(argv):
    parser = argparse.ArgumentParser(prog="camlens")
    sub = parser.add_subparsers(dest="command")
    register_cli(sub)
    return parser.parse_args(argv)


def test_cli_writes_json_and_csv(folder, capsys):
    base = ["evaluate", str(folder), "--model-file", str(folder / "model.py"), "--layer", "features.2",
            "--image-size", "16", "--steps", "3", "--batch-size", "2", "--no-progress", "-m", "gradcam,layercam"]
    args = _parse(base + ["--output", str(folder / "t.json")])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "layercam" in printed and "center-baseline" in printed
    data = json.loads((folder / "t.json").read_text())
    assert [r["method"] for r in data["rows"]] == ["gradcam", "layercam", "center-baseline"]
    assert data["higher_is_better"]["deletion_auc"] is False and data["meta"]["images"] == 3
    args = _parse(base + ["--metric", "pointing_game", "--no-baseline", "-o", str(folder / "t.csv")])
    assert args.func(args) == 0
    lines = (folder / "t.csv").read_text().splitlines()
    assert lines[0] == "method,images,pointing_game,cam_seconds" and len(lines) == 3


def test_cli_errors(folder, capsys):
    args = _parse(["evaluate", str(folder), "--model-file", str(folder / "model.py"), "--metric", "iou"])
    assert args.func(args) == 2
    assert "unknown metric 'iou'" in capsys.readouterr().err
    args = _parse(["evaluate", str(folder / "missing"), "--model-file", str(folder / "model.py")])
    assert args.func(args) == 2
    assert "does not exist" in capsys.readouterr().err
