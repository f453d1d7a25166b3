"""Shared fixtures: tiny fixed-weight models whose CAMs can be computed by hand (see testnets.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from testnets import SmallCNN, TinyNet  # noqa: E402

# Ultralytics (tests/test_tasks_yolo.py, docs/tasks.md) must never pip-install or go online in tests.
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_OFFLINE", "true")

try:
    from PIL import Image as _PILImage

    _PIL_OPEN = _PILImage.open
except ImportError:  # Pillow is in the test extra; without it the image tests skip
    _PILImage = None


@pytest.fixture(autouse=True)
def _no_global_patches_leak():
    """Importing ultralytics replaces ``PIL.Image.open`` for the whole process (a HEIF fallback that
    turns an unreadable file into an ImportError); undo it after each test so that the tests that
    read images see Pillow as a process without ultralytics does."""
    yield
    if _PILImage is not None and _PILImage.open is not _PIL_OPEN:
        _PILImage.open = _PIL_OPEN



@pytest.fixture
def tiny() -> TinyNet:
    return TinyNet().eval()


@pytest.fixture
def small_cnn() -> SmallCNN:
    return SmallCNN().eval()


@pytest.fixture
def tiny_input() -> torch.Tensor:
    return torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def image_batch() -> torch.Tensor:
    return torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
