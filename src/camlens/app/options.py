"""argparse argument types shared by the ``camlens`` subcommands."""

from __future__ import annotations

import argparse

from ..devices import parse_device

__all__ = ["device_arg", "positive_int"]


def device_arg(text: str) -> str:
    """argparse type for ``--device``: the names :func:`camlens.devices.parse_device` accepts."""
    try:
        return parse_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {v}")
    return v
