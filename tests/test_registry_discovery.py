"""A method is one file: dropping a module into ``camlens/methods/`` is enough for the registry, the
top-level exports, the CLI's ``--method`` and the contract suite to pick it up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import camlens
from camlens.methods import __path__ as METHODS_PATH

REPO = Path(__file__).resolve().parents[1]

THROWAWAY = '''
"""A throwaway method for the discovery test: weights = spatial max of the gradients."""
from camlens.registry import register
from camlens.methods.base import GradientCAM


@register("throwawaycam", "throw-away")
class ThrowawayCAM(GradientCAM):
    """w_k = max_ij dy/dA_k[i, j]."""

    summary = "discovery-test method"

    def cam_weights(self, ctx):
        return ctx.gradients.amax(dim=(2, 3), keepdim=True)
'''


def test_every_module_in_methods_registers_a_method():
    modules = sorted(p.stem for p in Path(METHODS_PATH[0]).glob("*.py") if not p.stem.startswith("_") and p.stem != "base")
    owners = {cls.__module__.rsplit(".", 1)[-1] for cls in camlens.registry.registered_classes()}
    assert set(modules) <= owners, f"modules that register nothing: {sorted(set(modules) - owners)}"
    for cls in camlens.registry.registered_classes():
        assert getattr(camlens, cls.__name__) is cls
        assert cls.__name__ in camlens.__all__


def test_a_new_file_is_all_it_takes(tmp_path):
    pkg = tmp_path / "src"
    shutil.copytree(REPO / "src" / "camlens", pkg / "camlens", ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "camlens" / "methods" / "throwaway.py").write_text(THROWAWAY)
    env = {**os.environ, "PYTHONPATH": str(pkg), "OMP_NUM_THREADS": "1"}
    probe = (
        "import camlens; from camlens.app.cli import main; "
        "assert camlens.ThrowawayCAM is camlens.get_method('throw-away'); "
        "assert 'ThrowawayCAM' in camlens.__all__; "
        "from camlens.app.cli import _resolve_methods; "
        "assert _resolve_methods(['throwawaycam']) == [camlens.ThrowawayCAM]; "
        "assert camlens.ThrowawayCAM in _resolve_methods(['all']); "
        "assert main(['methods']) == 0"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "throwawaycam" in out.stdout and "discovery-test method" in out.stdout
    # The contract suite parametrises over the registry, so it runs the new method with no edit.
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" / "test_contract.py"),
         "-k", "throwawaycam", "--rootdir", str(REPO)],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-3000:]
    passed = int(out.stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed >= 5, out.stdout[-2000:]
