"""CUDA tests (marker ``cuda``; issue #20). Part of the normal suite: without a CUDA device every
test here is skipped with the reason; ``pytest -m cuda`` (or ``make gpu-check``) runs only these.

Parametrised over the registry, so a newly registered method is covered without an edit here
(per-method settings come from ``tests/contract_setup.py``, like the contract suite):

* every method on ``cuda`` gives the CPU maps within ``MAP_ATOL`` (TF32 off for the comparison),
  and ``explain()`` returns tensors on the model's device;
* gradient family: no device-to-host copies in the core path, counted with
  ``torch.cuda.set_sync_debug_mode("warn")``;
* ScoreCAM / AblationCAM: peak GPU memory bounded by ``batch_size``;
* ``aug_smooth``: its out-of-memory fallback, under a real memory cap;
* one test per metric family (confidence, deletion/insertion, ROAD, localisation, sanity): the
  batched code on the GPU equals the CPU result;
* ``camlens run`` as two processes on one GPU (skipped until ``camlens.app.runs`` exists).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import linecache
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from camlens import available_methods, get_method
from camlens.methods.base import GradientCAM
from camlens.targets import ClassifierOutputTarget
from contract_setup import settings
from testnets import SmallCNN

HAVE_CUDA = torch.cuda.is_available()
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not HAVE_CUDA,
        reason="needs a CUDA device: torch.cuda.is_available() is False on this machine "
        "(run `make gpu-check` where a GPU is present)",
    ),
]

MAP_ATOL = 1e-4
"""Largest allowed |map_cuda - map_cpu| on the [0, 1] maps, with TF32 disabled for the comparison
(float32 kernels differ between devices only in summation order)."""
METRIC_ATOL = 1e-3
"""Largest allowed difference of metric values (scores in [0, 1]) between CUDA and CPU."""

METHODS = available_methods()
GRADIENT_METHODS = [m for m in METHODS if issubclass(get_method(m), GradientCAM)]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_tf32():
    """Full float32 on the GPU for comparisons with the CPU; the previous flags are restored."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _make_cam(name: str, model: nn.Module, **extra):
    cfg = settings(name)
    layers = cfg["layers"](model) if "layers" in cfg else [model.block]
    kwargs = {"progress": False, **cfg.get("kwargs", {}), **extra}
    return get_method(name)(model, target_layers=layers, **kwargs)


def _inputs(n: int = 4, size: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(2))


# ---------------------------------------------------------------- every method
@pytest.mark.parametrize("name", METHODS)
def test_method_on_cuda_matches_cpu_and_stays_on_device(name, no_tf32):
    skips = settings(name).get("skip", {})
    if "test_method_on_cuda_matches_cpu_and_stays_on_device" in skips:
        pytest.skip(f"{name}: {skips['test_method_on_cuda_matches_cpu_and_stays_on_device']}")
    x = _inputs()
    targets = [ClassifierOutputTarget(i % 6) for i in range(x.shape[0])]
    cpu = _make_cam(name, SmallCNN().eval()).explain(x, targets)
    model = SmallCNN().eval().cuda()
    gpu = _make_cam(name, model).explain(x.cuda(), targets)
    device = next(model.parameters()).device
    for what, t in [("cam", gpu.cam), ("scores", gpu.scores)] + [(f"layer_maps[{i}]", m) for i, m in enumerate(gpu.layer_maps)]:
        assert t.device == device, f"{name}: Explanation.{what} is on {t.device}, the model on {device}"
    assert gpu.cam.dtype == torch.float32
    if "test_deterministic" in skips:  # a random method: its cuda and cpu draws differ
        return
    err = (gpu.cam.cpu() - cpu.cam).abs().max().item()
    assert err <= MAP_ATOL, f"{name}: cuda map differs from the cpu map by {err:.2e} > {MAP_ATOL}"
    torch.testing.assert_close(gpu.scores.cpu(), cpu.scores, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- no host copies
def _sync_sites(fn) -> list[tuple[str, str]]:
    """``(file:line, source line)`` of every synchronising CUDA call (every device-to-host copy
    synchronises) made while ``fn`` runs, from ``torch.cuda.set_sync_debug_mode("warn")``."""
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return [
        (f"{Path(r.filename).name}:{r.lineno}", linecache.getline(r.filename, r.lineno).strip())
        for r in records
        if "synchroniz" in str(r.message)
    ]


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_family_core_path_makes_no_host_copies(name):
    """What may synchronise is fixed and small: the upload of the target class indices, the
    engine's one all-zero-gradient check per layer (a single bool) and torch.linalg
    decompositions (eigen methods; torch documents that they synchronise). Nothing else in the
    method's arithmetic or the post-processing, and nothing that grows with the batch."""
    model = SmallCNN().eval().cuda()
    cam = _make_cam(name, model)
    core_files = {"postprocess.py", "base.py", Path(inspect.getfile(get_method(name))).name}
    counts = {}
    for n in (1, 8):
        x = _inputs(n).cuda()
        targets = [ClassifierOutputTarget(i % 6) for i in range(n)]
        cam.explain(x, targets)  # warm-up: cuDNN/cuBLAS initialisation may synchronise once
        sites = _sync_sites(lambda: cam.explain(x, targets))
        in_core = [s for s in sites if s[0].split(":")[0] in core_files and "linalg." not in s[1]]
        assert not in_core, f"{name}: synchronising calls in the method or the post-processing: {in_core}"
        counts[n] = [s for s in sites if "linalg." not in s[1]]
    assert len(counts[8]) == len(counts[1]), f"{name}: synchronising calls grow with the batch: {counts}"
    assert len(counts[8]) <= 1 + len(cam.target_layers), f"{name}: unexpected synchronising calls: {counts[8]}"


# ---------------------------------------------------------------- memory bounded by batch_size
class WideNet(nn.Module):
    """64x64 maps with 32 channels: a forward's memory is easy to see next to the allocator's noise."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU())
        self.block = nn.Conv2d(32, 32, 3, padding=1)
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))


def _peak_bytes(fn) -> int:
    """Peak bytes allocated by ``fn`` above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


@pytest.mark.parametrize("name", ["scorecam", "ablationcam"])
def test_perturbation_peak_memory_is_bounded_by_batch_size(name):
    if name not in METHODS:
        pytest.skip(f"{name} is not registered")
    model = WideNet().eval().cuda()
    x = torch.randn(4, 3, 64, 64, device="cuda")  # 4 images x 32 channels = 128 perturbed inputs
    targets = [ClassifierOutputTarget(1)] * 4

    def forward(b: int):
        with torch.no_grad():
            model(x[:1].expand(b, -1, -1, -1).contiguous())

    peaks = {}
    for bs in (8, 32):
        cam = get_method(name)(model, target_layers=[model.block], batch_size=bs, progress=False)
        cam.explain(x, targets)  # warm-up
        peaks[bs] = _peak_bytes(lambda: cam.explain(x, targets))
        one_chunk = _peak_bytes(lambda: forward(bs))
        # Unbounded (all 128 perturbed inputs at once) would be >= 4x (bs=32) to 16x (bs=8) one chunk.
        assert peaks[bs] <= 3 * one_chunk + (8 << 20), (
            f"{name} batch_size={bs}: peak {peaks[bs] / 2**20:.1f} MiB vs one chunk's forward {one_chunk / 2**20:.1f} MiB"
        )
    assert peaks[8] < peaks[32], f"{name}: peak memory does not follow batch_size: {peaks}"


# ---------------------------------------------------------------- aug_smooth's OOM fallback
class BigMapNet(nn.Module):
    """Full-resolution 64-channel maps: one image at 256x256 holds 16 MiB per activation."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU())
        self.block = nn.Conv2d(64, 64, 3, padding=1)
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))


@contextlib.contextmanager
def _memory_cap(extra_bytes: int):
    """Cap this process's CUDA allocator at what it holds now plus ``extra_bytes`` (restored after)."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    fraction = min(1.0, (torch.cuda.memory_reserved() + extra_bytes) / total)
    torch.cuda.set_per_process_memory_fraction(fraction)
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()


def test_aug_smooth_falls_back_when_six_copies_do_not_fit(no_tf32):
    from camlens.engine import CamLensWarning

    model = BigMapNet().eval().cuda()
    x = torch.randn(2, 3, 256, 256, device="cuda")
    cam = get_method("gradcam")(model, target_layers=[model.block])
    targets = [ClassifierOutputTarget(3)] * 2
    reference = cam.explain(x, targets, aug_smooth=True).cam  # uncapped: the six copies in one batch
    one_copy = _peak_bytes(lambda: cam.explain(x, targets))
    with _memory_cap(3 * one_copy), warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        capped = cam.explain(x, targets, aug_smooth=True).cam
    fallback = [r for r in records if issubclass(r.category, CamLensWarning) and "did not fit in memory" in str(r.message)]
    assert fallback, f"the capped run did not take the out-of-memory fallback (one copy: {one_copy / 2**20:.0f} MiB)"
    torch.testing.assert_close(capped, reference, atol=MAP_ATOL, rtol=0)


# ---------------------------------------------------------------- metrics, one per family
def _metric_setup(device: str):
    model = SmallCNN().eval().to(device)
    x = _inputs(4, 16).to(device)
    maps = torch.rand(4, 16, 16, generator=torch.Generator().manual_seed(5)).to(device)  # no ties
    return model, x, maps


def _both(fn):
    cpu, gpu = fn("cpu"), fn("cuda")
    return cpu, gpu


def test_metric_confidence_on_cuda(no_tf32):
    from camlens.metrics import confidence_scores

    cpu, gpu = _both(lambda d: confidence_scores(*_metric_setup(d), targets=[1, 2, 3, 4]))
    assert gpu.full.device.type == "cuda" and gpu.explained.device.type == "cuda"
    torch.testing.assert_close(gpu.full.cpu(), cpu.full, atol=METRIC_ATOL, rtol=0)
    torch.testing.assert_close(gpu.explained.cpu(), cpu.explained, atol=METRIC_ATOL, rtol=0)


def test_metric_deletion_insertion_on_cuda(no_tf32):
    from camlens.metrics import deletion, insertion

    for fn in (deletion, insertion):
        cpu, gpu = _both(lambda d: fn(*_metric_setup(d), targets=[1, 2, 3, 4], steps=8, batch_size=16))
        assert gpu.curve.device.type == "cuda"
        torch.testing.assert_close(gpu.curve.cpu(), cpu.curve, atol=METRIC_ATOL, rtol=0)


def test_metric_road_batched_cg_solver_on_cuda(no_tf32):
    from camlens.metrics import noisy_linear_impute, road

    _, x, maps = _metric_setup("cuda")
    removed = maps > 0.7
    imputed = noisy_linear_impute(x, removed, noise=0.0, solver="cg")
    direct = noisy_linear_impute(x.cpu(), removed.cpu(), noise=0.0, solver="cg")
    assert imputed.device.type == "cuda"
    torch.testing.assert_close(imputed.cpu(), direct, atol=1e-4, rtol=0)
    cpu, gpu = _both(
        lambda d: road(*_metric_setup(d), targets=[1, 2, 3, 4], percentiles=[20, 50], noise=0.0, solver="cg")
    )
    torch.testing.assert_close(gpu.curve.cpu(), cpu.curve, atol=METRIC_ATOL, rtol=0)


def test_metric_localisation_on_cuda():
    from camlens.metrics import energy_pointing_game, pointing_game

    _, _, maps = _metric_setup("cuda")
    boxes = [[2, 2, 9, 9], [0, 0, 4, 4], [8, 8, 15, 15], [3, 5, 12, 14]]
    for fn, kw in ((pointing_game, {"tolerance": 2.0}), (energy_pointing_game, {})):
        gpu = fn(maps, boxes=boxes, **kw)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), fn(maps.cpu(), boxes=boxes, **kw), atol=1e-6, rtol=0)


def test_metric_sanity_randomisation_on_cuda(no_tf32):
    from camlens.metrics import cascading_randomisation

    def run(device: str):
        model, x, _ = _metric_setup(device)
        return cascading_randomisation(model, "gradcam", x, [1, 2, 3, 4], target_layers="block")

    cpu, gpu = _both(run)
    assert gpu.correlations.device.type == "cuda"
    torch.testing.assert_close(gpu.correlations.cpu(), cpu.correlations, atol=1e-3, rtol=0)


# ---------------------------------------------------------------- camlens run, two processes
def test_camlens_run_two_processes_on_one_gpu(tmp_path):
    """``torchrun --nproc-per-node 2 -m camlens run`` on one GPU (issue #14's command).

    The command picks the backend itself (NCCL on CUDA where available, as issue #14 says). Note
    that NCCL refuses two ranks on the *same* GPU for collectives, so on a one-GPU machine the
    run must either avoid collectives or fall back to gloo: this test shows which works.
    """
    if importlib.util.find_spec("camlens.app.runs") is None:
        pytest.skip("camlens.app.runs (the `camlens run` command, issue #14) is not in this checkout yet")
    pytest.importorskip("PIL")
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    gen = torch.Generator().manual_seed(0)
    for i in range(8):
        pixels = (torch.rand(48, 48, 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(data / f"img{i}.png")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "camlens", "run", str(data), "--model", "resnet18", "--weights", "none",
        "--method", "gradcam", "--device", "cuda", "-o", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"camlens run failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    runs = __import__("camlens.app.runs", fromlist=["open"])
    if hasattr(runs, "open"):
        table = runs.open(str(out)).table()
        assert len(table) == 8, f"expected one row per image (8), got {len(table)}"
