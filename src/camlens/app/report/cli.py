"""``camlens report``: the command-line front of :func:`camlens.app.report.build_report`."""

from __future__ import annotations

import argparse
from typing import Any

from ..options import positive_int
from .build import build_report

__all__ = ["cmd_report", "register_cli"]

EPILOG = """\
examples:
  camlens run val/ --model resnet50 --method gradcam --method layercam --metrics pointing,deletion -o runs/val
  camlens report runs/val -o report/          # then open report/index.html in a browser

The folder is static and self-contained (no server, no network): attach it to a pull request or a
CI artifact, or serve it from any static host.
"""


def cmd_report(args: argparse.Namespace) -> int:
    """Entry point of ``camlens report``."""
    result = build_report(
        args.run, args.output, target=args.target, title=args.title, thumb_size=args.thumb_size, workers=args.workers
    )
    print(
        f"report of {result.images} images ({', '.join(result.methods)}; target {result.target}) in "
        f"{result.output}; open {result.output / 'index.html'} in a browser"
    )
    return 0


def register_cli(subparsers: Any) -> None:
    """Add the ``report`` sub-command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "report",
        help="a static page over a run's results: overview plots, a gallery, every method side by side",
        description="Write a static, self-contained site over the results of `camlens run`: the per-method "
        "metric table and plots, a gallery of every image (sort by a metric, confidence or disagreement between "
        "methods; filter by class, correct/wrong, metric range) and an image view with every method side by side.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN_DIR", help="output folder of `camlens run`")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="report folder (created; a previous report there is replaced)")
    p.add_argument("--target", default=None, choices=("label", "pred"), help="which explained class, when the run has both (default label)")
    p.add_argument("--title", default=None, help="page title (default: the run folder's name)")
    p.add_argument("--thumb-size", type=positive_int, default=128, help="longest side of gallery thumbnails in pixels (default 128)")
    p.add_argument("--workers", type=positive_int, default=None, help="threads writing images (default: cores, at most 4)")
    p.set_defaults(func=cmd_report)
