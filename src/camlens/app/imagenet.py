"""The 1000 ImageNet-1k class names, in the standard index order (torchvision's, also TF/Keras's).

The names are the short English labels torchvision ships in its weights metadata
(``ResNet50_Weights.IMAGENET1K_V2.meta["categories"]``), stored in ``camlens/app/data`` so that no
model zoo is needed to read them.

>>> from camlens.app.imagenet import imagenet_classes
>>> imagenet_classes()[281]
'tabby'
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from ..errors import FileFormatError

__all__ = ["imagenet_classes"]


@lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    text = resources.files("camlens.app").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line for line in text.splitlines() if line)
    if len(names) != 1000:  # pragma: no cover - a broken installation
        raise FileFormatError(f"camlens/app/data/imagenet_classes.txt holds {len(names)} names, expected 1000; reinstall camlens")
    return names


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names; index ``i`` is the name of output ``i``."""
    return list(_names())

