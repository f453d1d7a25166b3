"""Single-pass methods of issue #10 (part b) as a ratio to one plain forward pass, CPU, batch 8.

Targets: FEM, RandomCAM, KPCA-CAM, SegEigenCAM <= 1.2x a plain forward (resnet50, 224x224,
layer4[-1]); LeGrad <= 2x a plain forward (vit_b_16, 224x224, all 12 blocks). Best of
``BENCH_REPS`` (default 5) interleaved repetitions.
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

RESNET_METHODS = {"FEM": 1.2, "RandomCAM": 1.2, "KPCACAM": 1.2, "SegEigenCAM": 1.2}


def _table(title: str, model: torch.nn.Module, x: torch.Tensor, cams: dict, targets: dict, reps: int) -> None:
    def forward() -> None:
        with torch.no_grad():
            model(x)

    fns = {"forward": forward, **{name: (lambda cam=cam: cam(input_tensor=x, target_category=281)) for name, cam in cams.items()}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = interleaved_medians(fns, reps=reps, stat=min)
    base = t["forward"]
    rows = []
    for name in cams:
        ratio = t[name] / base
        rows.append([name, ratio, f"<= {targets[name]}", "ok" if ratio <= targets[name] else "OVER"])
    print(f"\n{title}: plain forward = {base * 1000:.0f} ms")
    print_table(["method", "camlens / forward", "target", ""], rows)


def main() -> None:
    torch.manual_seed(0)
    reps = int(os.environ.get("BENCH_REPS", "5"))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu, reps {reps} (best of reps, interleaved)")
    x = torch.randn(8, 3, 224, 224)

    resnet = torchvision.models.resnet50(weights=None).eval()
    layer = resnet.layer4[-1]
    cams = {name: getattr(camlens, name)(resnet, [layer]) for name in RESNET_METHODS}
    _table("resnet50 layer4[-1], batch 8", resnet, x, cams, RESNET_METHODS, reps)

    vit = torchvision.models.vit_b_16(weights=None).eval()
    _table("vit_b_16, all 12 blocks, batch 8", vit, x, {"LeGrad": camlens.LeGrad(vit)}, {"LeGrad": 2.0}, reps)


if __name__ == "__main__":
    main()
