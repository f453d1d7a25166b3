"""`camlens evaluate`: data loading, the run loop, tables, and the command."""

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from camlens.app.cli import main
from camlens.app.data import load_annotations, load_samples
from camlens.app.evaluate import evaluate
from camlens.app.tables import format_table
from camlens.app.zoo import Preprocessing
from camlens.image import load_image, resize_and_crop

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
    with pytest.raises(ValueError, match="has no 'file' key"):
        load_annotations(folder / "bad.json")


def test_geometry_moves_boxes_with_the_image():
    img = np.zeros((20, 40, 3), np.float32)
    out, boxes = resize_and_crop(img, (10, 10), boxes=np.array([[4.0, 2.0, 20.0, 10.0]]))
    assert out.shape == (10, 10, 3)
    assert boxes.tolist() == [[1.0, 1.0, 5.0, 5.0]]  # x scaled by 10/40, y by 10/20
    out, boxes = resize_and_crop(img, 10, 10, boxes=np.array([[0.0, 0.0, 39.0, 19.0]]))
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


def test_cli_writes_json_and_csv(folder, capsys):
    base = ["evaluate", str(folder), "--model-file", str(folder / "model.py"), "--layer", "features.2",
            "--image-size", "16", "--steps", "3", "--batch-size", "2", "--no-progress", "-m", "gradcam,layercam"]
    assert main(base + ["--output", str(folder / "t.json")]) == 0
    printed = capsys.readouterr().out
    assert "layercam" in printed and "center-baseline" in printed
    data = json.loads((folder / "t.json").read_text())
    assert [r["method"] for r in data["rows"]] == ["gradcam", "layercam", "center-baseline"]
    assert data["higher_is_better"]["deletion_auc"] is False and data["meta"]["images"] == 3
    assert main(base + ["--metric", "pointing_game", "--no-baseline", "-o", str(folder / "t.csv")]) == 0
    lines = (folder / "t.csv").read_text().splitlines()
    assert lines[0] == "method,images,pointing_game,cam_seconds" and len(lines) == 3
    assert not list(folder.glob(".*.tmp*"))  # written through a temporary name, renamed into place


def _last_error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("camlens: error: "), err
    return err[0]


def test_cli_errors_use_the_common_exit_codes(folder, capsys):
    model = ["--model-file", str(folder / "model.py"), "--no-progress"]
    assert main(["evaluate", str(folder), *model, "--metric", "iou"]) == 2  # usage
    assert "unknown metric 'iou'" in _last_error(capsys)
    assert main(["evaluate", str(folder), *model, "-m", "gradcamm"]) == 2
    assert "unknown CAM method 'gradcamm'" in _last_error(capsys)
    assert main(["evaluate", str(folder), *model, "-o", str(folder / "t.txt")]) == 2  # checked before the run
    assert "--output must end in .csv or .json" in _last_error(capsys)
    assert main(["evaluate", str(folder), *model, "-o", str(folder / "no" / "t.csv")]) == 1  # checked before the run
    assert re.search(r"--output .*t.csv.: folder .* does not exist", _last_error(capsys))
    (folder / "annotations.json").write_text(json.dumps([{"file": "im0.png", "label": 7}]))
    assert main(["evaluate", str(folder), *model, "--image-size", "16"]) == 2  # the tiny model has 3 classes
    assert "image 'im0.png' has label 7, but the model has 3 classes (0..2)" in _last_error(capsys)
    assert main(["evaluate", str(folder / "missing"), *model]) == 1  # input
    assert "does not exist" in _last_error(capsys)
    assert main(["evaluate", str(folder), "--model-file", str(folder / "nope.py")]) == 1
    assert "--model-file" in _last_error(capsys)


# ------------------------------------------------------------------ malformed annotations
@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("annotations.json", '[{"file": "im0.png", "label": 1', r"annotations\.json', line 1 column \d+: invalid JSON"),
        ("annotations.json", '[{"file": "im0.png"}, {"file": "im1.png", "label": "281"}]',
         r"annotations\.json: entry 1 \('im1\.png'\): 'label' must be a class index .* got '281'"),
        ("annotations.json", '[{"file": "im0.png", "boxes_xyxy": [[1, 2, 3]]}]',
         r"entry 0 \('im0\.png'\), box 0: got 3 values \[1, 2, 3\]; expected a box \[x1, y1, x2, y2\] of 4 numbers"),
        ("annotations.json", b"\x89PNG\r\n\x1a\n\x00\xff\xfe", r"annotations\.json' is not a UTF-8 text file.*expected a JSON list"),
        ("annotations.json", '{"images": []}', r"got a JSON dict; expected a JSON list"),
        ("annotations.json", '[{"file": "im0.png", "label": true}]', r"entry 0 \('im0\.png'\): 'label' must be a class index .* got True"),
        ("annotations.json", '[{"file": "im0.png", "label": -3}]', r"'label' must be a class index >= 0; got -3"),
        ("annotations.json", '[{"file": "im0.png", "boxes_xyxy": [[5, 5, 1, 9]]}]', r"box 0: box \[5, 5, 1, 9\] has x2 < x1"),
        ("annotations.json", '[{"file": "gone.png"}]', r"entry 0 \('gone\.png'\): image .*gone\.png' does not exist"),
        ("annotations.csv", "file,label,x1,y1,x2,y2\nim0.png,1,3,2,14,9\nim1.png,cat,,,,\n",
         r"annotations\.csv: line 3: label is 'cat'; expected a number"),
        ("annotations.csv", "file,label,x1,y1,x2,y2\nim0.png,1,3,2,14,\n",
         r"annotations\.csv: line 2: box cells .*expected all four of x1,y1,x2,y2"),
        ("annotations.csv", "name,label\nim0.png,1\n", r"header is \['name', 'label'\]; expected a CSV file with the header"),
    ],
)
def test_malformed_annotations_name_the_file_and_entry(folder, capsys, name, content, pattern):
    import re

    (folder / "annotations.json").unlink()
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError if "does not exist" not in pattern else FileNotFoundError, match=pattern):
        load_samples(folder, size=16)
    rc = main(["evaluate", str(folder), "--model-file", str(folder / "model.py"), "--no-progress", "--image-size", "16"])
    assert rc == 1
    assert re.search(pattern, _last_error(capsys))


# ------------------------------------------------------------------ one geometry
def test_zoo_preprocessing_and_evaluate_agree_on_a_small_image(tmp_path):
    """A 12x20 image with a 32 px crop and no resize: both used to differ (one stretched, one refused)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((12, 20, 3)) * 255).astype(np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "annotations.json").write_text(json.dumps([{"file": "small.png", "label": 0, "boxes_xyxy": [[0, 0, 9, 11]]}]))
    prep = Preprocessing(resize=None, crop=32)
    shown = prep.geometry(load_image(tmp_path / "small.png"))
    (sample,) = load_samples(tmp_path, preprocessing=prep)
    assert shown.shape == sample.image.shape == (32, 32, 3)
    np.testing.assert_array_equal(sample.image, shown)
    # aspect kept: 12x20 -> 32x53, centre crop columns 10..41; box x 9 -> 9 * 53/20 - 10, y 11 -> 11 * 32/12
    np.testing.assert_allclose(sample.boxes, [[0.0, 0.0, 9 * 53 / 20 - 10, 11 * 32 / 12]])
    # the same with a resize below the crop (shorter side 8 -> scaled up to 32)
    prep = Preprocessing(resize=8, crop=32)
    (sample,) = load_samples(tmp_path, preprocessing=prep)
    np.testing.assert_array_equal(sample.image, prep.geometry(load_image(tmp_path / "small.png")))


# ------------------------------------------------------------------ models that return a dict
class DictOut(nn.Module):
    """A classifier whose forward returns ``{"logits": ...}`` (as HuggingFace-style models do)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return {"logits": self.fc(self.features(x).mean(dim=(2, 3))), "hidden": x}


def test_evaluate_reads_dict_outputs_through_the_library_adapter(folder):
    samples = load_samples(folder, size=16)
    for s in samples:
        s.label = None  # the top class must come from the dict's logits
    model = DictOut().eval()
    rows = evaluate(model, samples, ["gradcam"], ["deletion_auc", "average_drop"], target_layers=["features.1"],
                    batch_size=2, steps=3, baseline=False)
    assert rows[0]["method"] == "gradcam" and 0 <= rows[0]["deletion_auc"] <= 1


def test_cli_evaluate_on_a_dict_output_model(folder, capsys):
    (folder / "dictmodel.py").write_text(
        "import torch\nfrom torch import nn\n"
        "class M(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); torch.manual_seed(0)\n"
        "        self.conv = nn.Conv2d(3, 4, 3, padding=1); self.fc = nn.Linear(4, 3)\n"
        "    def forward(self, x):\n"
        "        return {'logits': self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))}\n"
        "def load():\n    return M().eval()\n"
    )
    (folder / "annotations.json").write_text(json.dumps([{"file": f"im{i}.png"} for i in range(3)]))
    rc = main(["evaluate", str(folder), "--model-file", str(folder / "dictmodel.py"), "--layer", "conv", "-m", "gradcam",
               "--metric", "deletion_auc", "--image-size", "16", "--steps", "3", "--no-progress", "--no-baseline"])
    assert rc == 0, capsys.readouterr().err
    assert "gradcam" in capsys.readouterr().out
