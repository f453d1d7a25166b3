"""One exception family for camlens.

Every error raised for bad user input is a :class:`CamLensError` *and* the matching built-in
(``ValueError``, ``TypeError``, ``IndexError``, ``RuntimeError``), so existing ``except``
clauses keep working. Messages say what was wrong, what was expected, what was received and how
to fix it.
"""

from __future__ import annotations

__all__ = [
    "CamLensError",
    "InputShapeError",
    "InputTypeError",
    "LayerNotFoundError",
    "LayerNotRunError",
    "LayerOutputError",
    "TargetError",
    "TargetIndexError",
    "ReshapeError",
    "ModelOutputError",
    "MethodNotFoundError",
]


class CamLensError(Exception):
    """Base class of every error camlens raises on purpose."""


class InputShapeError(CamLensError, ValueError):
    """The input tensor has the wrong number of dimensions or an empty axis."""


class InputTypeError(CamLensError, TypeError):
    """An argument has the wrong type (e.g. an integer image tensor, a non-callable target)."""


class LayerNotFoundError(CamLensError, ValueError):
    """A target layer (given by name or module) is not part of the model."""


class LayerNotRunError(CamLensError, RuntimeError):
    """A target layer exists but was never called during the forward pass."""


class LayerOutputError(CamLensError, ValueError):
    """A target layer's output cannot be turned into a ``(N, C, h, w)`` activation map."""


class TargetError(CamLensError, ValueError):
    """Targets do not match the batch (wrong count, wrong kind)."""


class TargetIndexError(CamLensError, IndexError):
    """A class index is outside the model's output range."""


class ReshapeError(CamLensError, ValueError):
    """A token sequence cannot be reshaped to the requested spatial grid."""


class ModelOutputError(CamLensError, TypeError):
    """The model's output could not be turned into a score tensor."""


class MethodNotFoundError(CamLensError, KeyError):
    """An unknown CAM method name was requested."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class ArgumentError(CamLensError, ValueError):
    """A constructor or function argument has a value camlens cannot use."""
