"""Models as deployed: compiled, wrapped (DataParallel / DDP / FSDP names), mixed precision;
notebook display; progress output by place (issue #18)."""

from __future__ import annotations

import base64
import copy
import io
import logging
import sys
import types

import pytest
import torch
from torch import nn

from camlens import GradCAM, ScoreCAM
from camlens.hooks import find_submodule, resolve_layers, unwrap_model
from camlens.layers import auto_target_layers
from testnets import SmallCNN

torchvision = pytest.importorskip("torchvision")


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="module")
def x32() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


# ---------------------------------------------------------------- torch.compile
# The first torch.compile() of a process imports dynamo (~5 s), so the tests on real compiled
# models are slow; the stand-in below (same class name and attribute) covers the name handling
# in the default run.
class OptimizedModule(nn.Module):
    """Stands in for torch.compile's wrapper: the class name and ``_orig_mod`` are what camlens uses."""

    def __init__(self, mod: nn.Module) -> None:
        super().__init__()
        self._orig_mod = mod

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - camlens must not call it
        raise AssertionError("the compiled graph ran")


def test_compiled_stand_in_names_auto_layer_and_eager_execution(resnet18, x32):
    wrapped = OptimizedModule(resnet18)
    expected = GradCAM(resnet18, "layer4").explain(x32, target_category=[1, 2]).cam
    for spec in ("layer4", "_orig_mod.layer4"):
        cam = GradCAM(wrapped, spec)
        assert cam.target_layer_names == ["layer4"] and cam.model is resnet18
        torch.testing.assert_close(cam.explain(x32, target_category=[1, 2]).cam, expected, atol=1e-6, rtol=0)
    assert GradCAM(wrapped).target_layer_names == ["layer4.1"]


@pytest.mark.slow
def test_compiled_model_dotted_name_and_auto_layer_match_eager(resnet18, x32):
    compiled = torch.compile(resnet18)
    eager_named = GradCAM(resnet18, "layer4").explain(x32, target_category=[1, 2]).cam
    eager_auto = GradCAM(resnet18).explain(x32, target_category=[1, 2]).cam
    cam_named = GradCAM(compiled, "layer4")
    cam_prefixed = GradCAM(compiled, "_orig_mod.layer4[-1]")
    cam_auto = GradCAM(compiled)
    assert cam_named.target_layer_names == ["layer4"]
    assert cam_prefixed.target_layer_names == ["layer4.1"]
    assert cam_auto.target_layer_names == ["layer4.1"]  # chosen on the original module, no prefix
    torch.testing.assert_close(cam_named.explain(x32, target_category=[1, 2]).cam, eager_named, atol=1e-5, rtol=0)
    torch.testing.assert_close(cam_auto.explain(x32, target_category=[1, 2]).cam, eager_auto, atol=1e-5, rtol=0)
    # A module taken from the compiled model (OptimizedModule forwards attribute access) works too.
    assert GradCAM(compiled, [compiled.layer4]).target_layers == [resnet18.layer4]


@pytest.mark.slow
def test_compiled_model_is_explained_through_its_eager_original(resnet18, x32):
    """No compilation happens: the explanation runs the original module (README "Compiled and wrapped")."""
    compiled = torch.compile(resnet18)
    cam = GradCAM(compiled, "layer4")
    assert cam.model is resnet18 and unwrap_model(compiled) is resnet18
    calls = []
    handle = compiled.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        cam.explain(x32)
    finally:
        handle.remove()
    assert calls == []  # the OptimizedModule's forward (the compiled graph) never ran


@pytest.mark.slow
def test_generic_automatic_layer_on_compiled_model_probes_the_original(image_batch):
    model = SmallCNN().eval()
    compiled = torch.compile(model)
    calls = []
    handle = compiled.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        choice = auto_target_layers(compiled)
        cam = GradCAM(compiled).explain(image_batch).cam
    finally:
        handle.remove()
    assert calls == [] and choice.family == "generic"
    assert choice.names == auto_target_layers(model).names and not choice.names[0].startswith("_orig_mod")
    torch.testing.assert_close(cam, GradCAM(model).explain(image_batch).cam, atol=1e-6, rtol=0)


def test_typo_on_compiled_model_suggests_names_without_prefix(resnet18):
    with pytest.raises(ValueError, match=r"'layer5' is not in ResNet; close matches: 'layer4'"):
        GradCAM(OptimizedModule(resnet18), "layer5")


# ---------------------------------------------------------------- DataParallel / DDP / FSDP
@pytest.mark.parametrize("spec", ["layer4", "module.layer4", "layer4[-1]", "module.layer4[-1]", None])
def test_data_parallel_names_with_and_without_module_prefix(resnet18, x32, spec):
    wrapped = nn.DataParallel(resnet18)  # on a CPU-only machine it simply calls the module
    layer = "layer4[-1]" if spec is None or spec.endswith("[-1]") else "layer4"
    expected = GradCAM(resnet18, layer).explain(x32, target_category=[3, 4]).cam
    cam = GradCAM(wrapped, spec)
    assert cam.target_layer_names == [layer.replace("[-1]", ".1")]
    torch.testing.assert_close(cam.explain(x32, target_category=[3, 4]).cam, expected, atol=1e-6, rtol=0)


def test_compiled_data_parallel_nesting_unwraps_both(resnet18):
    wrapped = OptimizedModule(nn.DataParallel(resnet18))
    assert unwrap_model(wrapped) is resnet18
    for name in ("layer3.0.conv1", "module.layer3.0.conv1", "_orig_mod.module.layer3.0.conv1"):
        assert find_submodule(wrapped, name) is resnet18.layer3[0].conv1
    assert auto_target_layers(wrapped).names == ["layer4.1"]


def test_ddp_model_is_explained_without_collectives(tmp_path, x32):
    """A DDP model runs its eager module: explaining works even after the process group is gone,
    so no rank can hang waiting for a collective the others never join."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build")
    model = SmallCNN().eval()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
    finally:
        dist.destroy_process_group()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    expected = GradCAM(model, "block").explain(x).cam
    for spec in ("block", "module.block"):
        torch.testing.assert_close(GradCAM(ddp, spec).explain(x).cam, expected, atol=1e-6, rtol=0)


class FullyShardedDataParallel(nn.Module):
    """Stands in for torch's FSDP wrapper (same class name and inner attribute), which needs a
    process group and sharded parameters: only its name handling is tested here."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self._fsdp_wrapped_module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fsdp_wrapped_module(x)


def test_fsdp_style_names_resolve_through_nested_wrappers():
    model = SmallCNN().eval()
    model.block = FullyShardedDataParallel(model.block)  # an inner unit wrapped too, as auto-wrap does
    wrapped = FullyShardedDataParallel(model)
    inner_block = model.block._fsdp_wrapped_module
    assert find_submodule(wrapped, "block") is model.block
    assert find_submodule(wrapped, "block[0]") is inner_block[0]
    assert find_submodule(wrapped, "_fsdp_wrapped_module.block") is model.block
    assert unwrap_model(wrapped) is wrapped  # FSDP is explained through its wrapper (sharded parameters)
    [(name, module)] = resolve_layers(wrapped, "block")
    assert module is model.block and name == "_fsdp_wrapped_module.block"
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    plain = SmallCNN().eval()
    torch.testing.assert_close(GradCAM(wrapped, "block").explain(x).cam, GradCAM(plain, "block").explain(x).cam)


# ---------------------------------------------------------------- mixed precision
# Documented in the README: maps are computed in float32 from the captured activations and
# gradients; what remains is the low-precision forward/backward itself.
BF16_TOLERANCE = 0.05  # max |map_bf16 - map_fp32| on [0, 1] maps (measured ~0.018 on resnet18)
FP16_TOLERANCE = 0.01  # measured ~1e-3


def test_autocast_bfloat16_within_documented_tolerance(resnet18, x32):
    ref = GradCAM(resnet18, "layer3").explain(x32, target_category=[1, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        exp = GradCAM(resnet18, "layer3").explain(x32, target_category=[1, 2])
    assert exp.cam.dtype == torch.float32 and exp.layer_maps[0].dtype == torch.float32
    assert exp.scores.dtype == torch.float32
    diff = (exp.cam - ref.cam).abs().max().item()
    assert 0 < diff <= BF16_TOLERANCE  # > 0: autocast really ran in bfloat16
    assert torch.corrcoef(torch.stack([exp.cam.flatten(), ref.cam.flatten()]))[0, 1] > 0.99


def test_float16_model_on_cpu(resnet18, x32):
    half = copy.deepcopy(resnet18).half()
    ref = GradCAM(resnet18, "layer3").explain(x32, target_category=[1, 2])
    try:
        exp = GradCAM(half, "layer3").explain(x32, target_category=[1, 2])
    except RuntimeError as exc:  # older torch: some CPU kernels lack float16; torch names the op
        assert "not implemented for 'Half'" in str(exc)
        return
    assert exp.cam.dtype == torch.float32 and exp.scores.dtype == torch.float32
    assert (exp.cam - ref.cam).abs().max().item() <= FP16_TOLERANCE
    assert next(half.parameters()).dtype == torch.float16  # the model is left as it was


# ---------------------------------------------------------------- notebooks
def _png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.size


def test_explanation_repr_png_and_html_are_valid_images(small_cnn, image_batch):
    pytest.importorskip("matplotlib")
    exp = GradCAM(small_cnn, ["stem", "block"]).explain(image_batch[:3])
    w, h = _png_size(exp._repr_png_())
    assert (w, h) == (3 * 160, 3 * 160)  # 3 images x (CAM, stem, block), 2-inch panels at 80 dpi
    html = exp._repr_html_()
    assert html.startswith("<figure><img src=\"data:image/png;base64,") and "stem, block" in html
    payload = html.split("base64,", 1)[1].split('"', 1)[0]
    assert _png_size(base64.b64decode(payload)) == (w, h)


def test_show_maps_one_column_per_map_and_one_row_per_image(small_cnn, image_batch):
    pytest.importorskip("matplotlib")
    from camlens.image import show_maps

    exp = GradCAM(small_cnn, "block").explain(image_batch)
    fig = show_maps(image_batch, {"gradcam": exp.cam, "again": exp.cam.numpy()}, max_images=3)
    axes = fig.get_axes()
    assert len(axes) == 3 * 3  # image + two map columns, three rows
    assert [a.get_title() for a in axes[:3]] == ["image", "gradcam", "again"]
    with pytest.raises(ValueError, match=r"images must be 4 images"):
        show_maps(image_batch[:2], exp)


# ---------------------------------------------------------------- progress output
def _scorecam(model: nn.Module, **kw) -> ScoreCAM:
    return ScoreCAM(model, "block", batch_size=4, **kw)  # 16 channels x 2 images: 8 steps


def test_progress_off_a_terminal_writes_no_carriage_returns_and_logs_one_line(small_cnn, image_batch, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="camlens"):
        _scorecam(small_cnn).explain(image_batch[:2])
    err = capsys.readouterr().err
    assert "\r" not in err and err == ""
    lines = [r.getMessage() for r in caplog.records if "ScoreCAM" in r.getMessage()]
    assert len(lines) == 1 and "8/8 steps" in lines[0]


def test_progress_false_and_silenced_show_nothing(small_cnn, image_batch, capsys, caplog):
    from camlens.progress import silenced

    with caplog.at_level(logging.INFO, logger="camlens"):
        _scorecam(small_cnn, progress=False).explain(image_batch[:2])
        with silenced():
            _scorecam(small_cnn).explain(image_batch[:2])
    assert capsys.readouterr().err == ""
    assert not [r for r in caplog.records if "steps in" in r.getMessage()]


def test_progress_bar_on_a_terminal_and_in_a_notebook(monkeypatch):
    pytest.importorskip("tqdm")
    from camlens.progress import progress_bar

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    bar = progress_bar(range(3), total=3, enabled=True, desc="t")
    from tqdm import tqdm as std_tqdm

    assert isinstance(bar, std_tqdm) and list(bar) == [0, 1, 2]

    made = []

    class NotebookBar(list):
        def __init__(self, iterable, **kwargs):
            super().__init__(iterable)
            made.append(kwargs)

    NotebookBar.__module__ = "tqdm.notebook"
    fake = types.ModuleType("tqdm.auto")
    fake.tqdm = type("tqdm", (NotebookBar,), {})
    monkeypatch.setitem(sys.modules, "tqdm.auto", fake)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a notebook's stderr is no terminal
    assert list(progress_bar(range(3), total=3, enabled=True, desc="nb")) == [0, 1, 2]
    assert made and made[0]["desc"] == "nb"


@pytest.mark.parametrize("argv", [["--quiet", "methods"], ["methods", "--quiet"]])
def test_cli_quiet_anywhere_silences_progress(monkeypatch, argv):
    from camlens.app import cli
    from camlens.progress import is_silenced

    seen = []
    monkeypatch.setattr(cli, "cmd_methods", lambda args: seen.append(is_silenced()) or 0)
    assert cli.main(argv) == 0
    assert seen == [True] and not is_silenced()


# ---------------------------------------------------------------- aug_smooth's out-of-memory fallback (CPU stand-in)
class _OOMAboveTwo(nn.Module):
    """Raises torch.OutOfMemoryError for batches over ``limit`` images (the six-copy batch), after
    allocating a tensor that stands for the partial batch's activations (watched by weakref)."""

    def __init__(self, limit: int = 2) -> None:
        super().__init__()
        self.limit = limit
        torch.manual_seed(0)
        self.block = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.failed: list = []
        self.alive_during_fallback: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import weakref

        partial = torch.empty(x.shape[0], 1000)
        if x.shape[0] > self.limit:
            self.failed.append(weakref.ref(partial))
            raise torch.OutOfMemoryError("stand-in for CUDA out of memory")
        self.alive_during_fallback += [r() is not None for r in self.failed]
        return self.fc(self.block(x).mean((2, 3)))


def test_aug_smooth_oom_fallback_gives_the_same_map():
    from camlens.engine import CamLensWarning

    model = _OOMAboveTwo().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(CamLensWarning, match="did not fit in memory together"):
        lean = GradCAM(model, "block").explain(x, target_category=[0, 1], aug_smooth=True).cam
    plain = _OOMAboveTwo(limit=100).eval()  # same weights, never raises
    full = GradCAM(plain, "block").explain(x, target_category=[0, 1], aug_smooth=True).cam
    torch.testing.assert_close(lean, full, atol=1e-6, rtol=0)


def test_aug_smooth_oom_fallback_frees_the_failed_batch_first():
    model = _OOMAboveTwo().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(Warning):
        GradCAM(model, "block").explain(x, target_category=[0, 1], aug_smooth=True)
    assert model.alive_during_fallback and not any(model.alive_during_fallback)
