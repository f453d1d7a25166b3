"""Output files written whole or not at all: a temporary name next to the target, renamed into place.

An interrupted write (Ctrl-C, a full disk, an exception while encoding) leaves the previous file
(or none) and no temporary file, never a half-written one: ``os.replace`` is atomic on POSIX and
Windows when both names are in one folder. Errors of the file system become
:class:`~camlens.errors.OutputError` (an ``OSError``) naming the file and the reason.

Example::

    import tempfile
    from pathlib import Path
    from camlens.files import atomic_path

    target = Path(tempfile.mkdtemp()) / "map.npy"
    with atomic_path(target) as tmp:      # written to a temporary name, renamed on success
        np.save(tmp, np.zeros((7, 7)))
    assert target.exists()
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

__all__ = ["atomic_path", "make_output_folder"]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); rename it onto ``path`` on success.

    On any exception, ``KeyboardInterrupt`` included, the temporary file is removed and the
    exception propagates (an ``OSError`` as :class:`~camlens.errors.OutputError`).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            reason = exc.strerror or str(exc)
            raise OutputError(f"cannot write {str(path)!r}: {reason}; choose a folder you can write to") from exc
        raise


def make_output_folder(path: str | Path) -> Path:
    """Create the output folder (and its parents) and check it can be written.

    Raises :class:`~camlens.errors.OutputError` saying why in words (a file in the way,
    permission denied, ...) instead of a raw ``OSError``.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"output folder {str(path)!r} exists as a file; pass another folder") from None
    except NotADirectoryError:
        raise OutputError(f"cannot create output folder {str(path)!r}: a part of its path is a file, not a folder") from None
    except PermissionError:
        raise OutputError(f"cannot create output folder {str(path)!r}: permission denied; choose a folder you can write to") from None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise OutputError(
            f"cannot create output folder {str(path)!r} ({reason}); choose a folder you can write to"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {str(path)!r} is not writable; choose a folder you can write to")
    return path
