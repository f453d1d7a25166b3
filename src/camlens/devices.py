"""Device names -> ``torch.device``: one rule for the library, the command line and dataset runs."""

from __future__ import annotations

import torch

from .errors import ArgumentError, DeviceError

__all__ = ["DEVICE_CHOICES", "parse_device", "resolve_device"]

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def parse_device(text: str) -> str:
    """Normalise a device name; raises :class:`~camlens.errors.ArgumentError` (a ``ValueError``) naming the accepted forms."""
    t = str(text).strip().lower()
    if t in ("auto", "cpu", "cuda", "mps") or (t.startswith("cuda:") and t[5:].isdigit()):
        return t
    raise ArgumentError(f"invalid device {text!r}: use {DEVICE_CHOICES}")


def resolve_device(device: str, use_cuda: bool = False) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an explicit CUDA or MPS device must exist."""
    device = parse_device(device)
    if use_cuda:
        if device not in ("auto", "cuda") and not device.startswith("cuda"):
            raise ArgumentError(f"--use-cuda conflicts with --device {device}; pass only one of them")
        device = "cuda" if device == "auto" else device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} requested but CUDA is not available on this machine; use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("device 'mps' requested but MPS is not available on this machine; use --device cpu")
    return torch.device(device)
