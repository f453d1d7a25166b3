"""Ultralytics YOLO detectors: the output adapter by hand, then real v8 / 11 / 26 models from yaml.

The adapter (:mod:`camlens.yolo`) works on plain tensors, so its decoding, thresholding,
class-aware NMS and differentiability are checked on hand-made predictions without Ultralytics.
The model tests need the ``ultralytics`` package and skip without it. They use random weights,
64 px inputs and 3 classes; where a test needs detections with varied scores, the model is first
*calibrated*: batch norms take the statistics of one random batch (untrained, the features fade
to ~1e-6 by the head) and the class logits are standardised, so scores spread over (0, 1) instead
of sitting at Ultralytics' prior of ~1e-4.
"""

from __future__ import annotations

import math

import numpy as np

import pytest
import torch
from torch import nn

from camlens import AblationCAM, EigenCAM, GradCAM, ScoreCAM
from camlens.engine import Engine
from camlens.errors import ArgumentError, ModelOutputError
from camlens.layers import auto_target_layers
from camlens.targets import BoxScoreTarget, DetectionTarget
from camlens.yolo import YOLOOutputAdapter, is_yolo_detector, yolo_target_layer

pytest.importorskip("torchvision", reason="YOLOOutputAdapter's NMS is torchvision.ops.batched_nms")


def hand_preds() -> torch.Tensor:
    """(1, 4 + 2, 5): two classes, five anchors (columns); rows cx, cy, w, h, score0, score1."""
    return torch.tensor(
        [[
            [10.0, 11.0, 10.0, 30.0, 50.0],  # cx
            [10.0, 10.0, 10.0, 30.0, 50.0],  # cy
            [4.0, 4.0, 4.0, 8.0, 2.0],  # w
            [4.0, 4.0, 4.0, 8.0, 2.0],  # h
            [0.9, 0.8, 0.1, 0.1, 0.01],  # class 0
            [0.2, 0.1, 0.6, 0.7, 0.02],  # class 1
        ]],
        requires_grad=True,
    )


# ---------------------------------------------------------------------- the adapter, by hand
def test_adapter_decodes_thresholds_and_suppresses_by_hand():
    preds = hand_preds()
    # anchor 0: [8, 8, 12, 12] class 0 (0.9); anchor 1: [9, 8, 13, 12] class 0 (0.8), IoU with
    # anchor 0 = (3*4) / (16 + 16 - 12) = 0.6; anchor 2 = anchor 0's box but class 1 (0.6): kept
    # by class-aware NMS; anchor 3: [26, 26, 34, 34] class 1 (0.7); anchor 4: best score 0.02.
    [det] = YOLOOutputAdapter(score_threshold=0.05, iou_threshold=0.5)((preds, {"raw": None}))
    assert det["labels"].tolist() == [0, 1, 1] and det["labels"].dtype == torch.int64
    assert det["boxes"].tolist() == [[8.0, 8.0, 12.0, 12.0], [26.0, 26.0, 34.0, 34.0], [8.0, 8.0, 12.0, 12.0]]
    assert torch.allclose(det["scores"], torch.tensor([0.9, 0.7, 0.6]))
    # IoU 0.6 is not above 0.7 (Ultralytics' default): anchor 1 stays; the score order holds
    [loose] = YOLOOutputAdapter()(preds)
    assert torch.allclose(loose["scores"], torch.tensor([0.9, 0.8, 0.7, 0.6]))
    [two] = YOLOOutputAdapter(max_detections=2)(preds)
    assert torch.allclose(two["scores"], torch.tensor([0.9, 0.8]))
    [none] = YOLOOutputAdapter(score_threshold=0.95)(preds)
    assert none["boxes"].shape == (0, 4) and none["scores"].shape == (0,) and none["labels"].shape == (0,)


def test_adapter_scores_and_boxes_stay_differentiable():
    preds = hand_preds()
    [det] = YOLOOutputAdapter(iou_threshold=0.5)(preds)
    assert det["scores"].requires_grad and det["boxes"].requires_grad
    (g,) = torch.autograd.grad(det["scores"].sum(), preds, retain_graph=True)
    want = torch.zeros_like(preds)
    want[0, 4, 0] = want[0, 5, 3] = want[0, 5, 2] = 1.0  # each kept anchor's winning class score
    assert torch.equal(g, want)
    # x2 = cx + w / 2 of the first detection (anchor 0)
    (g,) = torch.autograd.grad(det["boxes"][0, 2], preds, retain_graph=True)
    assert g[0, 0, 0] == 1.0 and g[0, 2, 0] == 0.5 and g.abs().sum() == 1.5
    # a box-score target on the adapted output: IoU 1 + score 0.9, gradient 1 on that score
    (g,) = torch.autograd.grad(BoxScoreTarget([0], [[8, 8, 12, 12]])(det), preds)
    assert g[0, 4, 0] == 1.0 and g[0, 4:].abs().sum() == 1.0


def test_adapter_reads_end_to_end_rows():
    rows = torch.tensor([[[0.0, 0, 4, 4, 0.3, 2], [1, 1, 5, 5, 0.8, 0], [2, 2, 6, 6, 0.01, 1]]], requires_grad=True)
    [det] = YOLOOutputAdapter()((rows, {}))
    assert det["labels"].tolist() == [0, 2] and det["boxes"].tolist() == [[1, 1, 5, 5], [0, 0, 4, 4]]
    (g,) = torch.autograd.grad(det["scores"].sum(), rows)
    assert g[0, :, 4].tolist() == [1.0, 1.0, 0.0] and g.abs().sum() == 2.0


def test_adapter_errors():
    with pytest.raises(ModelOutputError, match=r"expected \(N, 4 \+ 3 \+ 0 = 7, anchors\).*extra_channels=<nm or nk>"):
        YOLOOutputAdapter(num_classes=3)(torch.rand(1, 9, 20))  # e.g. a pose or segmentation head
    with pytest.raises(ModelOutputError, match=r"got a tensor of shape \(2, 84\)"):
        YOLOOutputAdapter()(torch.rand(2, 84))
    with pytest.raises(ModelOutputError, match="got dict"):
        YOLOOutputAdapter()({"boxes": torch.rand(1, 4)})
    with pytest.raises(ArgumentError, match="extra_channels needs num_classes"):
        YOLOOutputAdapter(extra_channels=32)
    with pytest.raises(ModelOutputError, match="at least 5"):
        YOLOOutputAdapter()(torch.rand(1, 4, 10))
    with pytest.raises(ArgumentError, match="score_threshold must be a number in \\[0, 1\\]; got 2"):
        YOLOOutputAdapter(score_threshold=2)
    with pytest.raises(ArgumentError, match="max_detections must be a positive int; got 0"):
        YOLOOutputAdapter(max_detections=0)
    with pytest.raises(ModelOutputError, match="pass yolo.model"):
        YOLOOutputAdapter.for_model(nn.Linear(2, 2))
    assert not is_yolo_detector(nn.Sequential(nn.Conv2d(3, 3, 1))) and yolo_target_layer(nn.Linear(1, 1)) is None


# ---------------------------------------------------------------------- real Ultralytics models
def _tasks():
    # ImportError too: ultralytics installed but OpenCV without its system libraries (libGL) is skipped.
    return pytest.importorskip(
        "ultralytics.nn.tasks", reason="ultralytics is not installed or does not import", exc_type=ImportError
    )


def yolo(name: str, calibrate: bool = False) -> nn.Module:
    """An Ultralytics DetectionModel from its yaml: random weights (seed 0), 3 classes, eval mode."""
    tasks = _tasks()
    torch.manual_seed(0)
    net = tasks.DetectionModel(name, nc=3, verbose=False)
    if calibrate:
        x = torch.rand(32, 3, 64, 64, generator=torch.Generator().manual_seed(2))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # one training-mode pass stores that batch's exact statistics
        logits: list[torch.Tensor] = []
        with torch.no_grad():
            net.train()(x)
            net.eval()
            head = net.model[-1]
            heads = [*head.cv3, *(getattr(head, "one2one_cv3", None) or [])]  # end-to-end heads have two
            handles = [h[-1].register_forward_hook(lambda m, a, o: logits.append(o)) for h in heads]
            try:
                net(x)
            finally:
                for handle in handles:
                    handle.remove()
            for h, z in zip(heads, logits):  # class logits ~ N(0, 1) on the calibration batch
                h[-1].weight.div_(z.std())
                h[-1].bias.sub_(z.mean()).div_(z.std())
    return net.eval()


def images(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def model_state(model: nn.Module) -> list:
    return [
        (m.training, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
        for m in model.modules()
    ] + [(p.requires_grad, p.grad) for p in model.parameters()] + [
        (k, v.clone()) for k, v in model.state_dict().items()
    ]


def same_state(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x[1], y[1]) if isinstance(x[1], torch.Tensor) and x[0] == y[0] else x == y for x, y in zip(a, b)
    )


def finite_varied(maps) -> bool:
    maps = torch.as_tensor(maps)
    return bool(torch.isfinite(maps).all()) and bool((maps.flatten(1).std(dim=1) > 0).all())


@pytest.mark.parametrize("name,layer", [("yolov8n.yaml", "model.15"), ("yolo11n.yaml", "model.16")])
def test_eigencam_with_no_layer_on_a_model_from_yaml(name, layer):
    net = yolo(name).train()  # left in training mode: camlens must restore it
    head = net.model[-1]
    assert is_yolo_detector(net) and layer == f"model.{head.f[0]}"  # the P3 map the head reads
    choice = auto_target_layers(net)
    assert choice.names == [layer] and choice.family.startswith("Ultralytics YOLO")
    before = model_state(net)
    cam = EigenCAM(net)
    assert cam.target_layer_names == [layer]
    assert isinstance(cam.engine.output_adapter, YOLOOutputAdapter) and cam.engine.output_adapter.num_classes == 3
    maps = cam(images())
    assert maps.shape == (2, 64, 64) and finite_varied(maps)
    assert same_state(model_state(net), before)


def test_the_default_layer_reaches_every_scale():
    net = yolo("yolov8n.yaml", calibrate=True)
    raw = dict(output_adapter=lambda out: out[0])  # (N, 4 + nc, anchors): score any anchor directly
    # anchors 0..63 are predicted at P3 (8x8 at 64 px), 64..79 at P4 (4x4), 80..83 at P5 (2x2)
    for anchor in (10, 70, 82):
        e = GradCAM(net, **raw).explain(images(1), [lambda o, a=anchor: o[4:, a].sum()])
        assert e.layer_maps[0].abs().sum() > 0 and finite_varied(e.cam)
    # the P5 map alone (model[-2]) never sees a box found at P3: its gradient is zero
    with pytest.warns(Warning, match="exactly zero|does not depend"):
        GradCAM(net, [net.model[-2]], **raw).explain(images(1), [lambda o: o[4:, 10].sum()])


def test_gradcam_box_score_target_from_the_models_own_detections():
    net = yolo("yolov8n.yaml", calibrate=True)
    x = images()
    adapter = YOLOOutputAdapter.for_model(net)
    with torch.no_grad():
        dets = adapter(net(x))
    assert all(len(d["scores"]) > 0 for d in dets)
    before = model_state(net)
    cam = GradCAM(net)
    targets = [DetectionTarget.per_detection(d, 0.0)[0] for d in dets]  # each image's best box
    e = cam.explain(x, targets)
    # the reference box is the detection itself: IoU 1 + its score
    assert torch.allclose(e.scores, 1 + torch.stack([d["scores"][0] for d in dets]), atol=1e-5)
    assert finite_varied(e.cam)
    # targets=None: the detections scoring >= 0.5, each matching itself
    e = cam.explain(x)
    want = [float((1 + d["scores"][d["scores"] >= 0.5]).sum()) for d in dets]
    assert all(len(t.labels) > 1 for t in e.targets)
    assert all(math.isclose(float(s), w, rel_tol=1e-5) for s, w in zip(e.scores, want))
    assert finite_varied(e.cam)
    assert same_state(model_state(net), before)


@pytest.mark.parametrize("name", ["yolov8n.yaml", "yolo11n.yaml"])
def test_gradient_free_methods(name):
    net = yolo(name, calibrate=True)
    x = images()
    with torch.no_grad():
        dets = YOLOOutputAdapter.for_model(net)(net(x))
    targets = [DetectionTarget.per_detection(d, 0.0)[0] for d in dets]
    before = model_state(net)
    with pytest.warns(Warning, match="running the full model"):  # torch.fx cannot trace Ultralytics' loop
        ablation = AblationCAM(net, batch_size=64, progress=False)(x, targets=targets)
    score = ScoreCAM(net, batch_size=64, progress=False)(x, targets=targets)
    eigen = EigenCAM(net)(x, targets=targets)
    for maps in (ablation, score, eigen):
        assert maps.shape == (2, 64, 64) and finite_varied(maps)
    assert same_state(model_state(net), before)


def test_nothing_left_behind_after_a_raising_target():
    net = yolo("yolov8n.yaml")
    before = model_state(net)

    def broken(output):
        raise RuntimeError("target failed")

    for method in (GradCAM, EigenCAM):
        with pytest.raises(RuntimeError, match="target failed"):
            method(net)(images(1), targets=[broken])
        assert same_state(model_state(net), before)


def test_the_ultralytics_yolo_object_is_explained_through_its_model():
    _tasks()
    from ultralytics import YOLO

    torch.manual_seed(0)
    wrapper = YOLO("yolo11n.yaml")
    cam = EigenCAM(wrapper)
    assert cam.model is wrapper.model and cam.target_layer_names == ["model.16"]
    direct = EigenCAM(wrapper.model)(images())
    assert torch.equal(torch.as_tensor(cam(images())), torch.as_tensor(direct))
    # explicit layers of the wrapped model are named inside yolo.model
    assert GradCAM(wrapper, [wrapper.model.model[-2]]).target_layer_names == ["model.22"]


def test_end_to_end_head():
    net = yolo("yolo26n.yaml", calibrate=True)
    net.model[-1].end2end = True  # YOLO26's NMS-free head: (N, 300 or fewer, 6) rows
    x = images()
    with torch.no_grad():
        raw = net(x)[0]
    assert raw.shape[-1] == 6
    engine = Engine(net, [("model.16", net.model[16])])
    cap = engine.run(x, need_gradients=False)
    assert all(len(o["scores"]) > 0 and bool((o["scores"][:-1] >= o["scores"][1:]).all()) for o in cap.outputs)
    # a detection whose score is not saturated (random weights give some scores of 1.0, no gradient)
    middle = [DetectionTarget.per_detection(o, 0.0)[int((o["scores"] - 0.5).abs().argmin())] for o in cap.outputs]
    e = GradCAM(net).explain(x, middle)
    assert finite_varied(e.cam)
    assert EigenCAM(net).explain(x).layer_names == ["model.16"]


def test_cli_explains_a_yolo_model_file_with_boxes(tmp_path):
    """``camlens explain --task detection --model-file yolo.py``: a 70x90 image is padded to a
    multiple of the stride for the model, and the map comes back at 70x90 with the boxes drawn."""
    _tasks()
    from PIL import Image

    from camlens.app.cli import main

    (tmp_path / "yolo.py").write_text(
        "import torch\nfrom ultralytics.nn.tasks import DetectionModel\n\n"
        "def load():\n    torch.manual_seed(0)\n    return DetectionModel('yolov8n.yaml', nc=3, verbose=False)\n"
    )
    rng = torch.Generator().manual_seed(0)
    image = (torch.rand(70, 90, 3, generator=rng) * 255).to(torch.uint8).numpy()
    Image.fromarray(image).save(tmp_path / "img.png")
    out = tmp_path / "out"
    argv = ["explain", str(tmp_path / "img.png"), "--task", "detection", "--model-file", str(tmp_path / "yolo.py"),
            "-m", "eigencam", "--score-threshold", "0.0001", "-o", str(out), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    cam = np.load(out / "img_eigencam_cam.npy")
    assert cam.shape == (70, 90) and np.isfinite(cam).all() and cam.std() > 0
    overlay = np.asarray(Image.open(out / "img_eigencam_cam.png"))
    assert overlay.shape == (70, 90, 3)


def test_adapter_ignores_mask_coefficients_and_keypoints_after_the_classes():
    """A segmentation / pose head's rows are boxes, class scores, then extra channels: the same
    detections as without them, from Segment's nested ``((preds, proto), raw)`` output too."""
    preds = hand_preds()
    extra = torch.rand(1, 5, preds.shape[-1], generator=torch.Generator().manual_seed(0)) * 50  # larger than scores
    adapter = YOLOOutputAdapter(score_threshold=0.5, iou_threshold=0.5, num_classes=2, extra_channels=5)
    plain = YOLOOutputAdapter(score_threshold=0.5, iou_threshold=0.5, num_classes=2)(preds)[0]
    for output in (torch.cat([preds, extra], dim=1), ((torch.cat([preds, extra], dim=1), torch.rand(1, 5, 4, 4)), {})):
        [det] = adapter(output)
        for key in ("boxes", "labels", "scores"):
            assert torch.equal(det[key], plain[key]), key
    rows = torch.tensor([[[1.0, 2, 3, 4, 0.9, 1, 7, 7]]])  # end-to-end rows with 2 extra values
    [det] = YOLOOutputAdapter(num_classes=2, extra_channels=2)(rows)
    assert det["boxes"].tolist() == [[1.0, 2, 3, 4]] and det["labels"].tolist() == [1]


@pytest.mark.parametrize(("builder", "name", "extra"), [("SegmentationModel", "yolov8n-seg.yaml", 32),
                                                        ("PoseModel", "yolov8n-pose.yaml", 51)])  # fmt: skip
def test_segmentation_and_pose_models_are_explained_through_their_detections(builder, name, extra):
    tasks = _tasks()
    torch.manual_seed(0)
    model = getattr(tasks, builder)(name, nc=3 if "seg" in name else 1, verbose=False).eval()
    adapter = YOLOOutputAdapter.for_model(model, score_threshold=0.0, max_detections=3)
    assert adapter.extra_channels == extra and auto_target_layers(model).names == ["model.15"]
    x = images(2)
    maps = EigenCAM(model)(x)
    assert finite_varied(maps)
    with torch.no_grad():
        detections = adapter(model(x))
    assert [len(d["scores"]) for d in detections] == [3, 3]
    explanation = GradCAM(model, output_adapter=adapter).explain(x, targets=DetectionTarget.from_outputs(detections, 0.0))
    assert finite_varied(explanation.numpy())
    expected = torch.stack([(1 + d["scores"]).sum() for d in detections])  # IoU 1 + score, for each of three
    torch.testing.assert_close(explanation.scores, expected, rtol=1e-4, atol=1e-6)
