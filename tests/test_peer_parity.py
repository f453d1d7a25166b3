"""Same numbers as pytorch-grad-cam where the papers agree (skipped when the peer is not installed).

Install the peer with ``make bench`` (or ``pip install grad-cam``). Known, documented differences:
GradCAM++ (the peer adds 1e-6 to alpha's denominator; reproduced here to show it is the only
difference) and the sign of Eigen maps (the peer's is arbitrary; camlens fixes it).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision

import camlens
from camlens import postprocess as pp
from camlens.methods.gradcampp import GradCAMPlusPlus
from camlens.targets import ClassifierOutputTarget

peer = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam (pip install grad-cam) is not installed")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as PeerTarget  # noqa: E402

NAMES = ["GradCAM", "XGradCAM", "HiResCAM", "GradCAMElementWise", "LayerCAM", "EigenCAM", "EigenGradCAM"]


class PeerEpsGradCAMPlusPlus(GradCAMPlusPlus):
    def cam_weights(self, ctx):
        g = ctx.gradients.double()
        s = ctx.activations.double().sum((2, 3), keepdim=True)
        alpha = torch.where(g != 0, g**2 / (2 * g**2 + s * g**3 + 1e-6), torch.zeros_like(g))
        return (alpha * g.clamp_min(0)).sum((2, 3), keepdim=True).float()


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=20).eval()
    x = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    return model, x


@pytest.mark.parametrize("name", NAMES + ["GradCAMPlusPlus"])
def test_matches_peer(setup, name):
    model, x = setup
    layer = model.layer4[-1]
    cats = [3, 7, 11]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = getattr(peer, name)(model=model, target_layers=[layer])(
            input_tensor=x, targets=[PeerTarget(c) for c in cats]
        )
    cls = PeerEpsGradCAMPlusPlus if name == "GradCAMPlusPlus" else getattr(camlens, name)
    exp = cls(model, [layer]).explain(x, [ClassifierOutputTarget(c) for c in cats])
    ours = exp.numpy()
    if name.startswith("Eigen"):
        flipped = pp.minmax_normalize(pp.upsample(pp.relu(-exp.layer_maps[0]), (96, 96))).numpy()
        for i in range(3):  # the peer's sign is arbitrary: it must equal ours or ours flipped
            assert min(np.abs(theirs[i] - ours[i]).max(), np.abs(theirs[i] - flipped[i]).max()) < 1e-4
    else:
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
