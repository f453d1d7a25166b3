"""Gradient-family and EigenCAM cost as a ratio to one plain forward pass (resnet50, 224x224, CPU).

Targets (issue #2): GradCAM family <= 1.3x the plain forward at batch 8; EigenCAM <= 1.2x.
If pytorch-grad-cam is installed (``pip install grad-cam``), its time is measured side by side.
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

METHODS = ["GradCAM", "GradCAMPlusPlus", "XGradCAM", "HiResCAM", "GradCAMElementWise", "LayerCAM", "EigenCAM", "EigenGradCAM"]
PEER_NAMES = {"GradCAMElementWise": "GradCAMElementWise"}


def _peer():
    try:
        import pytorch_grad_cam  # type: ignore
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as PeerTarget  # type: ignore
    except Exception:  # noqa: BLE001 - the peer is optional
        return None, None
    return pytorch_grad_cam, PeerTarget


def main() -> None:
    torch.manual_seed(0)
    reps = int(os.environ.get("BENCH_REPS", "5"))
    model = torchvision.models.resnet50(weights=None).eval()
    layer = model.layer4[-1]
    peer, PeerTarget = _peer()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu, reps {reps} (best of reps, interleaved)")
    if peer is None:
        print("pytorch-grad-cam not installed: peer columns skipped (pip install grad-cam)")
    for batch in (1, 8):
        x = torch.randn(batch, 3, 224, 224)
        cats = [281] * batch

        def forward():
            with torch.no_grad():
                model(x)

        ours_fns = {"forward": forward}
        peer_fns = {"forward": forward}
        for name in METHODS:
            ours = getattr(camlens, name)(model, [layer])
            ours_fns[name] = lambda ours=ours: ours(input_tensor=x, target_category=cats)
            if peer is not None and hasattr(peer, PEER_NAMES.get(name, name)):
                theirs = getattr(peer, PEER_NAMES.get(name, name))(model=model, target_layers=[layer])
                targets = [PeerTarget(c) for c in cats]
                peer_fns[name] = lambda theirs=theirs, targets=targets: theirs(input_tensor=x, targets=targets)
        # Two rounds, each with its own floor: the peer's numpy/OpenBLAS threads keep spinning
        # after its calls and would slow whatever runs next, our calls and the floor included.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours_t = interleaved_medians(ours_fns, reps=reps, stat=min)
            peer_t = interleaved_medians(peer_fns, reps=reps, stat=min) if len(peer_fns) > 1 else {}
        base = ours_t["forward"]
        rows = []
        for name in METHODS:
            ratio = ours_t[name] / base
            row: list[object] = [name, ratio]
            if name in peer_t:
                peer_ratio = peer_t[name] / peer_t["forward"]
                row += [peer_ratio, peer_ratio / ratio]
            elif peer is not None:
                row += ["-", "-"]
            rows.append(row)
        print(f"\nresnet50 layer4[-1], batch {batch}: plain forward = {base * 1000:.0f} ms")
        headers = ["method", "camlens / forward"]
        if peer is not None:
            headers += ["grad-cam / forward", "speed-up vs grad-cam"]
        print_table(headers, rows)


if __name__ == "__main__":
    main()
