"""CAM methods, one module each. Importing this package imports every module in it, and each
module registers its method(s) in :mod:`camlens.registry` with ``@register(...)``: adding a file
is all it takes for the public API, the CLI's ``--method`` and the contract tests to see a method.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..registry import registered_classes
from .base import ActivationCAM, BaseCAM, Explanation, GradientCAM, LayerContext, PerturbationCAM

_INFRASTRUCTURE = {"base"}


def _import_all() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in _INFRASTRUCTURE:
            continue
        importlib.import_module(f"{__name__}.{info.name}")


_import_all()

globals().update({cls.__name__: cls for cls in registered_classes()})

__all__ = [
    "ActivationCAM",
    "BaseCAM",
    "Explanation",
    "GradientCAM",
    "LayerContext",
    "PerturbationCAM",
    *(cls.__name__ for cls in registered_classes()),
]
