"""pytorch-grad-cam's BaseCAM arguments: honoured where camlens can, rejected with a clear error where not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camlens import AblationCAM, GradCAM, ScoreCAM
from camlens.errors import CamLensError
from camlens.methods.base import LayerContext

from ._perturb_nets import PNet


def test_matching_uses_gradients_and_defaults_are_accepted():
    model = PNet().eval()
    x = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    plain = GradCAM(model, "feat")(x, 1)
    same = GradCAM(model, "feat", uses_gradients=True, compute_input_gradient=False, tta_transforms=None)(x, 1)
    np.testing.assert_array_equal(plain, same)
    ScoreCAM(model, "feat", uses_gradients=False, progress=False)


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (GradCAM, {"uses_gradients": False}, "GradCAM needs gradients; got uses_gradients=False"),
        (ScoreCAM, {"uses_gradients": True}, "ScoreCAM uses no gradients; got uses_gradients=True"),
        (GradCAM, {"compute_input_gradient": True}, "use camlens.GuidedBackprop for input gradients"),
        (AblationCAM, {"tta_transforms": object()}, "does not take tta_transforms; got object"),
    ],
)
def test_options_camlens_cannot_honour_are_rejected(cls, kwargs, match):
    with pytest.raises(CamLensError, match=match):
        cls(PNet(), "feat", **kwargs)


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\): \['bogus'\]"):
        GradCAM(PNet(), "feat", bogus=1)
    with pytest.raises(TypeError, match=r"\['num_samples'\]; ScoreCAM's own options are \['score_softmax', 'top_k'\]"):
        ScoreCAM(PNet(), "feat", num_samples=3)


def test_layer_context_has_no_unused_fields():
    fields = set(LayerContext.__dataclass_fields__)
    assert "cam" not in fields  # the method object itself is never handed to a map computation
    # ``index`` is used (RandomCAM seeds per layer, SmoothGrad-CAM++ shares noisy passes across layers)
    users = [p.stem for p in __import__("pathlib").Path(__import__("camlens.methods", fromlist=["x"]).__path__[0]).glob("*.py")
             if "ctx.index" in p.read_text()]
    assert users, "LayerContext.index has no user left: remove it"
