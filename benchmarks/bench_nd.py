"""Gradient family on a video model: cost as a ratio to one plain forward pass (torchvision r3d_18, CPU).

Target (issue #13): GradCAM family on r3d_18, batch 4 of 8 frames x 112x112 (``BENCH_ND_SIZE`` and
``BENCH_ND_FRAMES`` shrink it for a quick run), <= 1.3x the plain forward. Random weights.
If pytorch-grad-cam is installed, its GradCAM on the same 3-D input is timed side by side.
"""

from __future__ import annotations

import os
import sys
import warnings

import torch
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
from common import interleaved_medians, print_table  # noqa: E402

import camlens  # noqa: E402

METHODS = ["GradCAM", "GradCAMPlusPlus", "XGradCAM", "HiResCAM", "LayerCAM", "EigenCAM"]


def main() -> None:
    torch.manual_seed(0)
    reps = int(os.environ.get("BENCH_REPS", "3"))
    size = int(os.environ.get("BENCH_ND_SIZE", "112"))
    frames = int(os.environ.get("BENCH_ND_FRAMES", "8"))
    batch = int(os.environ.get("BENCH_ND_BATCH", "4"))
    model = torchvision.models.video.r3d_18(weights=None).eval()
    x = torch.randn(batch, 3, frames, size, size)
    cats = [0] * batch
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu, reps {reps} (best of reps, interleaved)")

    def forward() -> None:
        with torch.no_grad():
            model(x)

    fns = {"forward": forward}
    for name in METHODS:
        cam = getattr(camlens, name)(model)  # automatic layer: layer4.1 (layer4's output)
        fns[name] = lambda cam=cam: cam(input_tensor=x, target_category=cats)
    try:
        import pytorch_grad_cam  # type: ignore
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as PeerTarget  # type: ignore

        peer = pytorch_grad_cam.GradCAM(model=model, target_layers=[model.layer4])
        fns["grad-cam GradCAM"] = lambda: peer(input_tensor=x, targets=[PeerTarget(c) for c in cats])
    except Exception:  # noqa: BLE001 - the peer is optional
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        times = interleaved_medians(fns, reps=reps, stat=min)
    base = times["forward"]
    print(f"\nr3d_18 layer4.1 (automatic), batch {batch} x {frames} frames x {size}x{size}: plain forward = {base * 1000:.0f} ms")
    print_table(["method", "time / forward"], [[n, times[n] / base] for n in fns if n != "forward"])


if __name__ == "__main__":
    main()
