"""The chunked scorer: score many perturbed inputs, ``batch_size`` rows at a time.

Every multi-pass computation in camlens goes through :func:`score_in_chunks`: ScoreCAM and its
variants (masked inputs), AblationCAM (ablated layer outputs run through the network's tail) and
the faithfulness metrics (deleted or imputed pixels). One *row* is one perturbed input (for a
CAM: one (image, channel[, sample]) pair). For each chunk of rows the scorer

1. builds the chunk's inputs (``inputs(rows)``) and runs the model on them without capture hooks
   or autograd (:func:`camlens.engine.forward_outputs`), or lets ``run(rows)`` produce the
   model's raw output another way (a traced tail, a closed form);
2. passes the output through the output adapter (:func:`~camlens.engine.default_output_adapter`
   or the user's);
3. stores ``score(rows, outputs)`` -- one number per row.

Perturbed inputs exist for one chunk at a time, so peak memory grows with ``batch_size``, not with
the number of rows. ``progress=True`` shows a tqdm bar (optional extra), a callable is called with
the number of rows done after each chunk (the metrics' convention), ``False`` is silent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .engine import OutputAdapter, check_adapted, default_output_adapter, detach_outputs, forward_outputs
from .errors import ArgumentError
from .model_inputs import rows_of
from .progress import progress_bar

__all__ = ["score_in_chunks", "Progress"]

Progress = bool | Callable[[int], None]
Rows = torch.Tensor
"""A ``(B,)`` long tensor of row indices in ``[0, total)``."""


def score_in_chunks(
    model: nn.Module,
    total: int,
    score: Callable[[Rows, torch.Tensor], torch.Tensor],
    *,
    inputs: Callable[[Rows], torch.Tensor] | None = None,
    run: Callable[[Rows], Any] | None = None,
    images: Callable[[Rows], torch.Tensor] | None = None,
    batch_size: int,
    device: torch.device,
    output_adapter: OutputAdapter | None = None,
    dtype: torch.dtype = torch.float32,
    progress: Progress = False,
    desc: str = "",
) -> torch.Tensor:
    """Scores ``(total,)`` of ``total`` rows, ``batch_size`` rows per model call.

    Give ``inputs(rows) -> (B, C, *spatial)`` to run the full ``model`` on perturbed inputs, or
    ``run(rows) -> raw model output`` for another way to the output (a traced tail, a closed
    form). ``score(rows, outputs) -> (B,)`` turns the adapted outputs into one number per row.
    No autograd is recorded; the caller holds eval mode. ``batch_size`` below 1 counts as 1.
    ``images(rows) -> (B,)`` says which image each row's input comes from, so that extra model
    inputs (:mod:`camlens.model_inputs`) are repeated along with it; ``run`` handles that itself.

    Example::

        from camlens.scoring import score_in_chunks

        masks = torch.rand(8, 1, 32, 32)          # 8 masked copies of the first image
        x = x[:1]
        scores = score_in_chunks(model, len(masks), lambda r, out: out[:, 3],
                                 inputs=lambda r: x * masks[r], batch_size=32, device=x.device)
    """
    if (inputs is None) == (run is None):
        raise ArgumentError("score_in_chunks needs exactly one of inputs= (perturbed inputs) or run= (raw outputs); got both or neither")
    adapter = output_adapter or default_output_adapter
    bs = max(1, int(batch_size))
    out = torch.empty(total, dtype=dtype, device=device)
    starts = range(0, total, bs)
    bar = progress is True
    steps = progress_bar(starts, total=len(starts), enabled=bar, desc=desc)
    with torch.no_grad():
        for start in steps:
            rows = torch.arange(start, min(start + bs, total), device=device)
            if inputs is not None:
                with rows_of(images(rows) if images is not None else None):
                    outputs = forward_outputs(model, inputs(rows), adapter)
            else:
                outputs = check_adapted(adapter(run(rows)))  # type: ignore[misc]
            out[start : start + rows.numel()] = score(rows, detach_outputs(outputs)).to(device=device, dtype=dtype)
            del outputs
            if callable(progress):
                progress(rows.numel())
    return out
