"""Perturbation methods' cost on resnet50 (random weights, 224x224, batch 1, layer4[-1], CPU).

Every number is a ratio to a plain forward pass measured in the same run:

* AblationCAM: whole call / one plain forward at batch 1. With the closed form (default; the
  tail after ``layer4[-1]`` is avgpool + fc, so all 2048 ablated outputs are one product):
  target <= 1.5x. With ``closed_form=False`` the layers after ``layer4[-1]`` run for the 2048
  ablations: target <= 10x.
* SS-CAM and IS-CAM: time per masked (noisy / scaled) image / plain forward time per image at the
  same batch size (target: <= 1.05x), measured like ScoreCAM's below; with torchcam's SSCAM and
  ISCAM when importable.
* ScoreCAM: time per masked image / plain forward time per image at the same batch size
  (target: <= 1x), and the share of the per-chunk time spent outside the model's forward (mask
  building, scoring), which machine load cannot distort. A full exact run is ~2048 masked forwards (many minutes on 2 cores), so the
  exact run is timed for its first few chunks and stopped; a ``top_k`` row shows a complete
  (inexact) call.
* The peer (pytorch-grad-cam) is measured when importable (``pip install grad-cam``): its
  AblationCAM with ``ratio_channels_to_ablate`` (a fraction of the channels, time extrapolated
  linearly to all 2048) and its ScoreCAM stopped after the same number of chunks as ours.

Environment: ``BENCH_REPS`` (default 3) repetitions, medians reported; ``BENCH_CHUNKS`` (default 2)
ScoreCAM chunks timed before stopping.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
from common import interleaved_medians, print_table  # noqa: E402

from camlens import ISCAM, SSCAM, AblationCAM, ScoreCAM  # noqa: E402
from camlens.targets import ClassifierOutputTarget  # noqa: E402

SCORE_BATCH = 16
ABLATION_BATCH = 256
PEER_ABLATION_RATIO = 0.02


class _Stop(Exception):
    pass


def _masked_image_time(
    model: torch.nn.Module, run: Callable[[], object], batch: int, chunks: int
) -> tuple[float, float]:
    """``(seconds per masked image, share of that time spent outside the model's forward)``.

    Timed from the start of the first forward of ``batch`` images to the end of the ``chunks``-th,
    then the run is stopped (the first chunk's mask building is not counted). The second number
    (mask building, scoring, bookkeeping between forwards) is measured inside the same window, so
    machine load does not distort it.
    """
    marks: list[float] = []
    in_forward = [0.0]

    def pre(module: torch.nn.Module, args: tuple) -> None:
        if args[0].shape[0] == batch:
            marks.append(time.perf_counter())

    def post(module: torch.nn.Module, args: tuple, out: object) -> None:
        if args[0].shape[0] == batch:
            now = time.perf_counter()
            in_forward[0] += now - marks[-1]
            marks.append(now)
            if len(marks) == 2 * chunks:
                raise _Stop

    h1 = model.register_forward_pre_hook(pre)
    h2 = model.register_forward_hook(post)
    try:
        run()
    except _Stop:
        pass
    finally:
        h1.remove()
        h2.remove()
    if len(marks) < 2 * chunks:
        raise RuntimeError("the run ended before the timed chunks")
    total = marks[-1] - marks[0]
    return total / (chunks * batch), (total - in_forward[0]) / total


def _peer():
    try:
        from pytorch_grad_cam import AblationCAM as PeerAblation  # type: ignore
        from pytorch_grad_cam import ScoreCAM as PeerScore  # type: ignore
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as PeerTarget  # type: ignore
    except Exception:  # noqa: BLE001 - the peer is optional
        return None
    return PeerAblation, PeerScore, PeerTarget


def _torchcam_run(cls: type, model: torch.nn.Module, x: torch.Tensor, **kwargs: object) -> Callable[[], object]:
    """A call of a torchcam extractor on ``x`` (capture forward, then its scoring), hooks removed after."""

    def run() -> object:
        extractor = cls(model, "layer4", batch_size=SCORE_BATCH, input_shape=tuple(x.shape[1:]), **kwargs)
        try:
            with torch.no_grad():
                out = model(x)
            return extractor(class_idx=281, scores=out)
        finally:
            extractor.remove_hooks()

    return run


def main() -> None:
    torch.manual_seed(0)
    reps = int(os.environ.get("BENCH_REPS", "3"))
    chunks = int(os.environ.get("BENCH_CHUNKS", "2"))
    model = torchvision.models.resnet50(weights=None).eval()
    layer = model.layer4[-1]
    x1 = torch.randn(1, 3, 224, 224)
    xb = torch.randn(SCORE_BATCH, 3, 224, 224)
    target = [ClassifierOutputTarget(281)]
    peer = _peer()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu, reps {reps} (median), "
          f"peer {'pytorch-grad-cam' if peer else 'not installed'}")

    def forward(x: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return model(x)

        return run

    ablation = AblationCAM(model, layer, batch_size=ABLATION_BATCH, progress=False)
    ablation_tail = AblationCAM(model, layer, batch_size=ABLATION_BATCH, progress=False, closed_form=False)
    t = interleaved_medians(
        {
            "fwd1": forward(x1),
            "ablation": lambda: ablation(x1, targets=target),
            "ablation_tail": lambda: ablation_tail(x1, targets=target),
        },
        reps=reps,
    )
    fwd1 = t["fwd1"]
    rows: list[list[object]] = [
        ["plain forward, batch 1", f"{fwd1 * 1000:.0f} ms", "1.00x", ""],
        [
            f"camlens AblationCAM ({ablation.last_path.get('layer4.2')} path)",
            f"{t['ablation'] * 1000:.0f} ms",
            f"{t['ablation'] / fwd1:.2f}x fwd",
            "target <= 1.5x",
        ],
        [
            f"camlens AblationCAM ({ablation_tail.last_path.get('layer4.2')} path, bs {ABLATION_BATCH})",
            f"{t['ablation_tail'] * 1000:.0f} ms",
            f"{t['ablation_tail'] / fwd1:.2f}x fwd",
            "target <= 10x",
        ],
    ]

    # ScoreCAM: per-masked-image time, interleaved with plain forwards of the same batch size
    # (and with the peer's chunks when installed), so machine load hits all alike.
    score = ScoreCAM(model, layer, batch_size=SCORE_BATCH, progress=False)
    psc = None
    if peer is not None:
        psc = peer[1](model=model, target_layers=[layer])
        psc.batch_size = SCORE_BATCH
        ptarget = [peer[2](281)]
    fwd_b_t, ours_t, peer_t, ours_o, peer_o = [], [], [], [], []
    forward(xb)()  # warm-up
    for _ in range(reps):
        t0 = time.perf_counter()
        forward(xb)()
        fwd_b_t.append((time.perf_counter() - t0) / SCORE_BATCH)
        per, share = _masked_image_time(model, lambda: score(x1, targets=target), SCORE_BATCH, chunks)
        ours_t.append(per)
        ours_o.append(share)
        if psc is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                per, share = _masked_image_time(
                    model, lambda: psc(input_tensor=x1, targets=ptarget), SCORE_BATCH, chunks
                )
                peer_t.append(per)
                peer_o.append(share)
    fwd_b = statistics.median(fwd_b_t)
    per_img = statistics.median(ours_t)
    rows.insert(1, [f"plain forward, batch {SCORE_BATCH} (per image)", f"{fwd_b * 1000:.0f} ms", f"{fwd_b / fwd1:.2f}x", ""])
    rows.append([
        f"camlens ScoreCAM exact, per masked image (first {chunks} chunks of {SCORE_BATCH})",
        f"{per_img * 1000:.0f} ms",
        f"{per_img / fwd_b:.2f}x fwd/img",
        f"target <= 1x; {statistics.median(ours_o):.1%} of it outside the forward",
    ])
    rows.append([
        "  -> extrapolated full exact call (2048 channels)",
        f"{per_img * 2048:.0f} s",
        f"{per_img * 2048 / fwd1:.0f}x fwd",
        "",
    ])
    topk = ScoreCAM(model, layer, batch_size=SCORE_BATCH, progress=False, top_k=SCORE_BATCH * chunks)
    t_topk = interleaved_medians({"topk": lambda: topk(x1, targets=target)}, reps=1, warmup=0)["topk"]
    rows.append([
        f"camlens ScoreCAM top_k={SCORE_BATCH * chunks} (whole call, inexact)",
        f"{t_topk * 1000:.0f} ms",
        f"{t_topk / fwd1:.2f}x fwd",
        "",
    ])

    # SS-CAM / IS-CAM: per masked image, like ScoreCAM (noise / scaling happen per chunk).
    variants: dict[str, Callable[[], object]] = {
        "SS-CAM": lambda: SSCAM(model, layer, batch_size=SCORE_BATCH, progress=False, generator=0)(x1, targets=target),
        "IS-CAM": lambda: ISCAM(model, layer, batch_size=SCORE_BATCH, progress=False)(x1, targets=target),
    }
    try:
        from torchcam import methods as torchcam_methods  # type: ignore
    except Exception:  # noqa: BLE001 - the peer is optional
        torchcam_methods = None
    if torchcam_methods is not None:
        variants["torchcam SSCAM"] = _torchcam_run(torchcam_methods.SSCAM, model, x1)
        variants["torchcam ISCAM"] = _torchcam_run(torchcam_methods.ISCAM, model, x1)
    for label, run in variants.items():
        times, shares, fwds = [], [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            forward(xb)()
            fwds.append((time.perf_counter() - t0) / SCORE_BATCH)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                per, share = _masked_image_time(model, run, SCORE_BATCH, chunks)
            times.append(per)
            shares.append(share)
        per_v, fwd_v = statistics.median(times), statistics.median(fwds)
        who = label if label.startswith("torchcam") else f"camlens {label}"
        rows.append([
            f"{who}, per masked image (first {chunks} chunks of {SCORE_BATCH})",
            f"{per_v * 1000:.0f} ms",
            f"{per_v / fwd_v:.2f}x fwd/img",
            ("target <= 1.05x; " if who.startswith("camlens") else "")
            + f"{statistics.median(shares):.1%} of it outside the forward",
        ])

    if peer is not None:
        PeerAblation, PeerScore, PeerTarget = peer
        ptarget = [PeerTarget(281)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pab = PeerAblation(model=model, target_layers=[layer], batch_size=32,
                               ratio_channels_to_ablate=PEER_ABLATION_RATIO)
            t0 = time.perf_counter()
            pab(input_tensor=x1, targets=ptarget)
            t_pab = (time.perf_counter() - t0) / PEER_ABLATION_RATIO
            rows.append([
                f"peer AblationCAM ({PEER_ABLATION_RATIO:.0%} of channels, x{1 / PEER_ABLATION_RATIO:.0f} extrapolated)",
                f"{t_pab:.0f} s",
                f"{t_pab / fwd1:.0f}x fwd",
                f"camlens is {t_pab / t['ablation']:.0f}x faster",
            ])
    if peer_t:
        p_img = statistics.median(peer_t)
        rows.append([
            f"peer ScoreCAM, per masked image (first {chunks} chunks of {SCORE_BATCH})",
            f"{p_img * 1000:.0f} ms",
            f"{p_img / fwd_b:.2f}x fwd/img",
            f"camlens/peer {per_img / p_img:.2f}; {statistics.median(peer_o):.1%} outside the forward",
        ])
    print_table(["what", "time", "ratio", "note"], rows)


if __name__ == "__main__":
    main()
