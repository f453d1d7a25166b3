"""One-command device check (issue #20): the CUDA tests plus a GPU benchmark, one report.

Usage, from a plain checkout with the machine's own Python (no venv, no downloads)::

    PYTHONPATH=src python3 scripts/gpu_check.py OUTDIR          # or: make gpu-check OUT=OUTDIR

Writes ``OUTDIR/gpu-check.txt`` (for people; its table can go into the README as is) and
``OUTDIR/gpu-check.json`` (the same figures for tools). Exit status 0 when no test failed.

1. ``pytest -m cuda tests/test_cuda.py``: every registered method on CUDA against the CPU, host
   copies, memory bounds, the aug_smooth out-of-memory fallback, the metrics, ``camlens run``.
2. Benchmark: GradCAM, ScoreCAM, AblationCAM and FullGrad (when registered) on resnet50 with
   random weights at 224x224, batch 1, 8 and 64: seconds, ratio to a plain forward at the same
   batch, images per second and peak memory above the model's own (CUDA).

Sized for a short GPU loan: under 8 minutes on one H100/H200-class GPU (the tests are capped at
``GPU_CHECK_TEST_TIMEOUT`` s, default 300; the benchmark skips what would not fit its budget,
``GPU_CHECK_BENCH_BUDGET`` s, default 240, and says so). Without CUDA it runs the same way: the
tests skip, and the benchmark gives CPU fallback figures at reduced sizes (resnet18, 64x64,
batch 1 and 4) in well under 3 minutes, so the script is known to work before GPU time is spent.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

try:
    import torch
except ImportError:  # pragma: no cover - the machine's Python must bring torch
    sys.exit(f"gpu_check: {sys.executable} has no torch; run it with a Python that has torch (make gpu-check PYTHON=...)")

METHODS = ("gradcam", "scorecam", "ablationcam", "fullgrad")


# ---------------------------------------------------------------------- environment
def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cpu_threads": torch.get_num_threads(),
    }
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:
        env["torchvision"] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(
            device=torch.cuda.get_device_name(0),
            device_count=torch.cuda.device_count(),
            capability=".".join(map(str, torch.cuda.get_device_capability(0))),
            memory_gib=round(props.total_memory / 2**30, 1),
            cuda_runtime=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
            nccl=torch.distributed.is_available() and torch.distributed.is_nccl_available(),
        )
    else:
        env["device"] = f"cpu ({platform.processor() or platform.machine()})"
    return env


# ---------------------------------------------------------------------- tests
def run_tests(timeout: float) -> dict[str, Any]:
    """``pytest -m cuda tests/test_cuda.py`` in a subprocess; counts, failures, skip reasons."""
    result: dict[str, Any] = {"command": "pytest -m cuda tests/test_cuda.py"}
    try:
        import pytest  # noqa: F401
    except ImportError:
        result["error"] = "pytest is not installed for this Python: tests not run"
        return result
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [
            sys.executable, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-q", "-rs",
            "-p", "no:cacheprovider", f"--junitxml={xml}",
        ]  # fmt: skip
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
            result["returncode"] = proc.returncode
            output = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            result["returncode"] = None
            result["error"] = f"timed out after {timeout:.0f} s"
            output = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        result["seconds"] = round(time.perf_counter() - t0, 1)
        result["output_tail"] = output[-4000:]
        if xml.exists():
            result.update(_parse_junit(xml))
    if "names" in result:  # issue #20: at least one CUDA test per registered method
        from camlens import available_methods

        result["methods_without_cuda_test"] = [m for m in available_methods() if not any(f"[{m}]" in n for n in result["names"])]
    return result


def _parse_junit(path: Path) -> dict[str, Any]:
    root = ET.parse(path).getroot()
    cases = list(root.iter("testcase"))
    failed, skipped, passed = [], {}, 0
    for case in cases:
        name = case.get("name", "?")
        if case.find("failure") is not None or case.find("error") is not None:
            node = case.find("failure") if case.find("failure") is not None else case.find("error")
            failed.append({"test": name, "message": (node.get("message") or "")[:500]})
        elif case.find("skipped") is not None:
            reason = (case.find("skipped").get("message") or "").removeprefix("Skipped: ")
            skipped.setdefault(reason, []).append(name)
        else:
            passed += 1
    return {
        "names": [case.get("name", "?") for case in cases],
        "collected": len(cases),
        "passed": passed,
        "failed": len(failed),
        "skipped": sum(len(v) for v in skipped.values()),
        "failures": failed,
        "skip_reasons": {reason: len(names) for reason, names in skipped.items()},
    }


# ---------------------------------------------------------------------- benchmark
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(fn: Callable[[], object], device: torch.device, reps: int) -> tuple[float, float | None]:
    """``(seconds, peak MiB)``: best of ``1 + reps`` calls (one call only when it takes over 2 s);
    peak memory above what was allocated before the first call (CUDA only, else ``None``)."""
    _sync(device)
    if device.type == "cuda":
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    best = time.perf_counter() - t0
    peak = None
    if device.type == "cuda":
        peak = round((torch.cuda.max_memory_allocated(device) - before) / 2**20, 1)
    if best > 2.0:
        return best, peak
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, peak


def run_benchmark(budget: float) -> dict[str, Any]:
    from camlens import available_methods, get_method
    from camlens.targets import ClassifierOutputTarget

    try:
        import torchvision
    except ImportError:
        return {"error": "torchvision is not installed: benchmark skipped"}
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        arch, size, batches, chunk = "resnet50", 224, (1, 8, 64), 256
    else:
        arch, size, batches, chunk = "resnet18", 64, (1, 4), 64
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None).eval().to(device)
    registered = set(available_methods())
    methods = [m for m in METHODS if m in registered]
    notes = [f"{m}: not registered in this checkout, skipped" for m in METHODS if m not in registered]
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    last_time: dict[str, float] = {}
    for batch in batches:
        x = torch.randn(batch, 3, size, size, device=device)
        targets = [ClassifierOutputTarget(281)] * batch

        def forward() -> None:
            with torch.no_grad():
                model(x)

        forward()  # warm-up: cuDNN algorithm choice, allocator
        t_fwd, peak = _measure(forward, device, reps=5)
        rows.append(_row("forward", batch, t_fwd, t_fwd, peak))
        for name in methods:
            previous = last_time.get(name)
            if previous is not None:
                expected = previous * batch / max(1, batches[batches.index(batch) - 1])
                left = budget - (time.perf_counter() - start)
                if expected > left:
                    notes.append(f"{name} at batch {batch}: skipped, ~{expected:.0f} s expected, {left:.0f} s of budget left")
                    continue
            cls = get_method(name)
            kwargs: dict[str, Any] = {"progress": False, "batch_size": chunk}
            layers = None if name == "fullgrad" else [model.layer4[-1]]
            cam = cls(model, target_layers=layers, **kwargs) if layers is not None else cls(model, **kwargs)
            t, peak = _measure(lambda: cam.explain(x, targets), device, reps=3)
            last_time[name] = t
            rows.append(_row(name, batch, t, t_fwd, peak))
    return {
        "device": str(device),
        "model": f"{arch} (random weights), {size}x{size}, layer4[-1] (FullGrad: all bias layers)",
        "perturbation_chunk": chunk,
        "rows": rows,
        "notes": notes,
        "seconds": round(time.perf_counter() - start, 1),
    }


def _row(method: str, batch: int, seconds: float, forward: float, peak: float | None) -> dict[str, Any]:
    return {
        "method": method,
        "batch": batch,
        "seconds": round(seconds, 5),
        "ratio_to_forward": round(seconds / forward, 2),
        "images_per_s": round(batch / seconds, 1),
        "peak_mib": peak,
    }


# ---------------------------------------------------------------------- report
def render(report: dict[str, Any]) -> str:
    env, tests, bench = report["environment"], report["tests"], report["benchmark"]
    lines = [
        f"camlens gpu-check, {env['date_utc']}",
        f"device: {env.get('device')}" + (f", {env.get('memory_gib')} GiB, CUDA {env.get('cuda_runtime')}, cuDNN {env.get('cudnn')}" if env["cuda_available"] else " (no CUDA: GPU parts skipped, CPU fallback figures at reduced sizes)"),
        f"torch {env['torch']}, torchvision {env.get('torchvision')}, python {env['python']}",
        "",
        f"== CUDA tests ({tests.get('command')}) ==",
    ]
    if "collected" in tests:
        lines.append(
            f"collected {tests['collected']}: {tests['passed']} passed, {tests['failed']} failed, "
            f"{tests['skipped']} skipped in {tests.get('seconds')} s"
        )
        lines += [f"FAILED {f['test']}: {f['message']}" for f in tests["failures"]]
        if tests.get("methods_without_cuda_test"):
            lines.append(f"registered methods without a CUDA test: {', '.join(tests['methods_without_cuda_test'])}")
        lines += [f"skipped x{n}: {reason}" for reason, n in tests["skip_reasons"].items()]
    if "error" in tests:
        lines.append(f"ERROR: {tests['error']}")
    lines += ["", f"== benchmark: {bench.get('model', '')} on {bench.get('device', '')} =="]
    if "error" in bench:
        lines.append(f"ERROR: {bench['error']}")
    else:
        lines.append("| method | batch | seconds | / forward | images/s | peak MiB |")
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for r in bench["rows"]:
            peak = "" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
            lines.append(
                f"| {r['method']} | {r['batch']} | {r['seconds']:.4f} | {r['ratio_to_forward']:.2f} | {r['images_per_s']:.1f} | {peak} |"
            )
        lines += [f"note: {n}" for n in bench.get("notes", [])]
    lines += ["", f"total {report['seconds']} s"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: PYTHONPATH=src python3 scripts/gpu_check.py OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report: dict[str, Any] = {"environment": environment()}
    print(f"gpu-check: device {report['environment']['device']}; running the CUDA tests ...", flush=True)
    report["tests"] = run_tests(float(os.environ.get("GPU_CHECK_TEST_TIMEOUT", "300")))
    print("gpu-check: benchmark ...", flush=True)
    try:
        report["benchmark"] = run_benchmark(float(os.environ.get("GPU_CHECK_BENCH_BUDGET", "240")))
    except Exception as exc:  # noqa: BLE001 - the report must still be written
        report["benchmark"] = {"error": f"{type(exc).__name__}: {exc}"}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    text = render(report)
    for name, content in (("gpu-check.json", json.dumps(report, indent=2)), ("gpu-check.txt", text)):
        tmp = out / f".{name}.tmp"
        tmp.write_text(content)
        tmp.replace(out / name)
    print(text, end="")
    print(f"gpu-check: report in {out / 'gpu-check.txt'} and {out / 'gpu-check.json'}")
    ok = report["tests"].get("failed", 0) == 0 and "error" not in report["tests"] and "error" not in report["benchmark"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
