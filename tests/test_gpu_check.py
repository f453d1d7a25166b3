"""scripts/gpu_check.py (``make gpu-check``): its report pieces here, the whole run on CPU as a slow test."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


JUNIT = """<?xml version="1.0"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_cuda" name="test_a[gradcam]"/>
<testcase classname="tests.test_cuda" name="test_a[scorecam]"><failure message="map differs by 3e-2"/></testcase>
<testcase classname="tests.test_cuda" name="test_b"><skipped message="Skipped: no runs module"/></testcase>
<testcase classname="tests.test_cuda" name="test_c"><skipped message="Skipped: no runs module"/></testcase>
</testsuite></testsuites>"""


def test_junit_counts_failures_and_skip_reasons(gpu_check, tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    got = gpu_check._parse_junit(path)
    assert (got["collected"], got["passed"], got["failed"], got["skipped"]) == (4, 1, 1, 2)
    assert got["failures"] == [{"test": "test_a[scorecam]", "message": "map differs by 3e-2"}]
    assert got["skip_reasons"] == {"no runs module": 2}


def test_report_text_has_the_device_failures_and_a_markdown_table(gpu_check):
    report = {
        "environment": {"date_utc": "2026-12-02 08:00 UTC", "device": "NVIDIA H200", "cuda_available": True,
                        "memory_gib": 139.8, "cuda_runtime": "13.0", "cudnn": 91000, "torch": "2.14.1",
                        "torchvision": "0.29.1", "python": "3.11"},
        "tests": {"command": "pytest -m cuda", "collected": 2, "passed": 1, "failed": 1, "skipped": 0, "seconds": 3.0,
                  "failures": [{"test": "test_x", "message": "boom"}], "skip_reasons": {}},
        "benchmark": {"model": "resnet50", "device": "cuda", "notes": ["fullgrad: not registered"],
                      "rows": [{"method": "gradcam", "batch": 8, "seconds": 0.01, "ratio_to_forward": 1.1,
                                "images_per_s": 800.0, "peak_mib": 512.3}]},
        "seconds": 99.0,
    }  # fmt: skip
    text = gpu_check.render(report)
    assert "device: NVIDIA H200, 139.8 GiB" in text
    assert "collected 2: 1 passed, 1 failed, 0 skipped" in text and "FAILED test_x: boom" in text
    assert "| gradcam | 8 | 0.0100 | 1.10 | 800.0 | 512 |" in text
    assert "note: fullgrad: not registered" in text


def test_usage_error_without_an_output_folder(gpu_check, capsys):
    assert gpu_check.main([]) == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.slow
def test_whole_check_runs_on_cpu_and_writes_text_and_json(tmp_path):
    """What `make gpu-check` does, here without CUDA (about a minute on 2 cores)."""
    proc = subprocess.run(
        [sys.executable, "scripts/gpu_check.py", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    text = (tmp_path / "gpu-check.txt").read_text()
    assert report["tests"]["collected"] >= 1 and report["tests"]["failed"] == 0
    methods = {r["method"] for r in report["benchmark"]["rows"]}
    assert {"forward", "gradcam", "scorecam", "ablationcam"} <= methods
    assert "| method | batch | seconds | / forward | images/s | peak MiB |" in text
