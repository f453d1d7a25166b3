"""Progress bars that suit where they are shown. ``tqdm`` is an extra (``camlens[progress]``).

* in a Jupyter notebook: tqdm's notebook widget (``tqdm.auto``, when ipywidgets is installed);
* on a terminal: a tqdm bar on stderr, removed when done;
* anywhere else (stderr redirected to a log file, CI): no bar and no carriage returns; each
  finished loop is logged as one INFO line on the ``camlens`` logger (shown only where logging
  is configured);
* ``enabled=False`` (``progress=False`` on a CAM) or inside :func:`silenced` (the CLI's
  ``--quiet``): nothing at all. Without tqdm: no bar, no error.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["progress_bar", "silenced", "is_silenced"]

T = TypeVar("T")
logger = logging.getLogger("camlens")
_SILENCED = 0  # depth of nested silenced() blocks


@contextlib.contextmanager
def silenced(active: bool = True) -> Iterator[None]:
    """Inside this block no progress is shown or logged anywhere (``active=False``: no effect).

    Example::

        with camlens.progress.silenced():
            ScoreCAM(model, "layer4")(x)     # no bar, whatever its ``progress`` flag says
    """
    global _SILENCED
    _SILENCED += int(bool(active))
    try:
        yield
    finally:
        _SILENCED -= int(bool(active))


def is_silenced() -> bool:
    """``True`` inside :func:`silenced`."""
    return _SILENCED > 0


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _logged(iterable: Iterable[T], total: int, desc: str) -> Iterator[T]:
    """Yield from ``iterable``; when it is exhausted, log one line with the count and the time."""
    start = time.perf_counter()
    done = 0
    for item in iterable:
        yield item
        done += 1
    logger.info("%s: %d/%d steps in %.1f s", desc or "progress", done, total, time.perf_counter() - start)


def progress_bar(iterable: Iterable[T], *, total: int, enabled: bool, desc: str = "") -> Iterator[T] | Iterable[T]:
    """Wrap ``iterable`` for progress display when ``enabled`` and there is more than one step.

    See the module docstring for what is shown where.
    """
    if not enabled or total <= 1 or is_silenced():
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return _logged(iterable, total, desc)
    in_notebook = any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__)
    if in_notebook:
        return tqdm(iterable, total=total, desc=desc, leave=False)
    if not _is_terminal(sys.stderr):
        return _logged(iterable, total, desc)
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)
