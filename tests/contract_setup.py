"""Per-method settings for the contract suite (tests/test_contract.py).

The suite runs every registered method on :class:`testnets.SmallCNN` with ``target_layers=[model.block]``.
A method that needs something else adds ONE entry here (and nothing in test_contract.py):

* ``kwargs``: extra constructor arguments, e.g. ``{"num_samples": 2}`` to keep a multi-pass method small;
* ``layers``: the ``target_layers`` to use instead of ``[model.block]`` (a callable ``model -> spec``;
  return ``None`` for methods that take no layer);
* ``several_layers``: the spec for the several-layers test (default ``["stem", "block"]``);
* ``valid_layers`` / ``class_targets_only``: for tests/test_properties.py, the layer specs a method
  accepts (others must fail with a ``LayerOutputError``) and whether only class targets are accepted;
* ``skip``: ``{test_name: reason}`` for a contract test that does not apply to the method (say why);
* ``model``: a callable ``() -> nn.Module`` for methods that cannot run on SmallCNN (e.g. LeGrad needs
  a vision transformer). The model takes SmallCNN's input ``(N, 3, 16, 16)``, has 6 classes, and its
  ``layers`` give ``(N, 8, 8)`` maps; ``several_layer_shapes`` then gives the map shapes of
  ``several_layers`` (default ``[(4, 16, 16), (4, 8, 8)]``, SmallCNN's ``stem`` and ``block``).
"""

from __future__ import annotations

from typing import Any



def tiny_vit() -> Any:
    """torchvision VisionTransformer for 16x16 inputs: 2x2 patches (8x8 grid), 2 blocks, 6 classes."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=16, patch_size=2, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=6
    )
    with torch.no_grad():  # torchvision starts the head at zero, which would make every gradient zero
        model.heads.head.weight.normal_(0, 0.5)
    return model.eval()


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
    "legrad": {
        "model": tiny_vit,
        "layers": lambda model: None,  # all attention blocks
        "several_layers": ["encoder.layers[0]", "encoder.layers[1]"],
        "several_layer_shapes": [(4, 8, 8), (4, 8, 8)],
    },
}


def settings(name: str) -> dict[str, Any]:
    return CONTRACT.get(name, {})

CONTRACT["cam"] = {
    "valid_layers": ["block", "module", "act"],  # tests/test_properties.py: the layers pooled into the classifier
    "class_targets_only": True,  # tests/test_properties.py: other callables are refused with a TargetError
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
    "class_targets_only": True,
    "skip": {
        "test_explain_returns_tensors_on_model_device": "FinerCAM's score is the contrast y_c - alpha * y_similar, "
        "not the class logit; scores, device and dtype are tested in tests/methods/test_finercam.py",
        "test_no_hooks_left_after_raising_target": "FinerCAM accepts only class targets and rejects any other "
        "callable before the forward pass (tested in tests/methods/test_finercam.py), so the target never runs",
    },
}
CONTRACT["refinecam"] = {"layers": lambda model: ["block", "stem"]}
