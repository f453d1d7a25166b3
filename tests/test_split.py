"""Splitting a model at a target layer with torch.fx: the tail reproduces the model's output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camlens.split import SplitError, split_at_layer

from methods._perturb_nets import BatchSized, Branchy, ResNetish


def capture(model, layer, x):
    store = {}
    h = layer.register_forward_hook(lambda m, a, o: store.__setitem__("a", o.clone()))
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        h.remove()
    return store["a"], y


@pytest.mark.parametrize("name", ["blocks.1", "blocks.2", "blocks.0.conv1", "blocks.2.conv2", "stem.0", "fc"])
def test_tail_reproduces_output(name):
    model = ResNetish().eval()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    layer = model.get_submodule(name)
    split = split_at_layer(model, layer, name)
    act, y = capture(model, layer, x)
    live = split.live_values(x)
    torch.testing.assert_close(split.run_tail(act.clone(), live), y, atol=1e-6, rtol=1e-6)
    # per-image rows re-batch freely: image 2 twice, image 0 once
    idx = torch.tensor([2, 0, 2])
    torch.testing.assert_close(split.run_tail(act[idx].clone(), [v[idx] for v in live]), y[idx], atol=1e-6, rtol=1e-6)


def test_live_values_and_shared_modules():
    model = ResNetish().eval()
    whole = split_at_layer(model, model.blocks[2], "blocks.2")
    assert whole.head is None and whole.live_names == []  # nothing but the activation crosses
    inner = split_at_layer(model, model.blocks[1].conv2, "blocks.1.conv2")
    assert len(inner.live_names) == 1  # the skip connection around conv2
    assert inner.tail.get_submodule("fc") is model.fc  # modules are shared, not copied
    assert inner.tail.get_submodule("blocks.2.conv1").weight is model.blocks[2].conv1.weight


def test_untraceable_model_raises_split_error():
    model = Branchy().eval()
    with pytest.raises(SplitError, match="torch.fx could not trace Branchy"):
        split_at_layer(model, model.blocks[1], "blocks.1")


def test_batch_size_dependent_live_value_raises():
    model = BatchSized().eval()
    split = split_at_layer(model, model.blocks[1], "blocks.1")
    with pytest.raises(SplitError, match="not a per-image tensor"):
        split.live_values(torch.randn(2, 3, 8, 8))


def test_layer_called_twice_raises():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(self.conv(x)).mean(dim=(2, 3))

    model = Twice()
    with pytest.raises(SplitError, match="called 2 times"):
        split_at_layer(model, model.conv, "conv")


def test_resnet_layer4_tail():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    layer = model.layer4[-1]
    split = split_at_layer(model, layer, "layer4.1")
    assert split.head is None
    act, y = capture(model, layer, x)
    torch.testing.assert_close(split.run_tail(act.clone(), []), y, atol=1e-5, rtol=1e-5)


def test_pooled_linear_head_is_read_from_the_traced_tail():
    model = ResNetish().eval()
    weight, bias = split_at_layer(model, model.blocks[2], "blocks.2").pooled_linear()
    assert weight is model.fc.weight and bias is model.fc.bias
    assert split_at_layer(model, model.blocks[1], "blocks.1").pooled_linear() is None  # a block before the pool
    assert split_at_layer(model, model.blocks[2].conv2, "blocks.2.conv2").pooled_linear() is None  # live skip

    class PoolNormFc(ResNetish):  # a norm between pool and head: not linear in the pooled values
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(6)

        def forward(self, x):
            return self.fc(self.norm(self.blocks(self.stem(x)).mean(dim=(2, 3))))

    other = PoolNormFc().eval()
    assert split_at_layer(other, other.blocks[2], "blocks.2").pooled_linear() is None


def test_a_layer_returning_a_tuple_is_split_at_the_element_read_after_it():
    """``layer(x)[1]`` after the cut: the tail takes that element; reading two elements is no split."""
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return y.sum(), y

    class OneElement(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair, self.fc = Pair(), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.pair(x)[1].mean(dim=(2, 3)))

    class BothElements(OneElement):
        def forward(self, x):
            out = self.pair(x)
            return self.fc(out[1].mean(dim=(2, 3))) + out[0]

    torch.manual_seed(0)
    model, x = OneElement().eval(), torch.randn(2, 3, 6, 6)
    split = split_at_layer(model, model.pair, "pair")
    activation = model.pair.conv(x)
    torch.testing.assert_close(split.tail(activation), model(x))
    both = BothElements().eval()
    with pytest.raises(SplitError, match=r"returns a tuple and the layers after it read several of its elements \(\[0, 1\]\)"):
        split_at_layer(both, both.pair, "pair")
