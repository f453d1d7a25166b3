"""Multi-pass methods on resnet50 (random weights, 224x224, CPU): ratios to plain forwards in this run.

* SmoothGrad-CAM++ with ``n`` samples on one image (``batch_size = n``: the noisy copies run as one
  batch) / ``n`` plain forwards (one forward of a batch of ``n`` images). Target <= 1.2x. The
  extra cost is the clean pass (activations and targets) and the backward passes through the tail
  after ``layer4``.
* Deep Feature Factorization of a batch of 8 at ``layer4`` (4 concepts, forward + NMF + maps) /
  one plain forward of the same batch. Target <= 2x.
* Peers when importable (interleaved with the rest, informative): torchcam 0.5.0's
  SmoothGradCAMpp (one forward and backward per sample) and pytorch-grad-cam 1.5.7's
  DeepFeatureFactorization (scikit-learn NMF on the host).

Environment: ``BENCH_REPS`` (default 3) repetitions, medians reported; ``BENCH_SAMPLES`` (default 8).
"""

from __future__ import annotations

import os
import sys
import warnings

import torch
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
from common import interleaved_medians, print_table  # noqa: E402

from camlens import DeepFeatureFactorization, SmoothGradCAMpp  # noqa: E402
from camlens.targets import ClassifierOutputTarget  # noqa: E402

DFF_BATCH = 8


def quiet(fn):  # type: ignore[no-untyped-def]
    """``fn`` with warnings silenced (the peers warn about convergence and hooks)."""

    def run() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()

    return run


def main() -> None:
    torch.manual_seed(0)
    reps = int(os.environ.get("BENCH_REPS", "3"))
    n = int(os.environ.get("BENCH_SAMPLES", "8"))
    model = torchvision.models.resnet50(weights=None).eval()
    x1 = torch.randn(1, 3, 224, 224)
    xn = torch.randn(n, 3, 224, 224)
    x8 = torch.randn(DFF_BATCH, 3, 224, 224)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu, reps {reps} (median), samples {n}")

    def forward(x: torch.Tensor):  # type: ignore[no-untyped-def]
        def run() -> object:
            with torch.no_grad():
                return model(x)

        return run

    smooth = SmoothGradCAMpp(model, "layer4", num_samples=n, std=0.15, batch_size=n, progress=False)
    dff = DeepFeatureFactorization(model, "layer4", n_components=4, head="fc")
    target = [ClassifierOutputTarget(281)]
    fns = {
        "fwd_n": forward(xn),
        "smooth": lambda: smooth(x1, targets=target),
        "fwd_8": forward(x8),
        "dff": lambda: dff.factorize(x8),
    }
    try:
        from torchcam.methods import SmoothGradCAMpp as PeerSmooth  # type: ignore

        def peer_smooth() -> None:
            with PeerSmooth(model, "layer4", num_samples=n, std=0.3) as ex:
                ex(class_idx=281, scores=model(x1))

        fns["peer_smooth"] = quiet(peer_smooth)
    except ImportError:
        pass
    try:
        from pytorch_grad_cam import DeepFeatureFactorization as PeerDFF  # type: ignore

        peer_dff = PeerDFF(model=model, target_layer=model.layer4, computation_on_concepts=model.fc)
        fns["peer_dff"] = quiet(lambda: peer_dff(x8, 4))
    except ImportError:
        pass
    t = interleaved_medians(fns, reps=reps)
    rows: list[list[object]] = [
        [f"plain forward, batch {n} (= {n} plain forwards)", f"{t['fwd_n'] * 1000:.0f} ms", "1.00x", ""],
        [
            f"camlens SmoothGrad-CAM++, {n} samples, 1 image",
            f"{t['smooth'] * 1000:.0f} ms",
            f"{t['smooth'] / t['fwd_n']:.2f}x",
            "target <= 1.2x",
        ],
    ]
    if "peer_smooth" in t:
        rows.append([f"peer torchcam SmoothGradCAMpp, {n} samples", f"{t['peer_smooth'] * 1000:.0f} ms",
                     f"{t['peer_smooth'] / t['fwd_n']:.2f}x", "one forward + backward per sample"])
    rows += [
        [f"plain forward, batch {DFF_BATCH}", f"{t['fwd_8'] * 1000:.0f} ms", "1.00x", ""],
        [
            f"camlens DFF, batch {DFF_BATCH}, layer4, 4 concepts (factorize)",
            f"{t['dff'] * 1000:.0f} ms",
            f"{t['dff'] / t['fwd_8']:.2f}x",
            "target <= 2x",
        ],
    ]
    if "peer_dff" in t:
        rows.append([f"peer pytorch-grad-cam DFF, batch {DFF_BATCH}", f"{t['peer_dff'] * 1000:.0f} ms",
                     f"{t['peer_dff'] / t['fwd_8']:.2f}x", "scikit-learn NMF on the host"])
    print_table(["what", "time", "ratio", "note"], rows)


if __name__ == "__main__":
    main()
