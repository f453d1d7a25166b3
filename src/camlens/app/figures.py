"""Comparison figures: one row per image or class, the image then one CAM overlay per method.

matplotlib and Pillow are imported lazily (``pip install 'camlens[image]'``); figures are drawn
on an off-screen canvas, so no display and no pyplot state are involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputShapeError
from ..image import save_image, show_cam_on_image

__all__ = ["FigureRow", "cam_grid"]


@dataclass
class FigureRow:
    """One row of a :func:`cam_grid`: an image, its title, and one map (plus a note) per column."""

    image: np.ndarray
    """Float RGB ``(H, W, 3)`` in ``[0, 1]``."""
    title: str
    maps: Sequence[np.ndarray]
    """``(H, W)`` maps in ``[0, 1]``, one per method column."""
    notes: Sequence[str] = field(default_factory=list)
    """Optional second title line under each method name (same length as ``maps``)."""


def cam_grid(
    rows: Sequence[FigureRow],
    columns: Sequence[str],
    path: str | Path | None = None,
    *,
    suptitle: str | None = None,
    cell_inches: float = 2.4,
    dpi: int = 100,
    palette: bool = False,
) -> np.ndarray:
    """Draw ``image | method 1 | method 2 ...`` rows; return the figure as uint8 RGB, and write it to ``path``
    (atomically, with :func:`camlens.image.save_image`).

    Every row must have one map per entry of ``columns``; maps are overlaid with the jet colour map.
    """
    if not rows:
        raise InputShapeError("cam_grid needs at least one row")
    for r in rows:
        if len(r.maps) != len(columns):
            raise InputShapeError(f"row {r.title!r} has {len(r.maps)} maps for {len(columns)} columns")
        if r.notes and len(r.notes) != len(columns):
            raise InputShapeError(f"row {r.title!r} has {len(r.notes)} notes for {len(columns)} columns")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = rows[0].image.shape[:2]
    aspect = h / w
    ncols = 1 + len(columns)
    title_lines = 2
    fig = Figure(
        figsize=(ncols * cell_inches, len(rows) * (cell_inches * aspect + 0.18 * title_lines) + (0.35 if suptitle else 0.0)),
        dpi=dpi,
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for i, row in enumerate(rows):
        axes[i][0].imshow(np.clip(row.image, 0, 1))
        axes[i][0].set_title(row.title, fontsize=8)
        for j, (name, cam) in enumerate(zip(columns, row.maps)):
            overlay = show_cam_on_image(np.clip(row.image, 0, 1).astype(np.float32), np.asarray(cam), use_rgb=True)
            axes[i][j + 1].imshow(overlay)
            note = row.notes[j] if row.notes else ""
            axes[i][j + 1].set_title(f"{name}\n{note}" if note else name, fontsize=8)
        for ax in axes[i]:
            ax.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout(pad=0.3)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    if path is not None:
        save_image(path, rgb, palette=palette)
    return rgb
