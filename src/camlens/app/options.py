"""argparse argument types shared by the ``camlens`` subcommands."""

from __future__ import annotations

import argparse

from ..devices import parse_device

__all__ = ["device_arg", "floats3", "positive_int"]


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


def floats3(text: str) -> tuple[float, ...]:
    """argparse type for ``--mean``/``--std``: one number (used for all channels) or three, comma-separated."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected one number or three comma-separated numbers; got {text!r}") from None
    if len(parts) not in (1, 3):
        raise argparse.ArgumentTypeError(f"expected one number or three comma-separated numbers; got {text!r}")
    return tuple(parts * 3) if len(parts) == 1 else tuple(parts)
