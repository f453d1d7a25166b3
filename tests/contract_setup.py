"""Per-method settings for the contract suite (tests/test_contract.py).

The suite runs every registered method on :class:`testnets.SmallCNN` with ``target_layers=[model.block]``.
A method that needs something else adds ONE entry here (and nothing in test_contract.py):

* ``kwargs``: extra constructor arguments, e.g. ``{"num_samples": 2}`` to keep a multi-pass method small;
* ``layers``: the ``target_layers`` to use instead of ``[model.block]`` (a callable ``model -> spec``;
  return ``None`` for methods that take no layer);
* ``several_layers``: the spec for the several-layers test (default ``["stem", "block"]``);
* ``skip``: ``{test_name: reason}`` for a contract test that does not apply to the method (say why).
"""

from __future__ import annotations

from typing import Any

CONTRACT: dict[str, dict[str, Any]] = {
    # stochastic: a fixed seed makes repeated calls equal; few samples keep the suite fast
    "sscam": {"kwargs": {"num_samples": 2, "std": 0.5, "generator": 0}},
    "iscam": {"kwargs": {"num_samples": 2}},
    "smoothgradcam++": {"kwargs": {"num_samples": 2}},
    "sess": {
        "kwargs": {"num_scales": 2},
        "skip": {
            "test_explain_returns_tensors_on_model_device": "SESS's raw map is fused at the input's resolution, not the layer's",
            "test_several_layers": "SESS's raw map is fused at the input's resolution (one map, not one per layer)",
        },
    },
    "dff": {"skip": {"test_batch_equals_one_by_one": "DFF factorises the whole batch jointly: its concepts depend on the batch by definition"}},
}


def settings(name: str) -> dict[str, Any]:
    return CONTRACT.get(name, {})
