"""Object detection: per-image dict outputs, feature-pyramid layers, box-score targets.

A tiny detector whose one box score depends on one region of one pyramid level gives maps that
can be computed by hand; torchvision detectors (random weights, 64 px) check that every listed
model runs with no layer given and is left as found.
"""

from __future__ import annotations

import math

import numpy as np
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camlens import AblationCAM, EigenCAM, GradCAM, ScoreCAM
from camlens.engine import Engine
from camlens.errors import InputShapeError, LayerOutputError, ModelOutputError, ReshapeError, TargetError
from camlens.layers import auto_target_layers
from camlens.reshape import FPNLevel, FPNReshape, fasterrcnn_reshape_transform
from camlens.targets import (
    BoxScoreTarget,
    DetectionTarget,
    box_iou,
    detection_targets_default,
    targets_from_categories,
)

BOX = [10.0, 0.0, 16.0, 6.0]


class TinyPyramid(nn.Module):
    """Two levels: ``"0"`` = identity 1x1 conv of the input pooled to 8x8, ``"1"`` = that pooled to 4x4."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(2)[:, :, None, None])

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        l0 = self.conv(F.avg_pool2d(x, 2))
        return OrderedDict([("0", l0), ("1", F.avg_pool2d(l0, 2))])


class TinyDetector(nn.Module):
    """One detection per image: box ``BOX``, label 1, score ``sigmoid(sum of level 0, channel 0, rows
    0:3, cols 5:8)`` -- the top-right corner of the image's first channel and nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = TinyPyramid()
        self.head = nn.Identity()
        self.anchor_generator = nn.Identity()

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        feats = self.backbone(x)
        y = torch.sigmoid(feats["0"][:, 0, 0:3, 5:8].sum(dim=(1, 2)))
        box = torch.tensor([BOX])
        return [{"boxes": box, "labels": torch.tensor([1]), "scores": y[i : i + 1]} for i in range(x.shape[0])]


def two_blobs(n: int = 1) -> torch.Tensor:
    """Channel 0: a blob in the top-right corner (what the score reads); channel 1: one bottom-left."""
    x = torch.zeros(n, 2, 16, 16)
    x[:, 0, 0:6, 10:16] = 1.0
    x[:, 1, 10:16, 0:6] = 1.0
    return x


def model_state(model: nn.Module) -> list:
    return [
        (m.training, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
        for m in model.modules()
    ] + [(p.requires_grad, p.grad) for p in model.parameters()]


# ---------------------------------------------------------------------- targets, by hand
def test_box_iou_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0]]))
    flat = torch.tensor([[1.0, 1.0, 1.0, 3.0]])  # zero area: 1 with itself, 0 with others
    assert box_iou(flat, torch.cat([flat, flat + 1])).tolist() == [[1.0, 0.0]]


def test_box_score_target_by_hand():
    out = {
        "boxes": torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0]]),
        "labels": torch.tensor([1, 1, 2]),
        "scores": torch.tensor([0.9, 0.8, 0.7], requires_grad=True),
    }
    # Reference 1 (label 1) matches detection 0 exactly: 1 + 0.9. Reference 2 (label 2) matches
    # detection 2: 1 + 0.7. Reference 3 (label 1) overlaps detection 0 by 1/8 and detection 1 by
    # 4/5 (intersection 4, union 4 + 5 - 4): the best, counted as 0.8 + its score 0.8.
    target = BoxScoreTarget([1, 2, 1], [[0, 0, 2, 2], [0, 0, 2, 2], [1, 1, 3, 3.5]])
    assert math.isclose(float(target(out).detach()), 1.9 + 1.7 + 0.8 + 0.8, rel_tol=1e-6)
    strict = BoxScoreTarget([1], [[1, 1, 3, 3.5]], iou_threshold=0.9)
    none = strict(out)
    assert float(none.detach()) == 0.0 and none.requires_grad  # no match: zero, but still on the graph
    wrong_label = BoxScoreTarget([3], [[0, 0, 2, 2]])
    assert float(wrong_label(out)) == 0.0
    value = BoxScoreTarget([1], [[0, 0, 2, 2]])(out)
    (grad,) = torch.autograd.grad(value, out["scores"])
    assert grad.tolist() == [1.0, 0.0, 0.0]


def test_box_score_target_errors():
    with pytest.raises(TargetError, match="one label per box"):
        BoxScoreTarget([1, 2], [[0, 0, 1, 1]])
    with pytest.raises(TargetError, match=r"iou_threshold must be in \[0, 1\]"):
        BoxScoreTarget([1], [[0, 0, 1, 1]], iou_threshold=2)
    with pytest.raises(TargetError, match="'boxes' \\(K, 4\\), 'labels'"):
        BoxScoreTarget([1], [[0, 0, 1, 1]])({"scores": torch.ones(1)})


def test_detection_targets_from_outputs_and_default():
    outs = [
        {"boxes": torch.tensor([[0.0, 0, 2, 2], [4, 4, 8, 8]]), "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.9, 0.3])},
        {"boxes": torch.tensor([[0.0, 0, 2, 2], [4, 4, 8, 8]]), "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.2, 0.4])},
    ]
    a, b = DetectionTarget.from_outputs(outs, 0.25)
    assert a.labels.tolist() == [1, 2] and b.labels.tolist() == [2]
    each = DetectionTarget.per_detection(outs[0], 0.0)
    assert [t.boxes.tolist() for t in each] == [[[0.0, 0, 2, 2]], [[4.0, 4, 8, 8]]]
    # targets=None: detections >= 0.5, else the image's best one
    d0, d1 = detection_targets_default(outs)
    assert d0.labels.tolist() == [1] and d1.labels.tolist() == [2]
    assert [t.labels.tolist() for t in targets_from_categories(None, outs)] == [[1], [2]]
    with pytest.raises(TargetError, match="per-image outputs"):
        targets_from_categories(3, outs)


# ---------------------------------------------------------------------- engine and reshapes
def test_engine_captures_each_pyramid_level_with_its_gradient():
    model = TinyDetector().eval()
    x = two_blobs(2)
    cap = Engine(model, [("backbone", model.backbone)]).run(x)
    acts, grads = cap.activations[0], cap.gradients[0]
    assert list(acts) == ["0", "1"] and list(grads) == ["0", "1"]
    assert acts["0"].shape == (2, 2, 8, 8) and acts["1"].shape == (2, 2, 4, 4)
    y = torch.sigmoid(torch.tensor(9.0))
    assert torch.allclose(cap.scores, (1 + y).expand(2))  # IoU 1 + score
    want = torch.zeros(2, 2, 8, 8)
    want[:, 0, 0:3, 5:8] = y * (1 - y)
    assert torch.allclose(grads["0"], want) and grads["1"].abs().sum() == 0
    assert isinstance(cap.outputs, list) and len(cap.outputs) == 2 and not cap.outputs[0]["scores"].requires_grad


def test_engine_rejects_wrong_number_of_per_image_outputs():
    model = TinyDetector().eval()
    engine = Engine(model, [("backbone", model.backbone)], output_adapter=lambda out: out[:1])
    with pytest.raises(ModelOutputError, match="1 per-image outputs for a batch of 2"):
        engine.run(two_blobs(2))


def test_fpn_reshapes():
    pyramid = OrderedDict([("0", torch.arange(16.0).reshape(1, 1, 4, 4)), ("1", torch.ones(1, 2, 2, 2))])
    stacked = FPNReshape()(pyramid)
    assert stacked.shape == (1, 3, 4, 4) and torch.equal(stacked[:, :1], pyramid["0"])
    assert torch.allclose(stacked[:, 1:], torch.ones(1, 2, 4, 4))
    assert FPNReshape(size="coarsest")(pyramid).shape == (1, 3, 2, 2)
    assert FPNReshape(size=(3, 5), levels=["1"])(pyramid).shape == (1, 2, 3, 5)
    assert FPNReshape().channel_sources(pyramid) == [("0", 0), ("1", 0), ("1", 1)]
    assert torch.equal(fasterrcnn_reshape_transform(pyramid), stacked)
    assert FPNLevel("1")(pyramid) is pyramid["1"] and FPNLevel(-1).channel_sources(pyramid) == [("1", 0), ("1", 1)]
    with pytest.raises(ReshapeError, match="its levels are \\['0', '1'\\]"):
        FPNLevel("pool")(pyramid)
    with pytest.raises(ReshapeError, match="expects a feature pyramid"):
        FPNReshape()(torch.ones(1, 2, 3, 3))


def test_pyramid_layer_without_reshape_is_a_clear_error():
    model = TinyDetector().eval()
    with pytest.raises(LayerOutputError, match="feature pyramid .*FPNReshape"):
        GradCAM(model, "backbone")(two_blobs())


# ---------------------------------------------------------------------- the synthetic detector
def test_auto_layer_on_tiny_detector_is_the_pyramid():
    choice = auto_target_layers(TinyDetector())
    assert choice.names == ["backbone"] and isinstance(choice.reshape_transform, FPNReshape)


def test_gradcam_on_tiny_detector_by_hand_and_peaks_on_the_scored_region():
    model = TinyDetector().eval()
    before = model_state(model)
    x = two_blobs()
    e = GradCAM(model).explain(x)  # no layer, no targets: the pyramid, the image's detection
    y = torch.sigmoid(torch.tensor(9.0))
    # stacked channels [l0c0, l0c1, l1c0, l1c1] on the 8x8 grid: only l0c0 has gradient, w = 9 y(1-y) / 64
    a0 = F.avg_pool2d(x, 2)[0, 0]
    assert torch.allclose(e.layer_maps[0][0], 9 * y * (1 - y) / 64 * a0, atol=1e-7)
    peak = divmod(int(e.cam[0].argmax()), 16)
    assert peak[0] < 6 and peak[1] >= 10
    assert model_state(model) == before


def test_ablationcam_ablates_the_right_channel_of_the_right_level():
    model = TinyDetector().eval()
    before = model_state(model)
    x = two_blobs()
    cam = AblationCAM(model, progress=False)
    e = cam.explain(x, [BoxScoreTarget([1], [BOX])])
    # y = 1 + s with s = sigmoid(9); removing level 0 channel 0 gives 1 + sigmoid(0); every other
    # channel (level 0 channel 1, both level-1 channels) leaves the score unchanged.
    s = torch.sigmoid(torch.tensor(9.0, dtype=torch.float64))
    w0 = float((s - 0.5) / (1 + s))
    a0 = F.avg_pool2d(x, 2)[0, 0]
    assert torch.allclose(e.layer_maps[0][0], w0 * a0, atol=1e-6)
    assert cam.last_path == {"backbone": "full"}
    assert model_state(model) == before


def test_scorecam_and_eigencam_run_on_tiny_detector():
    model = TinyDetector().eval()
    x = two_blobs()
    e = ScoreCAM(model, progress=False).explain(x)
    peak = divmod(int(e.cam[0].argmax()), 16)
    assert peak[0] < 6 and peak[1] >= 10
    raw = EigenCAM(model).explain(x).layer_maps[0]
    assert torch.isfinite(raw).all() and raw.std() > 0


# ---------------------------------------------------------------------- torchvision detectors
tv = pytest.importorskip("torchvision")

DETECTORS = [
    ("fasterrcnn_resnet50_fpn", {"box_score_thresh": 0.0}, False),
    ("retinanet_resnet50_fpn", {"score_thresh": 0.0}, False),
    ("fcos_resnet50_fpn", {"score_thresh": 0.0}, False),
    ("maskrcnn_resnet50_fpn", {"box_score_thresh": 0.0}, True),
    ("fasterrcnn_resnet50_fpn_v2", {"box_score_thresh": 0.0}, True),
    ("retinanet_resnet50_fpn_v2", {"score_thresh": 0.0}, True),
    ("ssd300_vgg16", {"score_thresh": 0.0}, True),
]


def _build(name: str, extra: dict) -> nn.Module:
    torch.manual_seed(0)
    size = {} if name.startswith("ssd") else {"min_size": 64, "max_size": 64}
    return getattr(tv.models.detection, name)(weights=None, weights_backbone=None, num_classes=3, **size, **extra)


@pytest.mark.parametrize(
    "name,extra",
    [pytest.param(n, e, id=n, marks=[pytest.mark.slow] if slow else []) for n, e, slow in DETECTORS],
)
def test_torchvision_detector_runs_with_no_layer_given(name, extra):
    model = _build(name, extra).train()  # left in train mode: camlens must restore it
    before = model_state(model)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for method in (GradCAM, EigenCAM):
        cam = method(model)
        assert cam.target_layer_names == ["backbone"]
        e = cam.explain(x)
        raw = e.layer_maps[0]
        assert torch.isfinite(raw).all() and float(raw.std()) > 0, (name, method.__name__)
        assert e.cam.shape == (1, 64, 64) and float(e.scores[0]) > 0
    assert model_state(model) == before


@pytest.mark.slow
def test_ablationcam_on_torchvision_detector_level():
    model = _build("fasterrcnn_mobilenet_v3_large_fpn", {"box_score_thresh": 0.0}).eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
    target = DetectionTarget.from_output(out[0], 0.0)
    target = DetectionTarget(target.labels[:2], target.boxes[:2])
    cam = AblationCAM(model, "backbone", reshape_transform=FPNLevel("0"), progress=False, batch_size=64)
    raw = cam.explain(x, [target]).layer_maps[0]
    assert torch.isfinite(raw).all() and float(raw.std()) > 0


# ---------------------------------------------------------------------- overlay and CLI
def test_draw_detections_draws_each_box_in_its_label_colour():
    from camlens.image import _box_colour, draw_detections

    img = np.zeros((32, 32, 3), dtype=np.uint8)
    out = draw_detections(img, torch.tensor([[4.0, 20.0, 12.0, 28.0], [16.0, 16.0, 30.0, 30.0]]), [1, 2], [0.9, 0.5], width=1)
    assert tuple(out[24, 4]) == _box_colour(1) and tuple(out[24, 30]) == _box_colour(2)
    assert tuple(out[24, 8]) == (0, 0, 0)  # inside a box: untouched
    assert out.dtype == np.uint8 and img.sum() == 0  # the input is not changed
    with pytest.raises(InputShapeError, match="2 boxes but 1 labels"):
        draw_detections(img, np.zeros((2, 4)), [1])


def test_cli_explain_task_detection_and_segmentation(tmp_path):
    from PIL import Image

    from camlens.app.cli import main

    path = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8)).save(path)
    det = ["--task", "detection", "--model", "fasterrcnn_mobilenet_v3_large_fpn", "--score-threshold", "0.0"]
    assert main(["explain", str(path), *det, "--weights", "none", "-m", "eigencam", "-o", str(tmp_path / "d"), "--device", "cpu"]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["img_eigencam_cam.npy", "img_eigencam_cam.png"]
    seg = ["--task", "segmentation", "--model", "lraspp_mobilenet_v3_large", "--target-category", "2"]
    assert main(["explain", str(path), *seg, "--weights", "none", "-o", str(tmp_path / "s"), "--device", "cpu"]) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["img_c2_gradcam_cam.npy", "img_c2_gradcam_cam.png"]
    assert main(["explain", str(path), "--task", "detection", "--model", "resnet18", "--weights", "none", "-o", str(tmp_path / "x")]) != 0
