"""Explaining a ``torch.compile``'d model: through its eager original (what camlens does) or
through the compiled graph (hooks traced by dynamo), as ratios to a plain eager forward.

resnet18 with random weights, 64x64 inputs, batch 8, CPU, default inductor backend. The first
call through the compiled graph pays for a (re)compilation with the capture hooks in place; it
is reported in seconds, next to the steady state. Both paths give the same map (checked here).
A graph compiled *before* the capture hooks were added is reused with the hooks silently
skipped (dynamo does not guard on hooks): the reason camlens explains the eager original.
``BENCH_WRAPPED=0`` skips this benchmark (it compiles, ~1 min on 2 CPU cores).
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
from common import interleaved_medians, print_table  # noqa: E402

from camlens import GradCAM  # noqa: E402
from camlens.engine import Engine  # noqa: E402
from camlens.errors import LayerNotRunError  # noqa: E402


def main() -> None:
    if os.environ.get("BENCH_WRAPPED", "1") == "0":
        print("skipped (BENCH_WRAPPED=0)")
        return
    torch.manual_seed(0)
    reps = int(os.environ.get("BENCH_REPS", "5"))
    model = torchvision.models.resnet18(weights=None).eval()
    compiled = torch.compile(model)
    x = torch.randn(8, 3, 64, 64)
    cats = list(range(8))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, resnet18 64x64 batch 8, cpu, reps {reps}")

    def forward():
        with torch.no_grad():
            model(x)

    def forward_compiled():
        with torch.no_grad():
            compiled(x)

    t0 = time.perf_counter()
    forward_compiled()
    compile_plain = time.perf_counter() - t0
    plain = interleaved_medians({"forward": forward, "compiled": forward_compiled}, reps=reps, stat=min)

    cam = GradCAM(compiled, "layer4")  # camlens: runs the eager original
    graph = Engine(compiled, [("_orig_mod.layer4", model.layer4)])  # forced through the compiled graph
    try:  # the graph compiled above, without hooks, is reused: dynamo does not guard on hooks
        graph.run(x, target_category=cats)
        stale = "hooks ran"
    except LayerNotRunError:
        stale = "hooks silently skipped (LayerNotRunError)"
    torch._dynamo.reset()
    t0 = time.perf_counter()
    graph.run(x, target_category=cats)
    compile_hooks = time.perf_counter() - t0
    times = interleaved_medians(
        {
            "forward": forward,
            "eager": lambda: cam.explain(x, target_category=cats),
            "graph": lambda: graph.run(x, target_category=cats),
        },
        reps=reps,
        stat=min,
    )
    same = torch.allclose(graph.run(x, target_category=cats).gradients[0], cam.engine.run(x, target_category=cats).gradients[0], atol=1e-5)
    print_table(
        ["path", "/ eager forward", "first call (s)"],
        [
            ["plain forward, compiled", plain["compiled"] / plain["forward"], f"{compile_plain:.1f} (compile)"],
            ["GradCAM through the eager original (camlens)", times["eager"] / times["forward"], "no compile"],
            ["GradCAM through the compiled graph", times["graph"] / times["forward"], f"{compile_hooks:.1f} (recompile with hooks)"],
        ],
    )
    print(f"through the graph compiled before the hooks were added: {stale}")
    print(f"same activations gradients on both paths (atol 1e-5): {same}")


if __name__ == "__main__":
    main()
