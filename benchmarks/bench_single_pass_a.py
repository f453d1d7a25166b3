"""CAM, FullGrad, ShapleyCAM, FinerCAM, RefineCAM: cost as a ratio to one plain forward (resnet50, 224x224, CPU).

Targets (issue #10): FullGrad <= 3x one plain forward+backward and >= 10x faster than
pytorch-grad-cam 1.5.7's FullGrad; ShapleyCAM <= 4x a plain forward; CAM <= 1.2x a plain forward.
"Forward+backward" is one forward with autograd and one backward to the input (no parameter
gradients). Peers (pytorch-grad-cam, torchcam) are timed side by side when installed, each with
its own floor (see bench_core.py for why). ``BENCH_REPS`` (default 3), ``BENCH_WARMUP`` (default 1)
and ``BENCH_BATCH`` (default 8) control the run; camlens's table prints before the peers run.
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
from camlens.targets import ClassifierOutputReST, ClassifierOutputTarget  # noqa: E402

CATEGORY = 281


def _floors(model: torch.nn.Module, x: torch.Tensor) -> dict[str, object]:
    def forward() -> None:
        with torch.no_grad():
            model(x)

    def forward_backward() -> None:
        xi = x.detach().requires_grad_(True)
        torch.autograd.grad(model(xi)[:, CATEGORY].sum(), xi)

    return {"forward": forward, "forward+backward": forward_backward}


def _ours(model: torch.nn.Module, x: torch.Tensor) -> dict[str, object]:
    n = x.shape[0]
    cls_t = [ClassifierOutputTarget(CATEGORY)] * n
    rest_t = [ClassifierOutputReST(CATEGORY)] * n
    cams = {
        "CAM": (camlens.CAM(model, "layer4"), cls_t),
        "FullGrad": (camlens.FullGrad(model), cls_t),
        "ShapleyCAM": (camlens.ShapleyCAM(model, "layer4"), rest_t),
        "FinerCAM": (camlens.FinerCAM(model, "layer4"), cls_t),
        "RefineCAM": (camlens.RefineCAM(model, ["layer3", "layer4"]), cls_t),
    }
    return {name: (lambda c=c, t=t: c(x, targets=t)) for name, (c, t) in cams.items()}


def _peers(model: torch.nn.Module, x: torch.Tensor) -> tuple[dict[str, object], dict[str, object]]:
    """(pytorch-grad-cam callables, torchcam callables); empty when a peer is not installed."""
    n = x.shape[0]
    grad_cam: dict[str, object] = {}
    try:
        import pytorch_grad_cam as pgc  # type: ignore
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST as PeerReST  # type: ignore
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as PeerTarget  # type: ignore

        cls_t = [PeerTarget(CATEGORY)] * n
        fg = pgc.FullGrad(model, [])
        sh = pgc.ShapleyCAM(model, [model.layer4])
        fi = pgc.FinerCAM(model, [model.layer4])
        rf = pgc.RefineCAM(model, [model.layer3, model.layer4])
        grad_cam = {
            "FullGrad": lambda: fg(x, cls_t),
            "ShapleyCAM": lambda: sh(x, [PeerReST(CATEGORY)] * n),
            "FinerCAM": lambda: fi(x, None, target_idx=CATEGORY),
            "RefineCAM": lambda: rf(x, cls_t),
        }
    except ImportError:
        pass
    torchcam: dict[str, object] = {}
    try:
        from torchcam.methods import CAM as TorchCAM  # type: ignore

        def torchcam_cam() -> None:
            with TorchCAM(model, "layer4", "fc", input_shape=tuple(x.shape[1:])) as extractor:
                with torch.no_grad():
                    scores = model(x)
                extractor(class_idx=[CATEGORY] * n, scores=scores)

        torchcam = {"CAM": torchcam_cam}
    except ImportError:
        pass
    return grad_cam, torchcam


def main() -> None:
    torch.manual_seed(0)
    reps = int(os.environ.get("BENCH_REPS", "3"))
    warmup = int(os.environ.get("BENCH_WARMUP", "1"))
    batch = int(os.environ.get("BENCH_BATCH", "8"))
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(batch, 3, 224, 224)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu, reps {reps} (best of reps, interleaved)")
    floors = _floors(model, x)
    ours_fns = {**floors, **_ours(model, x)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours_t = interleaved_medians(ours_fns, reps=reps, warmup=warmup, stat=min)
    fwd, fwd_bwd = ours_t["forward"], ours_t["forward+backward"]
    print(
        f"\nresnet50, batch {batch}, 224x224: plain forward = {fwd * 1000:.0f} ms, "
        f"forward+backward (to the input) = {fwd_bwd * 1000:.0f} ms ({fwd_bwd / fwd:.2f}x forward)"
    )
    names = ["CAM", "FullGrad", "ShapleyCAM", "FinerCAM", "RefineCAM"]
    print_table(
        ["method", "camlens / forward", "camlens / fwd+bwd"], [[n, ours_t[n] / fwd, ours_t[n] / fwd_bwd] for n in names]
    )
    sys.stdout.flush()
    grad_cam, torchcam = _peers(model, x)
    peer_t: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fns in (grad_cam, torchcam):
            if fns:
                timed = interleaved_medians({**floors, **fns}, reps=reps, warmup=warmup, stat=min)
                peer_t.update({k: v / timed["forward"] for k, v in timed.items() if k not in floors})
    if not peer_t:
        print("no peer installed (pip install grad-cam torchcam): peer columns skipped")
        return
    peer_of = {"CAM": "torchcam", "FullGrad": "grad-cam", "ShapleyCAM": "grad-cam", "FinerCAM": "grad-cam", "RefineCAM": "grad-cam"}
    rows = []
    for name in names:
        ratio = ours_t[name] / fwd
        row: list[object] = [name, ratio]
        row += [f"{peer_of[name]} {peer_t[name]:.2f}", peer_t[name] / ratio] if name in peer_t else ["-", "-"]
        rows.append(row)
    print("\nside by side with the peers (each ratio to its own round's plain forward):")
    print_table(["method", "camlens / forward", "peer / forward", "speed-up vs peer"], rows)


if __name__ == "__main__":
    main()
