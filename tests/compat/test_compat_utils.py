"""camlens.compat.grad_cam's utilities: pytorch-grad-cam's signatures and numbers without OpenCV,
scikit-learn or ttach (peer comparisons skip when the peer or OpenCV is absent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camlens.compat.grad_cam.utils import find_layers, image, model_targets, reshape_transforms, svd_on_activations
from camlens.errors import InputShapeError, InputTypeError, TargetError
from camlens.image import opencv_jet


def rng_image(h=20, w=24, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def test_opencv_jet_knots():
    lut = opencv_jet().astype(int)
    assert lut.shape == (256, 3) and opencv_jet().dtype == np.uint8
    assert lut[0].tolist() == [0, 0, 128] and lut[255].tolist() == [128, 0, 0]
    assert lut[32].tolist() == [0, 0, 255] and lut[96][1] == 255  # blue saturates at 1/8, green at 3/8


def test_opencv_jet_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    ref = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1].astype(int)
    assert np.abs(opencv_jet().astype(int) - ref).max() <= 1


def test_preprocess_image_scales_uint8_and_uses_half_mean_std():
    img = (rng_image() * 255).astype(np.uint8)
    t = image.preprocess_image(img)
    assert t.shape == (1, 3, 20, 24) and t.dtype == torch.float32
    expected = (img.astype(np.float32) / 255 - 0.5) / 0.5
    np.testing.assert_allclose(t[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(image.preprocess_image(img.astype(np.float32) / 255).numpy(), t.numpy(), atol=1e-6)


def test_camlens_preprocess_image_scales_uint8_and_refuses_other_ints():
    from camlens.image import preprocess_image

    img = (rng_image() * 255).astype(np.uint8)
    np.testing.assert_allclose(preprocess_image(img).numpy(), preprocess_image(img / 255.0).numpy(), atol=1e-6)
    with pytest.raises(InputTypeError, match="uint16"):
        preprocess_image(img.astype(np.uint16))


def test_show_cam_on_image_blend_by_hand():
    img = rng_image(4, 5)
    mask = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    out = image.show_cam_on_image(img, mask, use_rgb=True, image_weight=0.3)
    heat = opencv_jet()[np.uint8(255 * mask)].astype(np.float32) / 255
    cam = 0.7 * heat + 0.3 * img
    np.testing.assert_array_equal(out, np.uint8(255 * (cam / cam.max())))
    bgr = image.show_cam_on_image(img[..., ::-1].copy(), mask, use_rgb=False, image_weight=0.3)
    assert bgr.shape == (4, 5, 3) and bgr.dtype == np.uint8
    np.testing.assert_array_equal(bgr[..., ::-1], out)
    with pytest.raises(InputTypeError, match=r"range \[0, 1\]"):
        image.show_cam_on_image(img * 255, mask)
    with pytest.raises(InputShapeError):
        image.show_cam_on_image(img, mask[:3])


def test_show_cam_on_image_matches_peer():
    peer = pytest.importorskip("pytorch_grad_cam.utils.image")
    img = rng_image(32, 40, seed=3)
    mask = np.random.default_rng(4).random((32, 40)).astype(np.float32)
    for rgb in (True, False):
        ours = image.show_cam_on_image(img, mask, use_rgb=rgb).astype(int)
        theirs = peer.show_cam_on_image(img, mask, use_rgb=rgb).astype(int)
        assert np.abs(ours - theirs).max() <= 2  # OpenCV's table is matched within one level


def test_scale_cam_image_and_across_batch_match_peer_or_hand():
    cams = np.random.default_rng(5).random((3, 7, 7)).astype(np.float32)
    out = image.scale_cam_image(cams, (28, 14))  # (W, H) like cv2.resize
    assert out.shape == (3, 14, 28) and out.dtype == np.float32
    small = image.scale_cam_image(cams)
    lo = cams.reshape(3, -1).min(1)[:, None, None]
    np.testing.assert_allclose(small, (cams - lo) / (1e-7 + (cams - lo).reshape(3, -1).max(1)[:, None, None]), atol=1e-6)
    batch = image.scale_accross_batch_and_channels(np.random.default_rng(6).random((2, 4, 7, 7)), (14, 14))
    assert batch.shape == (2, 4, 14, 14)
    peer = pytest.importorskip("pytorch_grad_cam.utils.image")
    np.testing.assert_allclose(out, peer.scale_cam_image(cams, (28, 14)), atol=1e-5)


def test_create_labels_legend():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]])
    labels = {0: "cat, tabby, puss, extra", 1: "dog", 2: "car"}
    assert image.create_labels_legend(scores, labels, top_k=2) == ["dog:0.70\ncar:0.20", "cat, tabby, puss:0.50\ncar:0.40"]


def test_reshape_transforms():
    tokens = torch.arange(2 * 17 * 3, dtype=torch.float32).reshape(2, 17, 3)
    out = reshape_transforms.vit_reshape_transform(tokens, height=4, width=4)
    expected = tokens[:, 1:].reshape(2, 4, 4, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(reshape_transforms.vit_reshape_transform(tokens), expected)  # grid inferred
    swin = torch.randn(2, 3, 5, 6)
    torch.testing.assert_close(reshape_transforms.swinT_reshape_transform(swin), swin.permute(0, 3, 1, 2))
    fpn = {"0": torch.randn(1, 2, 8, 8), "pool": -torch.ones(1, 2, 2, 2)}
    cat = reshape_transforms.fasterrcnn_reshape_transform(fpn)
    assert cat.shape == (1, 4, 2, 2) and bool((cat[:, 2:] == 1).all())
    with pytest.raises(Exception, match="'pool'"):
        reshape_transforms.fasterrcnn_reshape_transform(torch.zeros(1))


def test_get_2d_projection_matches_peer_up_to_sign():
    acts = np.random.default_rng(7).random((2, 6, 5, 5)).astype(np.float32)
    ours = svd_on_activations.get_2d_projection(acts)
    assert ours.shape == (2, 5, 5) and ours.dtype == np.float32
    for a, o in zip(acts, ours):  # sign fixed: correlates positively with the channel sum
        s = a.sum(0).ravel()
        assert np.corrcoef(o.ravel(), s - s.mean())[0, 1] >= 0
    peer = pytest.importorskip("pytorch_grad_cam.utils.svd_on_activations")
    theirs = peer.get_2d_projection(acts)
    for o, t in zip(ours, theirs):
        assert abs(np.corrcoef(o.ravel(), t.ravel())[0, 1]) > 0.9999


def test_find_layers():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU()))
    assert find_layers.find_layer_types_recursive(model, [nn.Conv2d]) == [model[0], model[2][0]]
    relu = nn.Identity()
    find_layers.replace_all_layer_type_recursive(model, nn.ReLU, relu)
    assert model[1] is relu and model[2][1] is relu
    new = nn.Conv2d(2, 2, 1)
    assert find_layers.replace_layer_recursive(model, model[2][0], new) and model[2][0] is new
    assert not find_layers.replace_layer_recursive(model, nn.Linear(1, 1), new)


def test_box_score_target_by_hand():
    t = model_targets.FasterRCNNBoxScoreTarget(labels=[1, 2], bounding_boxes=[[0, 0, 10, 10], [20, 20, 30, 30]])
    out = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 8.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]], requires_grad=True),
        "labels": torch.tensor([1, 3, 5]),
        "scores": torch.tensor([0.9, 0.8, 0.7], requires_grad=True),
    }
    # ref 0: best IoU is detection 2 (IoU 1) but label 5 != 1 -> 0; ref 1: detection 1, label 3 != 2 -> 0
    assert float(t(out)) == 0.0
    out["labels"] = torch.tensor([1, 2, 1])
    score = t(out)
    assert float(score.detach()) == pytest.approx((1 + 0.7) + (1 + 0.8))
    score.backward()
    assert out["scores"].grad.tolist() == [0.0, 1.0, 1.0]
    assert float(t({"boxes": torch.zeros(0, 4), "labels": torch.zeros(0), "scores": torch.zeros(0)})) == 0.0
    with pytest.raises(TargetError, match="one label per"):
        model_targets.FasterRCNNBoxScoreTarget([1], [[0, 0, 1, 1], [1, 1, 2, 2]])
    peer = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    theirs = peer.FasterRCNNBoxScoreTarget([1, 2], np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float32))
    out = {k: v.detach() for k, v in out.items()}
    assert float(theirs(out)) == pytest.approx(float(t(out)))


def test_softmax_output_target():
    out = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(model_targets.SoftmaxOutputTarget()(out), torch.softmax(out, -1))
