"""The run summary: ``camlens evaluate``'s table (mean of every metric) per method and target.

Computed from the results table once every unit is finished, so it is the same whatever the number
of processes and restarts. Means leave out missing values (a localisation metric on an image
without boxes); a metric with no value at all is ``None``. The image-centre baseline
(``center-baseline``) is a row like the methods when metrics were asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..tables import format_table

__all__ = ["format_summary", "summarise"]


def summarise(table: Any, methods: Sequence[str], targets: Sequence[str], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (method, target) of a results ``pyarrow.Table``: ``images`` and each metric's mean."""
    import pyarrow.compute as pc

    rows = []
    present = set(zip(table.column("method").to_pylist(), table.column("target").to_pylist()))
    for method in methods:
        for target in targets:
            if (method, target) not in present:
                continue
            mask = pc.and_(pc.equal(table["method"], method), pc.equal(table["target"], target))
            sub = table.filter(mask)
            row: dict[str, Any] = {"method": method, "target": target, "images": sub.num_rows}
            for m in metrics:
                col = sub.column(m)
                mean = pc.mean(col).as_py() if col.null_count < len(col) else None
                row[m] = None if mean is None else float(mean)
            rows.append(row)
    return rows


def format_summary(rows: Sequence[dict[str, Any]]) -> str:
    """The summary as the plain-text table ``camlens evaluate`` prints."""
    return format_table(rows)
