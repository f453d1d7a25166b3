import copy

import pytest
import torch
from torch import nn

from camlens import GradCAM
from camlens.metrics import ModelRandomisation, average_ranks, cascading_randomisation, spearman


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    torch.manual_seed(0)
    a = torch.randint(0, 4, (3, 6, 5)).float()  # many ties
    b = a + torch.randint(0, 3, (3, 6, 5)).float()
    got = spearman(a, b)
    for i in range(3):
        ref = stats.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert got[i].item() == pytest.approx(ref, abs=1e-6)
    assert average_ranks(torch.tensor([[3.0, 1.0, 3.0, 2.0]])).tolist() == [[2.5, 0.0, 2.5, 1.0]]
    assert spearman(a, a).tolist() == pytest.approx([1.0] * 3)
    assert spearman(a, -a).tolist() == pytest.approx([-1.0] * 3)
    assert torch.isnan(spearman(torch.ones(1, 4), a[:1, 0, :4])).all()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        a = self.conv2(torch.relu(self.conv1(x)))
        return self.head(torch.relu(a).mean(dim=(2, 3)))


def test_cascade_leaves_user_model_untouched():
    model = Net().train()
    before = copy.deepcopy(model.state_dict())
    x = torch.rand(3, 3, 10, 10)
    res = cascading_randomisation(model, "gradcam", x, target_layers="conv2")
    assert res.layers == ["head", "conv2", "conv1"]
    assert res.correlations.shape == (3, 3)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    # randomising the head changes GradCAM's weights: the maps must decorrelate from trained ones
    assert res.mean[-1] < 0.9
    direct = GradCAM(model, target_layers=["conv2"], progress=False).explain(x).cam
    assert torch.allclose(res.maps, direct)


def test_only_layers_below_target_change_nothing_above():
    model = Net()
    x = torch.rand(2, 3, 10, 10)
    # randomising only conv1 (below the target layer) with the head kept: maps change, correlation < 1
    res = cascading_randomisation(model, GradCAM, x, [0, 1], target_layers=["conv2"], layers=["conv1"])
    assert res.layers == ["conv1"] and res.correlations.shape == (1, 2)
    m = ModelRandomisation(model, "gradcam", target_layers="conv2", layers=["head"])
    m.update(x)
    assert m.curves.shape == (2, 1)
    assert ModelRandomisation.higher_is_better is False
