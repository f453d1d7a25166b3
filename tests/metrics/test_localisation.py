import math

import pytest
import torch

from camlens.errors import InputShapeError
from camlens.metrics import (
    EnergyPointingGame,
    PointingGame,
    boxes_to_masks,
    center_baseline,
    energy_pointing_game,
    pointing_game,
)


def test_boxes_to_masks_inclusive_pixel_indices():
    m = boxes_to_masks([[[1, 2, 3, 2.5]], []], (5, 6))
    assert m.shape == (2, 5, 6)
    assert m[0].nonzero().tolist() == [[2, 1], [2, 2], [2, 3]]
    assert not m[1].any()
    both = boxes_to_masks(torch.tensor([[[0, 0, 0, 0], [5, 4, 5, 4]]]), (5, 6))
    assert both[0].sum() == 2 and both[0, 0, 0] and both[0, 4, 5]
    with pytest.raises(ValueError, match="x1 <= x2"):
        boxes_to_masks([[[3, 0, 1, 1]]], (5, 6))


def test_pointing_game_tolerance_hand_computed():
    cams = torch.zeros(2, 40, 40)
    cams[:, 20, 5] = 1.0  # peak at row 20, column 5
    box_at_15 = [[20, 0, 30, 39]]  # nearest box pixel (20, 20): distance 15 -> hit
    box_beyond = [[21, 0, 30, 39]]  # distance 16 -> miss
    hits = pointing_game(cams, boxes=[box_at_15, box_beyond])
    assert hits.tolist() == [1.0, 0.0]
    assert pointing_game(cams, boxes=[box_at_15, box_beyond], tolerance=16).tolist() == [1.0, 1.0]
    # diagonal: nearest pixel at (31, 16): distance sqrt(11^2 + 11^2) = 15.56 > 15 -> miss
    assert pointing_game(cams[:1], boxes=[[[16, 31, 39, 39]]]).item() == 0.0
    assert pointing_game(cams[:1], boxes=[[[16, 31, 39, 39]]], tolerance=15.6).item() == 1.0


def test_pointing_game_matches_naive_loop():
    torch.manual_seed(0)
    cams = torch.rand(5, 30, 25)
    masks = torch.rand(5, 30, 25) > 0.97
    got = pointing_game(cams, masks=masks, tolerance=4)
    for i in range(5):
        r, c = divmod(int(cams[i].argmax()), 25)
        dists = [math.hypot(r - a, c - b) for a, b in masks[i].nonzero().tolist()]
        assert got[i].item() == float(min(dists) <= 4)


def test_pointing_known_answers_and_edge_cases():
    box = [[10, 10, 19, 19]]
    perfect = boxes_to_masks([box], (40, 40)).float()
    inverted = 1 - perfect
    inverted[0, 39, 39] = 2.0  # the peak far from the box
    assert pointing_game(perfect, boxes=[box]).item() == 1.0
    assert pointing_game(inverted, boxes=[box]).item() == 0.0
    assert pointing_game(torch.ones(1, 40, 40), boxes=[box]).item() == 0.0  # constant: no peak
    assert math.isnan(pointing_game(perfect, boxes=[[]]).item())
    centre = center_baseline(1, (40, 40))
    assert pointing_game(centre, boxes=[[[18, 18, 22, 22]]]).item() == 1.0
    with pytest.raises(ValueError, match="exactly one of boxes"):
        pointing_game(perfect)
    with pytest.raises(InputShapeError, match="one .H, W. mask per map"):
        pointing_game(perfect, masks=torch.ones(2, 40, 40, dtype=torch.bool))


def test_energy_pointing_game_hand_computed():
    cams = torch.zeros(1, 4, 4)
    cams[0, 0, 0] = 3.0
    cams[0, 3, 3] = 1.0
    cams[0, 1, 1] = -5.0  # negative values are clipped
    assert energy_pointing_game(cams, boxes=[[[0, 0, 1, 1]]]).item() == pytest.approx(0.75)
    uniform = torch.ones(1, 10, 10)
    assert energy_pointing_game(uniform, boxes=[[[0, 0, 4, 9]]]).item() == pytest.approx(0.5)
    assert energy_pointing_game(torch.zeros(1, 4, 4), boxes=[[[0, 0, 1, 1]]]).item() == 0.0
    box = [[2, 2, 5, 5]]
    perfect = boxes_to_masks([box], (10, 10)).float()
    assert energy_pointing_game(perfect, boxes=[box]).item() == 1.0
    assert energy_pointing_game(1 - perfect, boxes=[box]).item() == 0.0
    rnd = torch.rand(200, 10, 10, generator=torch.Generator().manual_seed(0))
    chance = energy_pointing_game(rnd, boxes=[box] * 200).mean().item()
    assert chance == pytest.approx(0.16, abs=0.01)  # the box covers 16 of 100 pixels


def test_classes_accumulate():
    cams = torch.zeros(3, 20, 20)
    cams[:, 5, 5] = 1
    pg, epg = PointingGame(), EnergyPointingGame()
    pg.update(cams[:2], boxes=[[[0, 0, 6, 6]], [[19, 19, 19, 19]]])
    pg.update(cams[2:], boxes=[[]])
    assert pg.compute().item() == pytest.approx(0.5)  # image without boxes left out
    epg.update(cams, masks=torch.ones(3, 20, 20, dtype=torch.bool))
    assert epg.compute().item() == 1.0
    assert PointingGame.higher_is_better and EnergyPointingGame.higher_is_better
