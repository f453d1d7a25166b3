"""``camlens run``: explain and score a whole dataset, sharded with torchrun, resumable.

Application layer (the library core never imports it). Parts, one idea each:

* :mod:`.data` -- which images (folder, ImageFolder, manifest), their ids, labels, boxes, decoding;
* :mod:`.shard` -- rank, world size, device and the process group from torchrun's environment;
* :mod:`.store` -- the Parquet tables and Zarr maps, written as the run goes, and the reader;
* :mod:`.loop` -- the work itself; :mod:`.summary` -- the per-method table; :mod:`.cli` -- the command.

Reading a run back::

    from camlens.app import runs
    run = runs.open("runs/val")
    df = run.table().to_pandas()                 # one row per image x method x target
    heat = run.map("cat/001.jpg", "gradcam")     # (H, W) float32 in [0, 1], upsampled on read
    run.errors(), run.summary(), run.items()

(``camlens.runs`` is not a module: the library core never imports the application layer, so the
reader lives here, as ``camlens.app.runs.open``.)
"""

from .loop import RunOptions, RunResult, execute
from .store import RunReader, open_run

open = open_run

__all__ = ["RunOptions", "RunReader", "RunResult", "execute", "open", "open_run", "register_cli"]


def register_cli(subparsers: object) -> None:
    """Add ``camlens run`` to the ``camlens`` command's subparsers."""
    from .cli import register_cli as _register

    _register(subparsers)
