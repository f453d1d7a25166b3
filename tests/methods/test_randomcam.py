"""RandomCAM: naive-loop values, reproducibility (seed / generator), errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camlens import RandomCAM
from camlens.errors import CamLensError, InputTypeError

from .reference import activations_and_gradients, finish


def weights(seed: int, channels: int) -> list[float]:
    return [2 * v - 1 for v in torch.rand(channels, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).tolist()]


def test_randomcam_naive_loop(tiny, tiny_input):
    a, _, _ = activations_and_gradients(tiny, tiny_input, [0, 0, 0])
    n, c, h, w = a.shape
    wk = weights(7, c)
    assert all(-1 <= v <= 1 for v in wk)
    raw = np.zeros((n, h, w))
    for i in range(n):
        for k in range(c):
            raw[i] += wk[k] * a[i, k]
    exp = RandomCAM(tiny, [tiny.feat], seed=7).explain(tiny_input, target_category=0)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), raw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exp.cam.numpy(), finish(raw), atol=1e-5)


def test_randomcam_seed_reproducible_and_per_layer(small_cnn, image_batch):
    a = RandomCAM(small_cnn, "block", seed=1)
    np.testing.assert_array_equal(a(image_batch), RandomCAM(small_cnn, "block", seed=1)(image_batch))
    assert not np.allclose(a(image_batch), RandomCAM(small_cnn, "block", seed=2)(image_batch))
    assert torch.equal(a.channel_weights(16, 1), a.channel_weights(16, 1))
    assert not torch.equal(a.channel_weights(16, 0), a.channel_weights(16, 1))
    assert a.uses_gradients is False


def test_randomcam_generator_draws_fresh_weights_reproducibly(small_cnn, image_batch):
    cam = RandomCAM(small_cnn, "block", generator=torch.Generator().manual_seed(3))
    first, second = cam(image_batch), cam(image_batch)
    assert not np.allclose(first, second)
    again = RandomCAM(small_cnn, "block", generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(again(image_batch), first)
    np.testing.assert_array_equal(again(image_batch), second)


def test_randomcam_errors(small_cnn):
    with pytest.raises(InputTypeError, match="seed must be an int"):
        RandomCAM(small_cnn, "block", seed=1.5)
    with pytest.raises(InputTypeError, match="must be a torch.Generator"):
        RandomCAM(small_cnn, "block", generator=np.random.default_rng(0))
    if torch.cuda.is_available():
        with pytest.raises(CamLensError, match="CPU torch.Generator"):
            RandomCAM(small_cnn, "block", generator=torch.Generator(device="cuda"))


def test_on_vit_tokens_with_reshape_transform():
    from ._vit import check_on_vit_tokens

    check_on_vit_tokens(RandomCAM)
