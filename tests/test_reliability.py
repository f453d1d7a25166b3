"""Reliability under real use (issue 16, items 1-6): threads, nested calls, non-finite input,
strict targets, the model's own exceptions and constructor arguments."""

from __future__ import annotations

import gc
import re
import threading
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from camlens import AblationCAM, GradCAM, LayerCAM, ScoreCAM, available_methods, get_method
from camlens.engine import _add_note, call_model
from camlens.errors import (
    ArgumentError,
    CamLensError,
    InputTypeError,
    LayerOutputError,
    NonFiniteInputError,
    TargetError,
    TargetIndexError,
    TargetTypeError,
)
from camlens.hooks import _LOCKS, model_lock
from camlens.targets import ClassifierOutputTarget

from contract_setup import settings as contract_settings
from testnets import SmallCNN, camlens_notes, hooks_of

METHODS = available_methods()


def state_of(model: nn.Module) -> tuple[list[bool], dict[str, torch.Tensor], list[int], set[str]]:
    return (
        [m.training for m in model.modules()],
        {k: v.clone() for k, v in model.state_dict().items()},
        hooks_of(model),
        set(vars(model)),
    )


def assert_unchanged(model: nn.Module, before: tuple) -> None:
    flags, state, hooks, attrs = state_of(model)
    assert flags == before[0], "train/eval flags changed"
    assert all(torch.equal(v, before[1][k]) for k, v in state.items()), "parameters or buffers changed"
    assert hooks == before[2], "hooks left behind"
    assert attrs == before[3], "attributes added to the model"


# ---------------------------------------------------------------- 1. threads
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_cam_objects_on_one_model_from_several_threads(train):
    """Four CAM objects (two methods, different layers) on one model, four threads, 40 calls each;
    in eval mode a fifth thread runs plain forward passes of the model meanwhile. Every map equals
    the single-threaded one and the model is left as found (before the fix: 100+ wrong maps, the
    train-mode model left in eval mode)."""
    model = SmallCNN().train(train)
    cams = [GradCAM(model, "block"), LayerCAM(model, "stem"), GradCAM(model, "stem.0"), LayerCAM(model, "block")]
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(2, 3, 16, 16, generator=g) for _ in cams]
    refs = [cam(x, target_category=[1, 2]) for cam, x in zip(cams, xs)]
    with torch.no_grad():
        plain_ref = model.eval()(xs[0])
    model.train(train)
    before = state_of(model)
    start = threading.Barrier(len(cams) + (0 if train else 1))
    wrong: list[str] = []

    def explain(i: int) -> None:
        start.wait()
        for _ in range(40):
            try:
                if np.abs(cams[i](xs[i], target_category=[1, 2]) - refs[i]).max() > 1e-5:
                    wrong.append(f"cam {i}: wrong map")
            except Exception as exc:  # reported below
                wrong.append(f"cam {i}: {type(exc).__name__}: {exc}")

    def plain_forward() -> None:
        start.wait()
        for _ in range(80):
            with torch.no_grad():
                if not torch.allclose(model(xs[0]), plain_ref, atol=1e-6):
                    wrong.append("plain forward: wrong output")

    threads = [threading.Thread(target=explain, args=(i,)) for i in range(len(cams))]
    if not train:
        threads.append(threading.Thread(target=plain_forward))
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=Warning)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert wrong == []
    assert_unchanged(model, before)


def test_the_model_lock_is_kept_outside_the_model_and_dropped_with_it():
    model = SmallCNN()
    attrs = set(vars(model))
    GradCAM(model, "block")(torch.randn(1, 3, 8, 8))
    assert set(vars(model)) == attrs
    assert model_lock(model) is model_lock(model)
    key = id(model)
    assert key in _LOCKS
    del model
    gc.collect()
    assert key not in _LOCKS


def test_model_lock_serialises_a_users_own_forward_passes():
    model = SmallCNN()
    lock = model_lock(model)
    with lock:  # re-entrant: a camlens call inside the user's own critical section does not deadlock
        out = GradCAM(model, "block")(torch.randn(1, 3, 8, 8))
    assert out.shape == (1, 8, 8)


# ---------------------------------------------------------------- 2. nested calls
def test_a_target_that_runs_a_cam_and_the_model_itself():
    """The outer call's capture hooks ignore the forward passes its target starts (before the fix:
    a map for 1 image instead of 2, and a zero-gradient warning)."""
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    outer = GradCAM(model, "block")
    inner = LayerCAM(model, "stem")
    same_layer = GradCAM(model, "block")
    seen = []

    def nested_target(out: torch.Tensor) -> torch.Tensor:
        seen.append(inner(x[:1], target_category=0).shape)
        seen.append(same_layer(x[1:], target_category=1).shape)
        seen.append(outer(x[:1], target_category=2).shape)  # the same object, re-entrant
        with torch.no_grad():
            model(x)
        return out[1]

    before = state_of(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = outer(x, targets=[nested_target, nested_target])
    want = outer(x, targets=[ClassifierOutputTarget(1)] * 2)
    assert got.shape == (2, 16, 16)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert seen == [(1, 16, 16)] * 6
    assert_unchanged(model, before)


# ---------------------------------------------------------------- 3. non-finite input
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_is_an_error_that_says_where_and_how_to_opt_out(value):
    x = torch.randn(3, 3, 8, 8)
    x[2, 1, 4, 5] = value
    with pytest.raises(NonFiniteInputError, match=r"non-finite values .* in image\(s\) \[2\], first at index \[2, 1, 4, 5\]"):
        GradCAM(SmallCNN(), "block")(x)
    with pytest.raises(ValueError, match="allow_nonfinite=True"):
        GradCAM(SmallCNN(), "block")(x)
    out = GradCAM(SmallCNN(), "block", allow_nonfinite=True)(x)
    assert out.shape == (3, 8, 8) and np.isfinite(out).all()


def test_finite_float64_that_overflows_float32_is_reported_as_the_model_sees_it():
    x = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    x[0, 0, 0, 0] = 1e300
    with pytest.raises(NonFiniteInputError, match=r"1 \+inf.*dtype torch.float32"):
        GradCAM(SmallCNN(), "block")(x)


def test_a_rejected_bad_input_does_not_change_later_calls():
    """AblationCAM kept its slow path forever after one NaN input; now the input is refused and
    the next clean call still runs only the tail, without a warning."""
    model = SmallCNN().eval()
    cam = AblationCAM(model, "block", progress=False)
    clean = torch.randn(2, 3, 8, 8)
    bad = clean.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteInputError):
        cam(bad, target_category=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cam(clean, target_category=1)
    assert cam.last_path == {"block": "tail"}


def test_allowed_non_finite_input_does_not_make_the_ablation_fallback_permanent():
    model = SmallCNN().eval()
    cam = AblationCAM(model, "block", progress=False, allow_nonfinite=True)
    clean = torch.randn(2, 3, 8, 8)
    bad = clean.clone()
    bad[0, 0, 0, 0] = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cam(bad, target_category=1)
    cam(clean, target_category=1)
    assert cam.last_path == {"block": "tail"}


# ---------------------------------------------------------------- 4. targets
@pytest.mark.parametrize(
    "category, match",
    [
        ([2.7, 3.2], r"target_category\[0\] must be an integer class index; got 2.7 .*pass 3"),
        ([True, False], r"target_category\[0\] must be an integer class index; got the bool True"),
        (-1, r"class index -1 is out of range .* expected 0 <= class < 6 \(the last class is 5\)"),
        (2.0, r"target_category must be an integer class index; got 2.0"),
        (np.array([1.0, 2.0]), r"got 1.0 \(float"),
        (torch.tensor([True, False]), r"got the bool True"),
        ([1, 6], r"target_category\[1\]: class index 6 is out of range"),
    ],
)
def test_target_categories_are_not_coerced(category, match):
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises((TargetError, TargetIndexError), match=match):
        GradCAM(SmallCNN(), "block")(x, target_category=category)


def test_integer_categories_of_every_kind_still_work():
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 8, 8)
    want = GradCAM(model, "block")(x, target_category=[1, 5])
    for cats in ([np.int64(1), np.int32(5)], np.array([1, 5]), torch.tensor([1, 5]), [torch.tensor(1), 5]):
        np.testing.assert_allclose(GradCAM(model, "block")(x, target_category=cats), want)
    # Python-style negative indexing stays available through an explicit target
    np.testing.assert_allclose(
        GradCAM(model, "block")(x, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(-1)]), want
    )


@pytest.mark.parametrize("returned", ["cat", None, [1.0, 2.0]])
def test_a_target_returning_a_non_score_is_named_in_the_error(returned):
    def odd_target(out):
        return returned

    with pytest.raises(TargetTypeError, match=rf"target odd_target \(a function\) returned {re.escape(repr(returned))}.*expected one score") as err:
        GradCAM(SmallCNN(), "block")(torch.randn(2, 3, 8, 8), targets=[odd_target] * 2)
    assert isinstance(err.value, TypeError)  # also a TypeError, as the raw torch error was


@pytest.mark.parametrize("method", ["gradcam", "layercam", "xgradcam"])
def test_a_float_target_is_an_error_for_gradient_methods(method):
    with pytest.raises(TargetError, match=r"returned a Python float .* carries no gradient") as err:
        get_method(method)(SmallCNN(), "block")(torch.randn(2, 3, 8, 8), targets=[lambda o: float(o[1].detach())] * 2)
    assert "layer" not in str(err.value).split("blank")[0]  # it does not blame the layer


def test_a_detached_target_is_an_error_not_a_blank_map():
    with pytest.raises(TargetError, match="detached from the model output"):
        GradCAM(SmallCNN(), "block")(torch.randn(2, 3, 8, 8), targets=[lambda o: o[1].detach()] * 2)


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "eigencam"])
def test_a_float_target_gives_the_correct_map_for_gradient_free_methods(method):
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 8, 8)
    cam = get_method(method)(model, "block", progress=False)
    want = cam(x, targets=[lambda o: o[3]] * 2)
    got = cam(x, targets=[lambda o: float(o[3])] * 2)
    np.testing.assert_allclose(got, want, atol=1e-6)


# ---------------------------------------------------------------- 5. the model's own exceptions
def test_wrong_channel_count_keeps_the_error_type_and_adds_camlens_context():
    with pytest.raises(RuntimeError, match="to have 3 channels") as err:
        GradCAM(SmallCNN(), "block")(torch.randn(2, 1, 16, 16))
    assert not isinstance(err.value, CamLensError)
    (note,) = camlens_notes(err.value)
    assert "camlens: the model SmallCNN raised this on an input of shape (2, 1, 16, 16)" in note
    assert "first convolution 'stem.0' expects 3 input channels but the input has 1" in note
    assert "x.expand(-1, 3, -1, -1)" in note


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if x.shape[-1] != 8:
            raise ValueError("this model only takes 8 pixels wide images")
        return y.mean(dim=(2, 3))


# RefineCAM needs two target layers and Exploding has one conv; every other method that applies runs.
@pytest.mark.parametrize(
    "method", [m for m in METHODS if get_method(m).unsupported_reason(Exploding()) is None and m != "refinecam"]
)
def test_any_exception_from_the_forward_pass_keeps_its_type(method):
    with pytest.raises(ValueError, match="only takes 8 pixels") as err:
        get_method(method)(Exploding(), "conv", progress=False)(torch.randn(1, 3, 8, 9))
    assert camlens_notes(err.value) == [
        "camlens: the model Exploding raised this on an input of shape (1, 3, 8, 9) (dtype torch.float32, "
        "device cpu); check that the input matches what the model was built for (channels, size, "
        "normalisation); calling model(x) on the same input outside camlens shows whether the model itself fails"
    ]


def test_python_310_fallback_puts_the_note_in_the_message():
    exc = RuntimeError("conv failed")
    _add_note(exc, "camlens: context", notes=False)
    assert str(exc) == "conv failed\ncamlens: context" and type(exc) is RuntimeError
    silent = KeyError(3)  # no string message: left as it is
    _add_note(silent, "camlens: context", notes=False)
    assert silent.args == (3,)


def test_camlens_errors_and_already_noted_errors_get_no_second_note():
    class Raises(nn.Module):
        def forward(self, x):
            raise self.exc

    m = Raises()
    m.exc = LayerOutputError("ours")
    with pytest.raises(LayerOutputError) as err:
        call_model(m, torch.zeros(1))
    assert camlens_notes(err.value) == [] and str(err.value) == "ours"
    m.exc = RuntimeError("theirs")
    for _ in range(2):
        with pytest.raises(RuntimeError):
            call_model(m, torch.zeros(1, 3, 2, 2))
    assert len(camlens_notes(m.exc)) == 1


# ---------------------------------------------------------------- 6. constructor arguments
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"batch_size": "x"}, InputTypeError, r"batch_size must be a positive int; got 'x' \(str\)"),
        ({"batch_size": 0}, ArgumentError, r"batch_size must be a positive int \(1 or more\); got 0"),
        ({"batch_size": 2.5}, InputTypeError, r"batch_size must be a positive int"),
        ({"batch_size": True}, InputTypeError, r"batch_size must be a positive int"),
        ({"combine": "median"}, ArgumentError, r"combine must be one of 'mean', 'max', 'sum'; got 'median'"),
        ({"progress": "yes"}, InputTypeError, r"progress must be True or False"),
        ({"allow_nonfinite": 1}, InputTypeError, r"allow_nonfinite must be True or False"),
        ({"output_adapter": 3}, InputTypeError, r"output_adapter must be a callable or None"),
        ({"reshape_transform": "vit"}, InputTypeError, r"reshape_transform must be a callable or None"),
        ({"use_cuda": "no"}, InputTypeError, r"use_cuda must be True or False"),
        ({"bogus": 1}, InputTypeError, r"unexpected keyword argument\(s\): \['bogus'\]"),
    ],
)
def test_constructor_arguments_are_checked_when_the_object_is_built(method, kwargs, error, match):
    conf = contract_settings(method)  # a method's own net and layers where SmallCNN's "block" does not fit
    model = conf["model"]() if "model" in conf else SmallCNN()
    layers = conf["layers"](model) if "layers" in conf else "block"
    with pytest.raises(error, match=match) as err:
        get_method(method)(model, layers, **kwargs)
    assert isinstance(err.value, CamLensError)
    assert str(err.value).startswith(get_method(method).__name__)  # names the class it was building


@pytest.mark.parametrize(
    "cls, kwargs, error, match",
    [
        (ScoreCAM, {"top_k": 0}, ArgumentError, r"ScoreCAM: top_k must be None or a positive int \(1 or more\); got 0"),
        (ScoreCAM, {"top_k": "3"}, InputTypeError, r"top_k must be None or a positive int; got '3'"),
        (ScoreCAM, {"score_softmax": None}, InputTypeError, r"score_softmax must be True or False"),
        (AblationCAM, {"ablation_value": "x"}, InputTypeError, r"AblationCAM: ablation_value must be a real number"),
        (AblationCAM, {"ablation_value": float("nan")}, ArgumentError, r"ablation_value must be a finite number"),
        (AblationCAM, {"fast_path": None}, InputTypeError, r"fast_path must be True or False"),
    ],
)
def test_method_specific_arguments_are_checked_when_the_object_is_built(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(SmallCNN(), "block", **kwargs)


def test_valid_arguments_of_numpy_types_are_accepted():
    cam = ScoreCAM(SmallCNN(), "block", batch_size=np.int64(4), top_k=np.int32(2), progress=np.bool_(False))
    assert (cam.batch_size, cam.top_k, cam.progress) == (4, 2, False)
    assert type(cam.batch_size) is int
    assert AblationCAM(SmallCNN(), "block", ablation_value=np.float32(-1.5)).ablation_value == -1.5


def test_huge_but_finite_values_whose_sum_overflows_are_accepted():
    x = torch.full((1, 3, 8, 8), 3e38)  # finite in float32; their sum is inf
    assert not torch.isfinite(x.sum())
    assert GradCAM(SmallCNN(), "block")(x).shape == (1, 8, 8)


def test_out_of_memory_in_the_forward_pass_gets_a_memory_hint():
    class OOM(nn.Module):
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(torch.OutOfMemoryError) as err:
        call_model(OOM(), torch.zeros(64, 3, 8, 8))
    assert "does not fit in memory: explain fewer images per call" in camlens_notes(err.value)[0]


def test_other_targets_refuse_non_integer_classes_too():
    from camlens.targets import BinaryClassifierOutputTarget, SemanticSegmentationTarget

    with pytest.raises(TargetError, match=r"SemanticSegmentationTarget's category must be an integer class index; got 1.5"):
        SemanticSegmentationTarget(1.5, np.ones((2, 2)))
    with pytest.raises(TargetError, match=r"got the bool True"):
        BinaryClassifierOutputTarget(True)
    with pytest.raises(TargetIndexError, match="expects category 0 or 1; got 2"):
        BinaryClassifierOutputTarget(np.int64(2))
    assert BinaryClassifierOutputTarget(np.int64(1)).category == 1
    assert SemanticSegmentationTarget(torch.tensor(2), np.ones((2, 2))).category == 2
