"""FEM: hand-computed and naive-loop values, options, errors, and the documented peer difference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from camlens import FEM
from camlens.errors import CamLensError

from .reference import activations_and_gradients, finish


def naive_fem(acts: np.ndarray, k_sigma: float) -> np.ndarray:
    n, c, h, w = acts.shape
    out = np.zeros((n, h, w))
    for i in range(n):
        for ch in range(c):
            vals = [acts[i, ch, p, q] for p in range(h) for q in range(w)]
            mu = sum(vals) / len(vals)
            sigma = (sum((v - mu) ** 2 for v in vals) / len(vals)) ** 0.5
            for p in range(h):
                for q in range(w):
                    if acts[i, ch, p, q] >= mu + k_sigma * sigma:
                        out[i, p, q] += mu
    return out


class Passthrough(nn.Module):
    """The input itself is the target layer's output; a linear head gives a score."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.feat = nn.Identity()
        self.head = nn.Linear(channels, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feat(x).mean(dim=(2, 3)))


def test_fem_by_hand():
    # channel 0: mean 1, std sqrt(3): with k=1 only the 4 passes the threshold 2.73 -> weight 1.
    # channel 1: mean 3, std 1 (values 2, 4): with k=1 the two 4s reach the threshold 4 -> weight 3.
    # channel 2: mean 2, std sqrt(12)=3.46: with k=1 only the 8 passes 5.46 -> weight 2.
    a = torch.tensor([[[[0.0, 0.0], [0.0, 4.0]], [[2.0, 4.0], [2.0, 4.0]], [[8.0, 0.0], [0.0, 0.0]]]])
    exp = FEM(Passthrough(3), ["feat"], k_sigma=1).explain(a, target_category=0)
    expected = torch.tensor([[[2.0, 3.0], [0.0, 4.0]]])
    torch.testing.assert_close(exp.layer_maps[0], expected)
    torch.testing.assert_close(exp.cam, expected / 4)


@pytest.mark.parametrize("k_sigma", [2.0, 1.0, 0.5])
def test_fem_naive_loop_on_tiny_net(tiny, tiny_input, k_sigma):
    a, _, _ = activations_and_gradients(tiny, tiny_input, [0, 0, 0])
    raw = naive_fem(a, k_sigma)
    exp = FEM(tiny, [tiny.feat], k_sigma=k_sigma).explain(tiny_input, target_category=0)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), raw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exp.cam.numpy(), finish(raw), atol=1e-5)


def test_fem_is_class_agnostic_and_gradient_free(small_cnn, image_batch):
    cam = FEM(small_cnn, "block")
    assert cam.uses_gradients is False
    np.testing.assert_array_equal(cam(image_batch, 0), cam(image_batch, 5))


def test_fem_peer_spelling_k(small_cnn, image_batch):
    np.testing.assert_array_equal(FEM(small_cnn, "block", k=1.5)(image_batch), FEM(small_cnn, "block", k_sigma=1.5)(image_batch))


def test_fem_rejects_non_number():
    with pytest.raises(CamLensError, match="k_sigma must be a number"):
        FEM(Passthrough(3), ["feat"], k_sigma="2")


class PeerWeightingFEM(FEM):
    """pytorch-grad-cam's weighting: activations weighted by the fraction of positions in the mask."""

    def weighted_masks(self, activations):
        mean = activations.mean(dim=(2, 3), keepdim=True)
        std = activations.std(dim=(2, 3), keepdim=True, correction=0)
        frac = (activations > mean + self.k_sigma * std).float().mean(dim=(2, 3), keepdim=True)
        return frac * activations


def test_fem_differs_from_peer_only_by_its_weighting():
    """The peer computes sum_k mean(B_k) * A_k, the paper sum_k mean(A_k) * B_k (documented).
    With the peer's weighting swapped in, the maps agree to 1e-4: the threshold rule is the same."""
    peer = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam is not installed")
    from ._peer_setup import correlations, resnet_and_batch

    model, x = resnet_and_batch()
    layer = model.layer4[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peer.FEM(model=model, target_layers=[layer])(input_tensor=x, targets=None)
    np.testing.assert_allclose(PeerWeightingFEM(model, [layer])(x), theirs, atol=1e-4)
    ours = FEM(model, [layer])(x)
    assert min(correlations(ours, theirs)) < 0.99  # the definitions really differ


def test_fem_warns_when_the_threshold_is_out_of_reach(tiny, tiny_input):
    small = torch.randn(2, 2, 2, 2)  # 4 positions: at most sqrt(3) std above the mean < 2
    with pytest.warns(UserWarning, match="has only 4 positions"):
        exp = FEM(Passthrough(2), ["feat"]).explain(small, target_category=0)
    assert float(exp.layer_maps[0].abs().max()) == 0.0


def test_on_vit_tokens_with_reshape_transform():
    from ._vit import check_on_vit_tokens

    check_on_vit_tokens(FEM, k_sigma=1)
