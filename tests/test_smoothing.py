"""aug_smooth equals the average of the six de-augmented single runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camlens import GradCAM
from camlens.postprocess import minmax_normalize
from camlens.targets import ClassifierOutputTarget


def test_aug_smooth_by_hand(small_cnn, image_batch):
    cam = GradCAM(small_cnn, "block")
    targets = [ClassifierOutputTarget(c) for c in (0, 1, 2, 3)]
    maps = []
    for flip in (False, True):
        for factor in (0.9, 1.0, 1.1):
            x = image_batch.flip(-1) if flip else image_batch
            m = cam.explain(x * factor, targets).cam
            maps.append(m.flip(-1) if flip else m)
    expected = minmax_normalize(torch.stack(maps).mean(0))
    got = cam.explain(image_batch, targets, aug_smooth=True)
    torch.testing.assert_close(got.cam, expected, atol=1e-5, rtol=1e-5)
    plain = cam.explain(image_batch, targets)
    torch.testing.assert_close(got.scores, plain.scores)  # scores of the un-augmented input
    torch.testing.assert_close(got.layer_maps[0], plain.layer_maps[0])


def test_aug_smooth_picks_targets_on_the_original_image(small_cnn, image_batch):
    cam = GradCAM(small_cnn, "block")
    with torch.no_grad():
        top = small_cnn(image_batch).argmax(1).tolist()
    exp = cam.explain(image_batch, aug_smooth=True)
    assert [t.category for t in exp.targets] == top
    np.testing.assert_allclose(
        cam(image_batch, aug_smooth=True), cam(image_batch, targets=[ClassifierOutputTarget(c) for c in top], aug_smooth=True)
    )


def test_aug_smooth_falls_back_to_one_augmentation_at_a_time_when_memory_runs_out(small_cnn, image_batch, monkeypatch):
    from camlens import CamLensWarning
    from camlens.methods import base

    cam = GradCAM(small_cnn, "block")
    expected = cam.explain(image_batch, aug_smooth=True)
    real_run = cam.engine.run
    sizes = []

    def tight_memory(x, *args, **kwargs):
        sizes.append(x.shape[0])
        if x.shape[0] > image_batch.shape[0]:
            raise base._OUT_OF_MEMORY("CUDA out of memory (simulated)")
        return real_run(x, *args, **kwargs)

    monkeypatch.setattr(cam.engine, "run", tight_memory)
    with pytest.warns(CamLensWarning, match="one augmentation at a time"):
        got = cam.explain(image_batch, aug_smooth=True)
    assert sizes[0] == 6 * 4 and set(sizes[1:]) == {4}
    torch.testing.assert_close(got.cam, expected.cam, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.scores, expected.scores)
    assert [t.category for t in got.targets] == [t.category for t in expected.targets]
