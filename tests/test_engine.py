"""The engine's promises: where autograd runs, exact gradients, output adapters, odd models."""

from __future__ import annotations

import warnings
from collections import namedtuple

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from camlens import AblationCAM, CamLensWarning, EigenCAM, GradCAM, HiResCAM
from camlens.engine import Engine, default_output_adapter
from camlens.errors import LayerNotRunError, LayerOutputError, ModelOutputError
from camlens.hooks import resolve_layers
from camlens.targets import ClassifierOutputTarget

from testnets import SmallCNN


def test_autograd_starts_at_the_target_layer(small_cnn, image_batch):
    seen = {}

    def spy(name):
        def hook(module, args, out):
            seen[name] = (torch.is_grad_enabled(), out.requires_grad)

        return hook

    h1 = small_cnn.stem.register_forward_hook(spy("stem"))
    h2 = small_cnn.fc.register_forward_hook(spy("fc"))
    try:
        GradCAM(small_cnn, [small_cnn.block])(image_batch)
    finally:
        h1.remove()
        h2.remove()
    assert seen["stem"] == (False, False)  # nothing before the target layer is recorded
    assert seen["fc"] == (True, True)
    assert all(p.grad is None for p in small_cnn.parameters())


def test_gradient_free_methods_record_no_graph(small_cnn, image_batch):
    seen = []
    h = small_cnn.fc.register_forward_hook(lambda m, a, o: seen.append(torch.is_grad_enabled()))
    try:
        EigenCAM(small_cnn, [small_cnn.block])(image_batch)
    finally:
        h.remove()
    assert seen == [False]


def test_gradients_equal_a_full_backward():
    model = torchvision.models.resnet18(num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    layer = model.layer3[-1]
    store = {}

    def keep(m, a, o):
        o.retain_grad()
        store["a"] = o

    x_ref = x.clone().requires_grad_(True)  # force a full graph from the input on
    h = layer.register_forward_hook(keep)
    try:
        out = model(x_ref)
    finally:
        h.remove()
    out[:, 4].sum().backward()
    ref = store["a"].grad
    model.zero_grad(set_to_none=True)

    cap = Engine(model, resolve_layers(model, layer)).run(x, [ClassifierOutputTarget(4)] * 2)
    torch.testing.assert_close(cap.activations[0], store["a"].detach())
    torch.testing.assert_close(cap.gradients[0], ref, rtol=1e-5, atol=1e-6)


def test_inplace_relu_after_target_layer_does_not_corrupt_activations():
    model = SmallCNN().eval()
    plain = SmallCNN().eval()
    plain.load_state_dict(model.state_dict())
    plain.act.inplace = False
    plain.stem[2].inplace = False
    x = torch.randn(2, 3, 16, 16)
    a = HiResCAM(model, "block").explain(x, target_category=1)
    b = HiResCAM(plain, "block").explain(x, target_category=1)
    torch.testing.assert_close(a.layer_maps[0], b.layer_maps[0])
    assert (a.layer_maps[0] < 0).any()  # pre-ReLU activations were captured, not the post-ReLU ones


def test_frozen_model(small_cnn, image_batch):
    for p in small_cnn.parameters():
        p.requires_grad_(False)
    out = GradCAM(small_cnn, "block")(image_batch)
    assert np.isfinite(out).all() and out.max() == pytest.approx(1.0)
    assert not any(p.requires_grad for p in small_cnn.parameters())


class DictModel(nn.Module):
    def __init__(self, key: str = "logits") -> None:
        super().__init__()
        self.net = SmallCNN()
        self.key = key

    def forward(self, x):
        return {self.key: self.net(x), "aux": torch.zeros(1)} if self.key != "only" else {"x": self.net(x)}


HFOutput = namedtuple("HFOutput", ["loss", "logits"])


class HFModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = SmallCNN()

    def forward(self, x):
        return HFOutput(loss=None, logits=self.net(x))


@pytest.mark.parametrize("model", [DictModel("logits"), DictModel("out"), DictModel("only"), HFModel()])
def test_output_adapters(model, image_batch):
    model.eval()
    ref = GradCAM(model.net, "block")(image_batch, 2)
    out = GradCAM(model, "net.block")(image_batch, 2)
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_ambiguous_mapping_output_needs_an_adapter(image_batch):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = SmallCNN()

        def forward(self, x):
            y = self.net(x)
            return {"a": y, "b": y}

    model = Two().eval()
    with pytest.raises(ModelOutputError, match="output_adapter"):
        GradCAM(model, "net.block")(image_batch)
    out = GradCAM(model, "net.block", output_adapter=lambda o: o["b"])(image_batch)
    assert out.shape == (4, 16, 16)


def test_default_output_adapter_rejects_unknown():
    with pytest.raises(ModelOutputError, match="output_adapter"):
        default_output_adapter("not a tensor")


def test_layer_that_never_runs(image_batch):
    model = SmallCNN().eval()
    model.unused = nn.Conv2d(3, 3, 1)
    with pytest.raises(LayerNotRunError, match=r"unused.*never ran"):
        GradCAM(model, "unused")(image_batch)


def test_layer_returning_a_tuple_is_explained_at_its_first_tensor(image_batch):
    """HuggingFace layers return (hidden_states, attention_weights): the first tensor is the map,
    the rest passes through; the result equals explaining a layer that returns that tensor alone."""
    Pair = namedtuple("Pair", "hidden extra")

    class TupleLayer(nn.Module):
        def __init__(self, kind):
            super().__init__()
            self.conv, self.kind = nn.Conv2d(3, 6, 3, padding=1), kind

        def forward(self, x):
            y = self.conv(x)
            if self.kind == "tuple":
                return None, y, "note"  # the first *tensor* is the map
            return Pair(y, torch.zeros(1)) if self.kind == "named" else [y, y.sum()]

    class M(nn.Module):
        def __init__(self, kind):
            super().__init__()
            self.t = TupleLayer(kind)
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            out = self.t(x)
            y = out[1] if self.t.kind == "tuple" else out[0]
            assert self.t.kind != "named" or isinstance(out, Pair)  # the container type is kept
            return self.head(torch.relu(y).mean(dim=(2, 3)))

    torch.manual_seed(0)
    models = {kind: M(kind).eval() for kind in ("tuple", "named", "list")}
    for kind in ("named", "list"):
        models[kind].load_state_dict(models["tuple"].state_dict())
    targets = [ClassifierOutputTarget(2)] * image_batch.shape[0]
    ref = GradCAM(models["tuple"], "t.conv")(image_batch, targets=targets)
    for kind, model in models.items():
        np.testing.assert_allclose(GradCAM(model, "t")(image_batch, targets=targets), ref, atol=1e-6)
        ablated = AblationCAM(model, "t", progress=False)(image_batch, targets=targets)  # full-model path
        np.testing.assert_allclose(
            ablated, AblationCAM(models["tuple"], "t.conv", progress=False)(image_batch, targets=targets), atol=1e-5
        )


def test_layer_returning_no_tensor(image_batch):
    class NoTensor(nn.Module):
        def forward(self, x):
            return ("a", None)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.t = NoTensor()
            self.net = SmallCNN()

        def forward(self, x):
            self.t(x)
            return self.net(x)

    with pytest.raises(LayerOutputError, match="returned a tuple holding no tensor"):
        GradCAM(M().eval(), "t")(image_batch)


def test_token_output_without_reshape_explains_the_fix():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(3, 5)
            self.head = nn.Linear(5, 2)

        def forward(self, x):
            t = self.proj(x.flatten(2).transpose(1, 2))  # (N, HW, 5)
            return self.head(t.mean(1))

    with pytest.raises(LayerOutputError, match="reshape_transform"):
        GradCAM(Tokens(), "proj")(torch.randn(1, 3, 4, 4))
    out = GradCAM(Tokens(), "proj", reshape_transform=lambda t: t.transpose(1, 2).reshape(t.shape[0], 5, 4, 4))(
        torch.randn(1, 3, 4, 4)
    )
    assert out.shape == (1, 4, 4)


def test_layer_that_does_not_influence_the_output_warns(image_batch):
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = SmallCNN()
            self.side = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            self.side(x)  # computed, never used
            return self.net(x)

    with pytest.warns(CamLensWarning, match="does not depend on layer 'side'"):
        out = GradCAM(Branchy().eval(), "side")(image_batch)
    assert (out == 0).all()


def test_shared_module_captures_its_last_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            return self.fc(self.conv(self.conv(x)).mean((2, 3)))

    model = Twice().eval()
    x = torch.randn(1, 2, 3, 3)
    exp = HiResCAM(model, "conv").explain(x, target_category=0)
    a2 = model.conv(model.conv(x)).detach()
    grad = model.fc.weight[0].detach()[None, :, None, None] / 9
    torch.testing.assert_close(exp.layer_maps[0], (a2 * grad).sum(1))


def test_input_is_moved_to_model_dtype(small_cnn):
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    out = GradCAM(small_cnn, "block")(x)
    assert out.dtype == np.float32


def test_no_warnings_on_a_normal_call(small_cnn, image_batch):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GradCAM(small_cnn, "block")(image_batch)
