"""RefineCAM: the product of a base method's per-layer maps, checked by hand and against pytorch-grad-cam."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camlens import FinerCAM, FullGrad, GradCAM, GradCAMPlusPlus, LayerCAM, RefineCAM, ScoreCAM
from camlens.errors import InputTypeError, LayerNotFoundError
from camlens.targets import ClassifierOutputTarget

TARGETS = [ClassifierOutputTarget(c) for c in (0, 1, 2, 5)]


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def naive_refine(raw_maps: list[np.ndarray], size: tuple[int, int], relu: bool = True) -> np.ndarray:
    """Per image: each layer's map ReLU'd, upsampled, scaled to [0, 1]; multiplied; scaled again."""
    n = raw_maps[0].shape[0]
    out = np.ones((n, *size))
    for raw in raw_maps:
        for i in range(n):
            m = np.maximum(raw[i], 0) if relu else raw[i]
            up = F.interpolate(torch.from_numpy(m)[None, None].float(), size=size, mode="bilinear", align_corners=False)
            out[i] *= _minmax(up[0, 0].numpy())
    return np.stack([_minmax(o) for o in out])


@pytest.mark.parametrize("base", [None, GradCAM, LayerCAM])
def test_refinecam_by_hand(base, small_cnn, image_batch):
    base_cls = base or GradCAMPlusPlus
    per_layer = [base_cls(small_cnn, [name]).explain(image_batch, TARGETS).layer_maps[0].numpy() for name in ("stem", "block")]
    kwargs = {} if base is None else {"base_method": base}
    exp = RefineCAM(small_cnn, ["stem", "block"], **kwargs).explain(image_batch, TARGETS)
    for ours, ref in zip(exp.layer_maps, per_layer):
        np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(exp.cam.numpy(), naive_refine(per_layer, (16, 16)), atol=1e-5)


def test_perturbation_base_method(small_cnn, image_batch):
    per_layer = [ScoreCAM(small_cnn, [name], progress=False).explain(image_batch, TARGETS).layer_maps[0].numpy() for name in ("stem", "block")]
    out = RefineCAM(small_cnn, ["stem", "block"], base_method=ScoreCAM, progress=False, batch_size=16)(image_batch, targets=TARGETS)
    np.testing.assert_allclose(out, naive_refine(per_layer, (16, 16)), atol=1e-5)


def test_needs_two_layers_and_a_per_layer_base(small_cnn):
    with pytest.raises(LayerNotFoundError, match="at least two target layers; got \\['block'\\]"):
        RefineCAM(small_cnn, ["block"])
    for bad in (FullGrad, FinerCAM, RefineCAM):
        with pytest.raises(InputTypeError, match="does not make one map per target layer"):
            RefineCAM(small_cnn, ["stem", "block"], base_method=bad)
    with pytest.raises(InputTypeError, match="camlens CAM class"):
        RefineCAM(small_cnn, ["stem", "block"], base_method="gradcam")


def test_matches_pytorch_grad_cam():
    peer = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam (pip install grad-cam) is not installed")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as PeerTarget
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cats = [1, 2, 3]
    ours = RefineCAM(model, ["layer3", "layer4"])(x, targets=[ClassifierOutputTarget(c) for c in cats])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peer.RefineCAM(model, [model.layer3, model.layer4])(x, [PeerTarget(c) for c in cats])
    for i in range(3):  # the peer scales each layer's map before resizing it; camlens after
        assert np.corrcoef(ours[i].ravel(), theirs[i].ravel())[0, 1] >= 0.99
