"""Optional progress bars. ``tqdm`` is an extra (``camlens[progress]``): without it, no bar, no error."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["progress_bar"]

T = TypeVar("T")


def progress_bar(iterable: Iterable[T], *, total: int, enabled: bool, desc: str = "") -> Iterator[T] | Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar when ``enabled``, there is more than one step and tqdm is installed.

    The bar is written to stderr and removed when done (``leave=False``).
    """
    if not enabled or total <= 1:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
