"""Result tables of ``camlens evaluate``: printed as text, written as CSV or JSON (atomically).

Example::

    from camlens.app.tables import format_table

    text = format_table([{"method": "gradcam", "images": 3, "deletion_auc": 0.21}])
    assert "gradcam" in text and "deletion_auc" in text
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ArgumentError
from ..files import atomic_path
from .evaluate import METRICS

__all__ = ["TABLE_SUFFIXES", "check_table_path", "format_table", "write_table"]

TABLE_SUFFIXES = (".csv", ".json")


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text table; a header row marks each metric ``(+)`` higher is better or ``(-)`` lower."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    head = [f"{k} ({'+' if METRICS[k][0] else '-'})" if k in METRICS else k for k in keys]
    cells = [[_fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths)))
    lines.append("(+) higher is better, (-) lower is better")
    return "\n".join(lines)


def check_table_path(path: str | Path) -> Path:
    """The path of a table to write, checked before any work: a ``.csv`` or ``.json`` name."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ArgumentError(f"--output must end in .csv or .json; got {path.name!r}")
    return path


def write_table(rows: Sequence[dict[str, Any]], path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write rows as CSV (``.csv``) or JSON (``.json``: ``{"meta", "higher_is_better", "rows"}``).

    The file is written to a temporary name and renamed into place.
    """
    path = check_table_path(path)
    if path.suffix.lower() == ".json":
        higher = {k: METRICS[k][0] for k in rows[0] if k in METRICS} if rows else {}
        text = json.dumps({"meta": meta or {}, "higher_is_better": higher, "rows": list(rows)}, indent=2)
    else:
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
        text = buf.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return path
