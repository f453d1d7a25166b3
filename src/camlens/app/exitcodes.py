"""The exit status of every ``camlens`` subcommand, decided in one place from the error raised.

====  ==============  ===============================================================================
code  name            when
====  ==============  ===============================================================================
0     ``OK``          the command did what was asked
1     ``DATA_ERROR``  the input or the data is wrong: a missing, unreadable or malformed file (image,
                      annotations, weights, model file), a model or layer that does not fit the input,
                      an output file or folder that cannot be written
2     ``USAGE_ERROR`` the command line is wrong: an unknown option, subcommand, method, metric, model
                      or target layer, a value out of range (a class index beyond the model's outputs,
                      ``--batch-size 0``), two options that conflict
3     ``ENVIRONMENT`` this machine lacks something: an optional package (``pip install 'camlens[...]'``),
                      the requested device (CUDA, MPS), pretrained weights that cannot be downloaded
130   ``INTERRUPTED`` stopped with Ctrl-C (SIGINT); files written so far are complete, none half-written
====  ==============  ===============================================================================

Every error prints one line ``camlens: error: <message>`` on stderr (``--traceback`` shows the
full traceback instead); argparse's own usage errors print its usage line and message.
"""

from __future__ import annotations

from ..errors import (
    ArgumentError,
    CamLensError,
    DependencyError,
    DeviceError,
    LayerNotFoundError,
    MethodNotFoundError,
    TargetIndexError,
)
from .zoo import ModelNotFoundError, WeightsDownloadError

__all__ = ["OK", "DATA_ERROR", "USAGE_ERROR", "ENVIRONMENT", "INTERRUPTED", "exit_code", "describe"]

OK = 0
DATA_ERROR = 1
USAGE_ERROR = 2
ENVIRONMENT = 3
INTERRUPTED = 130

_USAGE = (ArgumentError, MethodNotFoundError, LayerNotFoundError, TargetIndexError, ModelNotFoundError)
_ENVIRONMENT = (DependencyError, DeviceError, WeightsDownloadError, ImportError)


def exit_code(exc: BaseException) -> int:
    """The exit status for ``exc`` (see the module table)."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, _USAGE):
        return USAGE_ERROR
    if isinstance(exc, _ENVIRONMENT):
        return ENVIRONMENT
    return DATA_ERROR


def describe(exc: BaseException) -> str:
    """One line for stderr: a camlens error's message, or ``Type: first line`` for any other error."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc).strip()
    if isinstance(exc, CamLensError):
        return " ".join(text.split("\n"))
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first} (rerun with --traceback for details)"
