"""Image utilities: overlays, colour maps, pre/de-processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camlens.errors import InputShapeError, InputTypeError
from camlens.image import (
    apply_colormap,
    deprocess_image,
    load_image,
    preprocess_image,
    save_image,
    scale_cam_image,
    show_cam_on_image,
)


def test_show_cam_on_image_blend_by_hand():
    img = np.full((2, 3, 3), 0.5, dtype=np.float32)
    mask = np.zeros((2, 3), dtype=np.float32)
    mask[0, 0] = 1.0
    out = show_cam_on_image(img, mask, use_rgb=True)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    heat = apply_colormap(mask, "jet")
    blend = 0.5 * heat + 0.5 * img
    np.testing.assert_array_equal(out, np.uint8(np.rint(255 * blend / blend.max())))
    assert out[0, 0, 0] > out[0, 0, 2]  # jet at 1.0 is red
    assert out[1, 1, 2] > out[1, 1, 0]  # jet at 0.0 is blue


def test_bgr_is_the_reverse_of_rgb():
    img = np.random.default_rng(0).random((4, 4, 3)).astype(np.float32)
    mask = np.random.default_rng(1).random((4, 4)).astype(np.float32)
    rgb = show_cam_on_image(img, mask, use_rgb=True)
    bgr = show_cam_on_image(img[..., ::-1], mask, use_rgb=False)
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])


def test_colormap_by_name_object_and_opencv_int():
    import matplotlib

    mask = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(apply_colormap(mask, "viridis"), apply_colormap(mask, matplotlib.colormaps["viridis"]))
    np.testing.assert_array_equal(apply_colormap(mask, 2), apply_colormap(mask, "jet"))  # cv2.COLORMAP_JET
    img = np.zeros((3, 4, 3), dtype=np.float32)
    assert show_cam_on_image(img, mask, colormap="magma", image_weight=0.0).shape == (3, 4, 3)


def test_show_cam_on_image_errors():
    img = np.zeros((4, 4, 3), dtype=np.float32)
    with pytest.raises(InputTypeError, match=r"\[0, 1\]"):
        show_cam_on_image(img + 2, np.zeros((4, 4)))
    with pytest.raises(InputShapeError, match="does not match"):
        show_cam_on_image(img, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="image_weight"):
        show_cam_on_image(img, np.zeros((4, 4)), image_weight=2.0)


def test_preprocess_image_by_hand():
    img = np.zeros((2, 2, 3), dtype=np.float32)
    img[..., 0] = 1.0
    t = preprocess_image(img, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    assert t.shape == (1, 3, 2, 2)
    assert torch.equal(t[0, 0], torch.ones(2, 2)) and torch.equal(t[0, 1], -torch.ones(2, 2))
    batch = np.stack([img, 1 - img])
    expected = torch.cat([preprocess_image(img), preprocess_image(1 - img)])
    assert torch.equal(preprocess_image(batch), expected)
    with pytest.raises(InputShapeError, match=r"\(H, W, 3\) or \(N, H, W, 3\)"):
        preprocess_image(np.zeros((2, 2)))


def test_deprocess_image_tensor_and_array():
    g = torch.randn(1, 3, 5, 6)
    out = deprocess_image(g)
    assert out.shape == (5, 6, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, deprocess_image(g[0].permute(1, 2, 0).numpy()))
    assert abs(float(out.mean()) - 127.5) < 3  # centred on 0.5


def test_scale_cam_image():
    cam = np.array([[[0.0, 2.0], [4.0, 8.0]]], dtype=np.float32)
    out = scale_cam_image(cam)
    np.testing.assert_allclose(out[0], [[0, 0.25], [0.5, 1]])
    assert scale_cam_image(cam[0], target_size=(6, 3)).shape == (3, 6)  # (width, height) like cv2


def test_load_and_save_roundtrip(tmp_path):
    img = (np.random.default_rng(0).random((5, 7, 3)) * 255).astype(np.uint8)
    save_image(tmp_path / "a.png", img)
    back = load_image(tmp_path / "a.png")
    assert back.shape == (5, 7, 3) and back.dtype == np.float32
    np.testing.assert_allclose(back, img / 255.0, atol=1e-6)
    assert load_image(tmp_path / "a.png", size=(14, 10)).shape == (10, 14, 3)
