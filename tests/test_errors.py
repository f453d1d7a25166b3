"""Every bad input raises a camlens error (also the matching built-in) with a message that helps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camlens import CamLensError, GradCAM, get_method
from camlens.errors import (
    InputShapeError,
    InputTypeError,
    LayerNotFoundError,
    MethodNotFoundError,
    TargetError,
    TargetIndexError,
)
from camlens.targets import ClassifierOutputTarget


def test_layer_name_typo_suggests_close_matches(small_cnn):
    with pytest.raises(LayerNotFoundError, match=r"'blok' is not in SmallCNN; close matches: 'block'") as info:
        GradCAM(small_cnn, "blok")
    assert isinstance(info.value, ValueError) and isinstance(info.value, CamLensError)


def test_layer_index_out_of_range(small_cnn):
    with pytest.raises(LayerNotFoundError, match=r"'stem\[7\]' is not in SmallCNN"):
        GradCAM(small_cnn, "stem[7]")


def test_layer_names_with_indices_resolve(small_cnn):
    assert GradCAM(small_cnn, "stem[-1]").target_layers == [small_cnn.stem[2]]
    assert GradCAM(small_cnn, "stem.0").target_layer_names == ["stem.0"]
    assert GradCAM(small_cnn, target_layer=small_cnn.block).target_layer_names == ["block"]


def test_module_not_in_model(small_cnn):
    with pytest.raises(LayerNotFoundError, match="is not a submodule of SmallCNN"):
        GradCAM(small_cnn, [nn.Conv2d(1, 1, 1)])


def test_bad_layer_type(small_cnn):
    with pytest.raises(InputTypeError, match="nn.Module or a dotted name"):
        GradCAM(small_cnn, [3])


def test_both_layer_arguments(small_cnn):
    with pytest.raises(CamLensError, match="either target_layers or target_layer"):
        GradCAM(small_cnn, "block", target_layer="stem")


def test_unknown_keyword(small_cnn):
    with pytest.raises(TypeError, match="unexpected keyword"):
        GradCAM(small_cnn, "block", colour="red")


def test_not_a_model():
    with pytest.raises(InputTypeError, match="torch.nn.Module"):
        GradCAM("resnet", "layer4")


@pytest.mark.parametrize(
    "x, exc, pattern",
    [
        (torch.randn(3, 16, 16), InputShapeError, r"1 spatial axes.*\(3, 16, 16\).*Conv2d.*expects 2.*unsqueeze\(0\)"),
        (torch.randn(1, 1, 3, 16, 16), InputShapeError, r"3 spatial axes.*Conv2d.*\(N, C, H, W\)"),
        (torch.randn(1, 1, 1, 3, 16, 16), InputShapeError, r"\(N, C, \*spatial\) with 1, 2 or 3 spatial axes"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), InputTypeError, r"floating point.*uint8.*x.float\(\)"),
        (torch.zeros(0, 3, 16, 16), InputShapeError, "empty"),
        ([[1.0]], InputTypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs(small_cnn, x, exc, pattern):
    with pytest.raises(exc, match=pattern):
        GradCAM(small_cnn, "block")(x)


def test_targets_length_mismatch(small_cnn, image_batch):
    with pytest.raises(TargetError, match="got 2 targets for a batch of 4 images"):
        GradCAM(small_cnn, "block")(image_batch, targets=[ClassifierOutputTarget(0)] * 2)
    with pytest.raises(TargetError, match="got 2 targets for a batch of 4 images"):
        GradCAM(small_cnn, "block")(image_batch, targets=[ClassifierOutputTarget(0)] * 2, aug_smooth=True)


def test_target_category_list_length(small_cnn, image_batch):
    with pytest.raises(TargetError, match="3 entries but the batch has 4 images"):
        GradCAM(small_cnn, "block")(image_batch, target_category=[1, 2, 3])


@pytest.mark.parametrize("category", [6, 100, -7])
def test_class_index_out_of_range(small_cnn, image_batch, category):
    with pytest.raises(TargetIndexError, match=rf"class index {category} is out of range for a model with 6 outputs"):
        GradCAM(small_cnn, "block")(image_batch, target_category=category)
    with pytest.raises(IndexError):
        GradCAM(small_cnn, "block")(image_batch, targets=[ClassifierOutputTarget(category)] * 4)


def test_bad_target_category_type(small_cnn, image_batch):
    with pytest.raises(TargetError, match="target_category must be"):
        GradCAM(small_cnn, "block")(image_batch, target_category="cat")


def test_targets_and_target_category_together(small_cnn, image_batch):
    with pytest.raises(CamLensError, match="either targets or target_category"):
        GradCAM(small_cnn, "block")(image_batch, target_category=1, targets=[ClassifierOutputTarget(1)] * 4)


def test_non_scalar_target(small_cnn, image_batch):
    with pytest.raises(TargetError, match="one scalar score"):
        GradCAM(small_cnn, "block")(image_batch, targets=[lambda o: o] * 4)


def test_unknown_method_suggests():
    with pytest.raises(MethodNotFoundError, match="unknown CAM method 'gradcamm'.*did you mean 'gradcam'"):
        get_method("gradcamm")
    assert get_method("Grad-CAM++").__name__ == "GradCAMPlusPlus"


def test_use_cuda_without_cuda(small_cnn):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.warns(DeprecationWarning, match="use_cuda"), pytest.raises(CamLensError, match="CUDA is not available"):
        GradCAM(model=small_cnn, target_layer=small_cnn.block, use_cuda=True)


def test_use_cuda_false_is_accepted(small_cnn, image_batch):
    out = GradCAM(model=small_cnn, target_layer=small_cnn.block, use_cuda=False)(input_tensor=image_batch, target_category=None)
    assert out.shape == (4, 16, 16)


# ------------------------------------------------------------------ the family and its contract
def test_every_camlens_error_is_also_its_builtin():
    import camlens.errors as errors

    builtins = {
        "ArgumentError": ValueError, "InputShapeError": ValueError, "InputTypeError": TypeError,
        "LayerNotFoundError": ValueError, "LayerNotRunError": RuntimeError, "LayerOutputError": ValueError,
        "TargetError": ValueError, "TargetIndexError": IndexError, "ReshapeError": ValueError,
        "ModelOutputError": TypeError, "MethodNotFoundError": KeyError, "DeviceError": RuntimeError,
        "DependencyError": ImportError, "MissingFileError": FileNotFoundError, "FileFormatError": ValueError,
        "OutputError": OSError, "MetricStateError": RuntimeError, "NonFiniteInputError": ValueError,
        "TargetTypeError": TypeError,
    }
    declared = [n for n in errors.__all__ if n not in ("CamLensError", "CamLensWarning")]
    assert sorted(declared) == sorted(builtins)
    for name, builtin in builtins.items():
        exc = getattr(errors, name)("what was expected; what was received")
        assert isinstance(exc, CamLensError) and isinstance(exc, builtin), name
        assert str(exc) == "what was expected; what was received"


def test_camlens_warning_lives_with_the_errors():
    import camlens
    import camlens.engine
    import camlens.errors

    assert camlens.CamLensWarning is camlens.errors.CamLensWarning is camlens.engine.CamLensWarning
    assert issubclass(camlens.errors.CamLensWarning, UserWarning)


def test_no_bare_builtin_or_base_error_is_raised_in_src():
    """Every raise in src/camlens names a specific camlens error (which is also the built-in)."""
    import ast
    from pathlib import Path

    import camlens

    bare = {"CamLensError", "Exception", "ValueError", "TypeError", "RuntimeError", "KeyError", "IndexError",
            "ImportError", "OSError", "FileNotFoundError"}
    found = []
    for path in sorted(Path(camlens.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
                if node.exc.func.id in bare:
                    found.append(f"{path.name}:{node.lineno} raise {node.exc.func.id}(...)")
    assert not found, found


@pytest.mark.parametrize(
    ("call", "exc", "pattern"),
    [
        (lambda: __import__("camlens.metrics", fromlist=["x"]).deletion(nn.Identity(), torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4), steps=0),
         "ArgumentError", "steps must be a positive int"),
        (lambda: __import__("camlens.metrics", fromlist=["x"]).PointingGame().compute(), "MetricStateError", "before any update"),
        (lambda: __import__("camlens.metrics", fromlist=["x"]).center_baseline(1, (4, 4), sigma=0), "ArgumentError", "sigma must be > 0"),
        (lambda: __import__("camlens.devices", fromlist=["x"]).parse_device("gpu"), "ArgumentError", "invalid device 'gpu'"),
    ],
)
def test_library_errors_are_specific(call, exc, pattern):
    import camlens.errors as errors

    with pytest.raises(getattr(errors, exc), match=pattern):
        call()


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        ("ArgumentError", 2), ("MethodNotFoundError", 2), ("LayerNotFoundError", 2), ("TargetIndexError", 2),
        ("MissingFileError", 1), ("FileFormatError", 1), ("OutputError", 1), ("InputShapeError", 1),
        ("ModelOutputError", 1), ("DependencyError", 3), ("DeviceError", 3),
    ],
)
def test_one_exit_code_per_kind_of_error(exc, code):
    import camlens.errors as errors
    from camlens.app import exitcodes

    assert exitcodes.exit_code(getattr(errors, exc)("x")) == code
    assert exitcodes.exit_code(KeyboardInterrupt()) == exitcodes.INTERRUPTED == 130
    assert exitcodes.exit_code(RuntimeError("from the model")) == exitcodes.DATA_ERROR
