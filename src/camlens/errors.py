"""One exception family (and one warning) for camlens.

Every error raised for bad user input is a :class:`CamLensError` *and* the matching built-in
(``ValueError``, ``TypeError``, ``IndexError``, ``KeyError``, ``RuntimeError``, ``ImportError``,
``OSError``), so existing ``except`` clauses keep working. Messages say what was wrong, what was
expected, what was received and how to fix it.

=========================  ======================  ==============================================
class                      also a                  raised when
=========================  ======================  ==============================================
``ArgumentError``          ``ValueError``          an argument has a value outside what is accepted
``InputShapeError``        ``ValueError``          a tensor/array has the wrong shape
``InputTypeError``         ``TypeError``           an argument has the wrong type
``LayerNotFoundError``     ``ValueError``          a target layer is not part of the model
``LayerNotRunError``       ``RuntimeError``        a target layer was never called
``LayerOutputError``       ``ValueError``          a layer output is not a ``(N, C, h, w)`` map
``TargetError``            ``ValueError``          targets do not match the batch
``TargetIndexError``       ``IndexError``          a class index is outside the model's outputs
``ReshapeError``           ``ValueError``          tokens do not fit the requested grid
``ModelOutputError``       ``TypeError``           the model's output is not a score tensor
``MethodNotFoundError``    ``KeyError``            an unknown CAM method name
``DeviceError``            ``RuntimeError``        the requested device is not available
``DependencyError``        ``ImportError``         an optional package is not installed
``MissingFileError``       ``FileNotFoundError``   an input file or folder does not exist
``FileFormatError``        ``ValueError``          a file exists but its content is not usable
``OutputError``            ``OSError``             an output file or folder cannot be written
``MetricStateError``       ``RuntimeError``        a metric is read before any batch was seen
``NonFiniteInputError``    ``ValueError``          the input holds NaN or inf (``allow_nonfinite``)
``TargetTypeError``        ``TypeError``           a target callable returned no single score
=========================  ======================  ==============================================

>>> from camlens.errors import ArgumentError
>>> isinstance(ArgumentError("steps must be >= 1; got 0"), ValueError)
True
"""

from __future__ import annotations

__all__ = [
    "CamLensError",
    "CamLensWarning",
    "ArgumentError",
    "NonFiniteInputError",
    "TargetTypeError",
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
    "DeviceError",
    "DependencyError",
    "MissingFileError",
    "FileFormatError",
    "OutputError",
    "MetricStateError",
]


class CamLensWarning(UserWarning):
    """Something camlens computed is probably not what the user wanted (e.g. all-zero gradients)."""


class CamLensError(Exception):
    """Base class of every error camlens raises on purpose."""


class ArgumentError(CamLensError, ValueError):
    """An argument's value is outside what is accepted (an unknown option name, a count < 1, ...)."""


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


class DeviceError(CamLensError, RuntimeError):
    """The requested device (CUDA, MPS) is not available on this machine, or conflicts with another option."""


class DependencyError(CamLensError, ImportError):
    """An optional package needed for this feature is not installed; the message names the extra."""


class MissingFileError(CamLensError, FileNotFoundError):
    """An input file or folder does not exist (or is a folder where a file was expected)."""


class FileFormatError(CamLensError, ValueError):
    """A file exists but its content is not what was expected (not an image, malformed annotations)."""


class OutputError(CamLensError, OSError):
    """An output file or folder cannot be created or written."""


class MetricStateError(CamLensError, RuntimeError):
    """A metric's result was asked for before any batch was given to ``update()``."""


class NonFiniteInputError(CamLensError, ValueError):
    """The input holds NaN or infinite values (opt out with ``allow_nonfinite=True``)."""


class TargetTypeError(TargetError, TypeError):
    """A target callable returned something other than one score (``None``, a string, ...)."""
