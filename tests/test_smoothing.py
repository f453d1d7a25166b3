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


def test_aug_smooth_splits_the_batch_when_memory_runs_out(small_cnn, image_batch, monkeypatch):
    from camlens import CamLensWarning, smoothing

    cam = GradCAM(small_cnn, "block")
    expected = cam.explain(image_batch, aug_smooth=True)
    real_run = cam.engine.run
    sizes = []

    def tight_memory(x, *args, **kwargs):
        sizes.append(x.shape[0])
        if x.shape[0] > image_batch.shape[0]:
            raise smoothing._OUT_OF_MEMORY("CUDA out of memory (simulated)")
        return real_run(x, *args, **kwargs)

    monkeypatch.setattr(cam.engine, "run", tight_memory)
    with pytest.warns(CamLensWarning, match="did not fit in memory together; running them in smaller chunks"):
        got = cam.explain(image_batch, aug_smooth=True)
    # the 24 augmented rows, halved on each failure (12, 6), then chunks of 3 rows: no extra forward
    assert sizes[:3] == [24, 12, 6] and sizes[3:] == [3] * 8
    torch.testing.assert_close(got.cam, expected.cam, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.scores, expected.scores)
    assert [t.category for t in got.targets] == [t.category for t in expected.targets]


def test_aug_smooth_is_one_pass_without_a_forward_to_choose_targets(small_cnn, image_batch):
    cam = GradCAM(small_cnn, "block")
    sizes = []
    handle = small_cnn.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        exp = cam.explain(image_batch, aug_smooth=True)
    finally:
        handle.remove()
    assert sizes == [6 * 4]
    with torch.no_grad():
        assert [t.category for t in exp.targets] == small_cnn(image_batch).argmax(1).tolist()


def test_aug_smooth_target_category_list_and_wrong_target_count(small_cnn, image_batch):
    from camlens.errors import TargetError

    cam = GradCAM(small_cnn, "block")
    by_list = cam.explain(image_batch, target_category=[3, 2, 1, 0], aug_smooth=True)
    by_targets = cam.explain(image_batch, [ClassifierOutputTarget(c) for c in (3, 2, 1, 0)], aug_smooth=True)
    torch.testing.assert_close(by_list.cam, by_targets.cam)
    assert [t.category for t in by_list.targets] == [3, 2, 1, 0]
    with pytest.raises(TargetError, match="got 2 targets for a batch of 4 images"):
        cam.explain(image_batch, [ClassifierOutputTarget(0)] * 2, aug_smooth=True)
    with pytest.raises(TargetError, match="target_category has 3 entries but the batch has 4 images"):
        cam.explain(image_batch, target_category=[0, 1, 2], aug_smooth=True)
