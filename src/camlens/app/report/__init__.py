"""``camlens report``: a static, self-contained page over the results of ``camlens run``.

Application layer (the library core never imports it). Parts, one idea each:

* :mod:`.build` -- read a run folder, write the images, the data files and the static assets;
* :mod:`.cli` -- the command;
* ``static/`` -- the hand-written page (``index.html``, ``app.js``, ``style.css``), copied as is.

The page opens from the file system (``file://``) or any static host: no server, no network, no
framework. Data travels as JavaScript files that assign a global (``fetch()`` of local files is
blocked on ``file://``); the per-image maps are split into shards loaded when a page needs them.

Example::

    # docs: skip needs a finished `camlens run` folder (tests/test_report.py builds one)
    from camlens.app.report import build_report
    build_report("runs/val", "report/")
"""

from .build import ReportResult, build_report

__all__ = ["ReportResult", "build_report", "register_cli"]


def register_cli(subparsers: object) -> None:
    """Add ``camlens report`` to the ``camlens`` command's subparsers."""
    from .cli import register_cli as _register

    _register(subparsers)
