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

CONTRACT: dict[str, dict[str, Any]] = {}


def settings(name: str) -> dict[str, Any]:
    return CONTRACT.get(name, {})

CONTRACT["cam"] = {
    "skip": {
        "test_several_layers": "CAM's weights belong to the one layer pooled into the linear classifier "
        "(the stem has 8 channels, the classifier takes 16); the error is tested in tests/methods/test_cam.py",
    },
}
CONTRACT["fullgrad"] = {
    "layers": lambda model: None,
    "skip": {
        "test_explain_returns_tensors_on_model_device": "FullGrad has no target layer: its one map is at input "
        "resolution, not (4, 8, 8); device, dtype and scores are tested in tests/methods/test_fullgrad.py",
        "test_several_layers": "FullGrad takes no target layers (it uses every bias layer)",
    },
}
CONTRACT["finercam"] = {
    "skip": {
        "test_explain_returns_tensors_on_model_device": "FinerCAM's score is the contrast y_c - alpha * y_similar, "
        "not the class logit; scores, device and dtype are tested in tests/methods/test_finercam.py",
        "test_no_hooks_left_after_raising_target": "FinerCAM accepts only class targets and rejects any other "
        "callable before the forward pass (tested in tests/methods/test_finercam.py), so the target never runs",
    },
}
CONTRACT["refinecam"] = {"layers": lambda model: ["block", "stem"]}
