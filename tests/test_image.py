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
    # cv2.COLORMAP_JET uses OpenCV's own table (matplotlib's "jet" has other knots); other ints map by name
    from camlens.image import opencv_jet

    levels = np.rint(mask * 255).astype(np.uint8)
    np.testing.assert_array_equal(apply_colormap(mask, 2), opencv_jet()[levels].astype(np.float32) / 255)
    np.testing.assert_array_equal(apply_colormap(mask, 20), apply_colormap(mask, "turbo"))  # cv2.COLORMAP_TURBO
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


# ------------------------------------------------------------------ every Pillow mode, scaled by its bit depth
def test_16_bit_png_is_scaled_by_65535(tmp_path):
    """A 16-bit greyscale PNG used to load as an all-white image (clipped to 8 bits)."""
    from PIL import Image

    arr = (np.arange(12 * 10).reshape(12, 10) * 500).astype(np.uint16)  # 0 .. 59500
    Image.fromarray(arr).save(tmp_path / "scan.png")
    with Image.open(tmp_path / "scan.png") as im:
        assert im.mode in ("I;16", "I")  # what Pillow makes of a 16-bit PNG
    img = load_image(tmp_path / "scan.png")
    assert img.shape == (12, 10, 3) and img.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(img[..., c], arr / 65535.0, atol=1e-6)
    assert 0.0 < img.mean() < 0.5  # not white


@pytest.mark.parametrize("mode", ["I", "F", "LA", "P", "CMYK", "1", "L", "RGBA"])
def test_every_pillow_mode_loads_in_unit_range(tmp_path, mode):
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = (rng.random((6, 5, 3)) * 255).astype(np.uint8)
    grey16 = (rng.random((6, 5)) * 65535).astype(np.uint16)
    if mode == "I":
        im, want = Image.fromarray(grey16.astype(np.int32)), np.repeat(grey16[..., None] / 65535.0, 3, axis=2)
    elif mode == "F":
        f = grey16.astype(np.float32) / 65535.0
        im, want = Image.fromarray(f), np.repeat(f[..., None], 3, axis=2)
    else:
        im = Image.fromarray(rgb).convert(mode)
        want = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    path = tmp_path / ("img.tiff" if mode in ("I", "F", "CMYK") else "img.png")
    im.save(path)
    img = load_image(path)
    assert img.shape == (6, 5, 3) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    np.testing.assert_allclose(img, want, atol=1e-6)


def test_out_of_range_wide_images_are_refused_clearly(tmp_path):
    from PIL import Image

    from camlens.errors import FileFormatError

    Image.fromarray(np.full((4, 4), 300.0, np.float32)).save(tmp_path / "f.tiff")
    with pytest.raises(FileFormatError, match=r"floating-point image \(Pillow mode F\) with values in \[300, 300\].*expected values in \[0, 1\]"):
        load_image(tmp_path / "f.tiff")
    Image.fromarray(np.full((4, 4), -5, np.int32)).save(tmp_path / "i.tiff")
    with pytest.raises(ValueError, match=r"32-bit integer image .* values in \[-5, -5\]; expected 0\.\.65535"):
        load_image(tmp_path / "i.tiff")


def test_missing_and_unreadable_files(tmp_path):
    from camlens.errors import FileFormatError, MissingFileError

    with pytest.raises(MissingFileError, match="image file .*nope.png' does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError, match="is a directory"):
        load_image(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(FileFormatError, match="cannot read image .*bad.png': not an image file Pillow can open"):
        load_image(tmp_path / "bad.png")


def test_a_patched_pillow_open_whose_plugin_is_missing(tmp_path, monkeypatch):
    """Ultralytics replaces PIL.Image.open with one that imports pi-heif for files Pillow cannot
    identify: a missing plugin is an unreadable file, not an ImportError out of load_image."""
    from PIL import Image

    from camlens.errors import FileFormatError

    def patched_open(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'pi_heif'")

    monkeypatch.setattr(Image, "open", patched_open)
    (tmp_path / "photo.heic").write_bytes(b"not an image")
    with pytest.raises(FileFormatError, match=r"photo.heic': not an image file Pillow can open \(ModuleNotFoundError"):
        load_image(tmp_path / "photo.heic")


# ------------------------------------------------------------------ the one geometry
def test_resize_and_crop_by_hand():
    from camlens.image import resize_and_crop

    img = np.zeros((20, 40, 3), np.float32)
    img[:, 20:] = 1.0  # right half white
    out, boxes = resize_and_crop(img, 10, 10, boxes=[[0, 0, 39, 19], [0, 0, 3, 3]])
    assert out.shape == (10, 10, 3)  # 10x20 after resize, centre-crop columns 5..14
    np.testing.assert_allclose(out[:, :4], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[:, 6:], 1.0, atol=1e-6)
    assert boxes.tolist() == [[0.0, 0.0, 9.0, 9.0]]  # the small box fell outside the crop and is dropped
    out, none = resize_and_crop(img, (8, 4))  # squash to exactly (h, w)
    assert out.shape == (8, 4, 3) and none is None
    out, _ = resize_and_crop(img[:6, :9], None, 12)  # smaller than the crop: scaled up, aspect kept
    assert out.shape == (12, 12, 3)
    with pytest.raises(InputShapeError, match=r"\(H, W, 3\)"):
        resize_and_crop(np.zeros((4, 4)), 2)


# ------------------------------------------------------------------ one PNG writer, atomic
def test_save_image_is_atomic(tmp_path, monkeypatch):
    from PIL import Image

    from camlens.errors import OutputError

    path = tmp_path / "a.png"
    save_image(path, np.zeros((4, 4, 3), np.uint8))
    before = path.read_bytes()

    def broken_save(self, fp, *a, **k):
        with open(fp, "wb") as fh:
            fh.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_image(path, np.ones((4, 4, 3), np.uint8))
    assert path.read_bytes() == before  # the old file is intact, no temporary left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    monkeypatch.undo()
    with pytest.raises(OutputError, match=r"cannot write .*a.png/b.png'.*choose a folder you can write to"):
        save_image(path / "b.png", np.zeros((4, 4, 3), np.uint8))
