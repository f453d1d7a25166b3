"""Automatic target-layer choice: family detection (also wrapped/subclassed), the generic probe
rule, model hygiene during the probe, CAM integration and the zero-gradient warning."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from camlens import CamLensWarning, EigenCAM, GradCAM
from camlens.errors import LayerNotFoundError
from camlens.layers import FAMILIES, auto_target_layers, detect_family, generic_target_layer
from camlens.reshape import TokenReshape

tv = pytest.importorskip("torchvision")


def _module_output(model: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    module = dict(model.named_modules())[name]
    store: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, a, o: store.append(o.detach().clone()))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
    return store[-1]


# ---------------------------------------------------------------------- generic rule on toy nets
class SideBranchNet(nn.Module):
    """``late`` runs last and returns a spatial map, but the output never uses it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1))
        self.act = nn.ReLU()
        self.late = nn.Conv2d(6, 2, 1)
        self.fc = nn.Linear(6, 3)
        self.unused_output: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.body(x))
        self.unused_output = self.late(a)  # computed, never reaches the output
        return self.fc(a.mean(dim=(2, 3)))


def test_generic_rule_skips_maps_that_do_not_influence_the_output():
    model = SideBranchNet()
    name, module, shape, probe = generic_target_layer(model)
    assert name == "act" and module is model.act
    assert shape == (1, 6, 112, 112) and probe == (1, 3, 224, 224)


class SharedActNet(nn.Module):
    """The same ReLU module is called twice: it is ambiguous as a target and skipped."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.relu = nn.ReLU()
        self.post = nn.Identity()  # Identity is skipped too: it adds nothing to the previous module
        self.fc = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv2(self.relu(self.conv1(x))))
        return self.fc(self.post(x).amax(dim=(2, 3)))


def test_generic_rule_skips_shared_modules_and_identity():
    choice = auto_target_layers(SharedActNet())
    assert choice.names == ["conv2"] and choice.family == "generic" and choice.reshape_transform is None
    assert choice.description.startswith("generic: conv2 (Conv2d; the last module whose spatial map influences the output")


class CifarNet(nn.Module):
    """LeNet-style: the flatten -> Linear only accepts 32x32 single-channel inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 5 * 5, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def test_generic_rule_finds_an_accepted_input_size_and_channels():
    model = CifarNet()
    name, _, shape, probe = generic_target_layer(model)
    assert probe == (1, 1, 32, 32)  # 224 was rejected by the Linear; channels from the first conv
    assert name == "pool" and shape == (1, 16, 5, 5)  # the last spatial map on the path
    cam = GradCAM(model)
    assert cam.target_layer_names == ["pool"]
    maps = cam(torch.randn(2, 1, 32, 32))
    assert maps.shape == (2, 32, 32)


def test_generic_rule_uses_example_input():
    model = CifarNet()
    name, _, _, probe = generic_target_layer(model, example_input=torch.randn(4, 1, 32, 32))
    assert name == "pool" and probe == (1, 1, 32, 32)
    assert auto_target_layers(model, example_input=torch.randn(1, 1, 32, 32)).names == ["pool"]


def test_generic_rule_errors_say_how_to_fix():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 224 * 224, 2))
    with pytest.raises(LayerNotFoundError, match=r"no module returns a spatial \(N, C, h, w\) map .*pass target_layers="):
        auto_target_layers(mlp)
    picky = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 5 * 7, 2))  # only 7x9 inputs
    with pytest.raises(LayerNotFoundError, match=r"probe forward pass failed for every tried input size .*pass target_layers="):
        GradCAM(picky)
    assert auto_target_layers(picky, example_input=torch.randn(1, 3, 7, 9)).names == ["0"]
    with pytest.raises(LayerNotFoundError, match="needs an nn.Module"):
        auto_target_layers("resnet18")  # type: ignore[arg-type]


def test_probe_leaves_the_model_untouched():
    model = tv.models.resnet18(num_classes=4)
    model.train()
    model.layer2.eval()
    for p in model.layer1.parameters():
        p.requires_grad_(False)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    stats = model.bn1.running_mean.clone()
    flags = {n: m.training for n, m in model.named_modules()}
    req = {n: p.requires_grad for n, p in model.named_parameters()}
    with torch.inference_mode():  # a probe must work whatever the caller's grad mode
        name, *_ = generic_target_layer(model)
    assert name == "layer4"
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert {n: p.requires_grad for n, p in model.named_parameters()} == req
    assert torch.equal(model.fc.weight.grad, torch.ones_like(model.fc.weight))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "fc.weight")
    assert torch.equal(model.bn1.running_mean, stats)
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


@pytest.mark.parametrize(
    "builder,family_layer",
    [("resnet18", "layer4.1"), ("mobilenet_v2", "features.18"), ("efficientnet_b0", "features.8"), ("googlenet", "inception5b")],
)
def test_generic_rule_agrees_with_the_table_on_known_cnns(builder, family_layer):
    """On CNNs the generic rule lands on the same tensor the table names (maybe via its container)."""
    torch.manual_seed(0)
    model = tv.models.get_model(builder, weights=None, num_classes=5).eval()
    assert auto_target_layers(model).names == [family_layer]
    x = torch.randn(1, 3, 64, 64)
    name, *_ = generic_target_layer(model, example_input=x)
    torch.testing.assert_close(_module_output(model, name, x), _module_output(model, family_layer, x))


# ---------------------------------------------------------------------- families: detection robustness
def test_wrapped_backbone_is_found_with_its_prefix():
    net = tv.models.resnet18(num_classes=3)
    wrapped = nn.Sequential(nn.BatchNorm2d(3), net)
    choice = auto_target_layers(wrapped)
    assert choice.names == ["1.layer4.1"] and choice.layers[0][1] is net.layer4[1]
    assert "(found at '1', a ResNet)" in choice.description

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = tv.models.densenet121(num_classes=3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.backbone(x)

    assert auto_target_layers(Holder()).names == ["backbone.features.norm5"]


def test_subclass_and_structural_copy_are_recognised():
    class MyVGG(tv.models.VGG):
        pass

    model = MyVGG(tv.models.vgg.make_layers([8, "M", 16, "M"]), num_classes=3)
    assert auto_target_layers(model).names == ["features.4"]  # ReLU before the last max pool
    assert auto_target_layers(model).family == "VGG / AlexNet"

    class NotAResNet(nn.Module):  # unknown class name, ResNet layout
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3)
            self.layer1, self.layer2, self.layer3 = (nn.Sequential(nn.Conv2d(4, 4, 1)) for _ in range(3))
            self.layer4 = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 8, 1))
            self.fc = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
            return self.fc(x.mean(dim=(2, 3)))

    model2 = NotAResNet()
    choice = auto_target_layers(model2)
    assert choice.names == ["layer4.1"] and choice.family == "ResNet / ResNeXt / WideResNet"


def test_every_torchvision_classifier_belongs_to_a_documented_family():
    listed = {e for f in FAMILIES for e in f.examples}
    builders = set(tv.models.list_models(module=tv.models))
    assert builders <= listed, sorted(builders - listed)
    with open(__file__.replace("tests/test_layers.py", "docs/architectures.md"), encoding="utf-8") as fh:
        doc = fh.read()
    for family in FAMILIES:
        assert family.name in doc, family.name


def test_huggingface_families_are_documented():
    from camlens.layers import HF_FAMILIES

    doc = (Path(__file__).resolve().parents[1] / "docs" / "architectures.md").read_text(encoding="utf-8")
    for family in HF_FAMILIES:
        assert family.name in doc, family.name
        assert all(example in doc for example in family.examples), family.name


def test_detect_family_none_for_unknown_model():
    assert detect_family(SharedActNet()) is None


# ---------------------------------------------------------------------- CAM integration
def test_cam_records_and_logs_the_automatic_choice(caplog):
    model = tv.models.resnet18(num_classes=3)
    with caplog.at_level(logging.INFO, logger="camlens"):
        cam = GradCAM(model)
    assert cam.target_layer_names == ["layer4.1"]
    assert cam.auto_layer_description == "ResNet / ResNeXt / WideResNet: layer4.1 (last residual block)"
    assert any("layer4.1 (last residual block)" in r.getMessage() for r in caplog.records)
    assert GradCAM(model, "layer3").auto_layer_description is None  # explicit layers: nothing automatic


def test_automatic_choice_equals_explicit_choice():
    torch.manual_seed(0)
    model = tv.models.mobilenet_v3_small(num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    auto = GradCAM(model).explain(x, target_category=[0, 3])
    manual = GradCAM(model, model.features[-1]).explain(x, target_category=[0, 3])
    torch.testing.assert_close(auto.cam, manual.cam, rtol=0, atol=0)


def test_user_reshape_overrides_the_automatic_one():
    timm = pytest.importorskip("timm")
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, num_classes=3)
    calls = []

    def reshape(t: torch.Tensor) -> torch.Tensor:
        calls.append(t.shape)
        return TokenReshape(grid=2)(t)

    cam = GradCAM(vit, reshape_transform=reshape)
    assert cam.reshape_transform is reshape and cam.target_layer_names == ["blocks.1.norm1"]
    cam(torch.randn(1, 3, 32, 32))
    assert calls == [(1, 5, 192), (1, 5, 192)]  # activations and gradients


# ---------------------------------------------------------------------- zero gradients are explained
def _small_timm_vit():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, num_classes=3).eval()


def test_last_vit_block_output_warns_that_the_map_is_blank():
    vit = _small_timm_vit()
    x = torch.randn(2, 3, 32, 32)
    cam = GradCAM(vit, "blocks[-1]", reshape_transform=TokenReshape.from_model(vit))
    with pytest.warns(CamLensWarning, match=r"does not depend on the spatial map of layer 'blocks.1' \(after reshape_transform\) for image\(s\) \[0, 1\].*blocks\[-1\].norm1"):
        exp = cam.explain(x)
    assert exp.layer_maps[0].abs().max() == 0  # truly blank: the warning is not a false alarm


def test_torchvision_vit_last_block_warns_and_default_does_not():
    torch.manual_seed(0)
    vit = tv.models.VisionTransformer(image_size=32, patch_size=16, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=8, num_classes=3)
    nn.init.normal_(vit.heads.head.weight)  # torchvision zero-initialises the head
    x = torch.randn(1, 3, 32, 32)
    reshape = TokenReshape.from_model(vit)
    with pytest.warns(CamLensWarning, match="encoder.layers\\[-1\\].ln_1"):
        GradCAM(vit, "encoder.layers[-1]", reshape_transform=reshape)(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CamLensWarning)
        cam = GradCAM(vit)
        out = cam.explain(x)
    assert cam.target_layer_names == ["encoder.layers.encoder_layer_1.ln_1"]
    assert out.layer_maps[0].shape == (1, 2, 2) and out.layer_maps[0].std() > 0


def test_default_vit_layer_has_gradients_and_no_warning():
    vit = _small_timm_vit()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CamLensWarning)
        exp = GradCAM(vit).explain(torch.randn(2, 3, 32, 32))
        EigenCAM(vit)(torch.randn(1, 3, 32, 32))
    assert exp.layer_maps[0].shape == (2, 2, 2) and bool((exp.layer_maps[0].flatten(1).std(dim=1) > 0).all())


def test_no_double_warning_when_raw_gradients_are_zero():
    """All-zero raw gradients are reported once (by the engine), not again after the reshape."""
    vit = _small_timm_vit()
    nn.init.zeros_(vit.head.weight)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GradCAM(vit)(torch.randn(1, 3, 32, 32))
    ours = [w for w in caught if issubclass(w.category, CamLensWarning)]
    assert len(ours) == 1 and "exactly zero" in str(ours[0].message)
