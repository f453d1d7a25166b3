"""Property-based tests (Hypothesis) over every registered method (issue 16).

Each example draws a batch (size, channels, dtype, NaN/inf at a random place), a model (float32
or float64, train or eval mode), layer specs (good and bad), targets (``target_category`` ints,
lists, numpy and torch integers, floats, bools, negatives, ``ClassifierOutputTarget`` lists and
callables returning tensors, numbers, ``None``, strings or vectors) and ``aug_smooth`` /
``eigen_smooth``. The oracle knows which of the drawn choices are faults:

* no fault: the call must return a map ``(N, H, W)``, float32, finite, in ``[0, 1]``;
* faults: the call must raise, and only an error the faults explain: a camlens error whose message
  says what was expected (or, for a wrong channel count, the model's own error with camlens's note).

After every example the model must be exactly as it was: hooks, train/eval flags, ``requires_grad``,
``.grad``, parameters and buffers, grad mode, no capture scope left open, the model's lock free.

The default run keeps ``max_examples`` small; ``test_every_method_thorough`` (marked slow) runs many more.
"""

from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import camlens.errors
from camlens import CamLensWarning, available_methods, get_method
from camlens import hooks as camlens_hooks
from camlens.errors import (
    CamLensError,
    InputTypeError,
    LayerNotFoundError,
    LayerOutputError,
    NonFiniteInputError,
    TargetError,
    TargetIndexError,
)
from camlens.targets import ClassifierOutputTarget

from contract_setup import settings as contract_settings
from testnets import SmallCNN, camlens_notes, hooks_of

NUM_CLASSES = 6
# Methods tied to an architecture SmallCNN lacks (LeGrad: attention blocks) are left out here (LeGrad
# runs on tiny ViTs in tests/methods/test_legrad.py and the contract suite); they must say why.
UNSUPPORTED = [m for m in available_methods() if get_method(m).unsupported_reason(SmallCNN(NUM_CLASSES))]
METHODS = [m for m in available_methods() if m not in UNSUPPORTED]


@pytest.mark.parametrize("method", UNSUPPORTED)
def test_methods_that_do_not_apply_say_why(method):
    with pytest.raises(camlens.errors.CamLensError, match="use a CAM method|expected|has no"):
        get_method(method)(SmallCNN(NUM_CLASSES), progress=False)
TARGET_ERRORS = (TargetError, TargetIndexError)
EXPLAINS_ITSELF = re.compile(r"expected|must|pass |choose|use |replace|close matches|top-level children")

MODELS = {torch.float32: SmallCNN(NUM_CLASSES, seed=0), torch.float64: SmallCNN(NUM_CLASSES, seed=1).double()}
for _m in MODELS.values():  # a user's .grad must survive untouched
    _m.fc.weight.grad = torch.full_like(_m.fc.weight, 0.25)

COMMON = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True)


@dataclass
class Case:
    """One drawn example and the errors its faults allow (empty: it must succeed)."""

    n: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    call: dict[str, Any] = field(default_factory=dict)
    allowed: set[type] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def fault(self, why: str, *errors: type) -> None:
        self.notes.append(why)
        self.allowed.update(errors)


def _category(draw: st.DrawFn, case: Case, what: str) -> Any:
    """One class index for target_category, possibly faulty."""
    kind = draw(st.sampled_from(["int", "int", "numpy", "torch", "high", "negative", "float", "bool"]))
    if kind == "int":
        return draw(st.integers(0, NUM_CLASSES - 1))
    if kind == "numpy":
        return np.int64(draw(st.integers(0, NUM_CLASSES - 1)))
    if kind == "torch":
        return torch.tensor(draw(st.integers(0, NUM_CLASSES - 1)))
    case.fault(f"{what}: {kind}", *TARGET_ERRORS)
    if kind == "high":
        return draw(st.integers(NUM_CLASSES, NUM_CLASSES + 3))
    if kind == "negative":
        return draw(st.integers(-3, -1))
    if kind == "float":
        return draw(st.floats(0, NUM_CLASSES - 1, allow_nan=False))
    return draw(st.booleans())


def _callable_target(draw: st.DrawFn, case: Case, uses_gradients: bool) -> Any:
    k = draw(st.integers(0, NUM_CLASSES - 1))
    kind = draw(st.sampled_from(["tensor", "tensor", "float", "none", "str", "vector"]))
    if kind == "float" and uses_gradients:
        case.fault("callable returns a float (no gradient)", TargetError)
    elif kind in ("none", "str", "vector"):
        case.fault(f"callable returns {kind}", TargetError)
    returns = {
        "tensor": lambda out: out[k],
        "float": lambda out: float(out[k]),
        "none": lambda out: None,
        "str": lambda out: "cat",
        "vector": lambda out: out,
    }
    return returns[kind]


@st.composite
def cases(draw: st.DrawFn, method: str) -> Case:
    cls = get_method(method)
    conf = contract_settings(method)
    n = draw(st.integers(1, 3))
    case = Case(n=n, kwargs={"progress": False, **conf.get("kwargs", {})})

    # ---- model
    model_dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    case.kwargs["model"] = model = MODELS[model_dtype]
    model.train(draw(st.booleans()))

    # ---- layers
    if "layers" in conf:
        case.kwargs["target_layers"] = conf["layers"](model)
    else:
        spec = draw(
            st.sampled_from(["block", "stem", "stem.0", "block[0]", "stem[-1]", "act", "module", "two", "nope", "fc"])
        )
        if spec == "nope":
            case.fault("unknown layer", LayerNotFoundError)
        if spec == "fc":
            case.fault("a layer with (N, classes) output", LayerOutputError)
        valid = conf.get("valid_layers")  # methods tied to one layer (CAM: the one pooled into the classifier)
        if valid is not None and spec not in valid and spec not in ("nope", "fc"):
            case.fault(f"{method} cannot use layer {spec!r}", LayerOutputError)
        case.kwargs["target_layers"] = {"module": model.block, "two": ["stem", model.block]}.get(spec, spec)
        if spec == "two":
            case.kwargs["combine"] = draw(st.sampled_from(["mean", "max", "sum"]))

    # ---- input
    channels = draw(st.sampled_from([3, 3, 3, 1]))
    if channels != 3:
        case.fault("one channel into an RGB model", RuntimeError)
    h, w = draw(st.integers(2, 20)), draw(st.integers(2, 20))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(n, channels, h, w, generator=g)
    if dtype == torch.int64:
        x = (x * 50).round().to(dtype)
        case.fault("integer input", InputTypeError)
    else:
        x = x.to(dtype)
        bad = draw(st.sampled_from([None, None, None, float("nan"), float("inf"), float("-inf")]))
        if bad is not None:
            x[draw(st.integers(0, n - 1)), draw(st.integers(0, channels - 1)), draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))] = bad
            allow = draw(st.booleans())
            case.kwargs["allow_nonfinite"] = allow
            if not allow:
                case.fault("non-finite input", NonFiniteInputError)
    case.call["input_tensor"] = x

    # ---- targets
    kind = draw(st.sampled_from(["none", "int", "list", "tensor", "targets", "callables"]))
    if kind == "int":
        case.call["target_category"] = _category(draw, case, "target_category")
    elif kind == "list":
        length = draw(st.sampled_from([n, n, n, n + 1]))
        if length != n:
            case.fault("one class too many", *TARGET_ERRORS)
        case.call["target_category"] = [_category(draw, case, f"target_category[{i}]") for i in range(length)]
    elif kind == "tensor":
        case.call["target_category"] = torch.tensor(draw(st.lists(st.integers(0, NUM_CLASSES - 1), min_size=n, max_size=n)))
    elif kind == "targets":
        ks = draw(st.lists(st.integers(-NUM_CLASSES, NUM_CLASSES + 2), min_size=n, max_size=n))
        if any(k >= NUM_CLASSES for k in ks):
            case.fault("ClassifierOutputTarget out of range", *TARGET_ERRORS)
        case.call["targets"] = [ClassifierOutputTarget(k) for k in ks]
    elif kind == "callables":
        case.call["targets"] = [_callable_target(draw, case, cls.uses_gradients) for _ in range(n)]
        if conf.get("class_targets_only"):  # CAM / FinerCAM: the weights are tied to a class index
            case.fault(f"{method} takes class targets only", TargetError)
    case.call["eigen_smooth"] = draw(st.booleans())
    case.call["aug_smooth"] = draw(st.sampled_from([False, False, False, True]))
    return case


def snapshot(model: torch.nn.Module) -> dict[str, Any]:
    return {
        "hooks": hooks_of(model),
        "flags": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "grad_enabled": torch.is_grad_enabled(),
    }


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in ("hooks", "flags", "requires_grad", "grad_enabled"):
        assert before[key] == after[key], key
    for a, b in zip(before["grads"], after["grads"]):
        assert (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b)), ".grad"
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), f"parameter or buffer {k} changed"


def assert_released(model: torch.nn.Module) -> None:
    assert not getattr(camlens_hooks._SCOPES, "stack", []), "a capture scope was left open"
    free: list[bool] = []

    def probe() -> None:  # another thread must be able to take the model's lock at once
        lock = camlens_hooks.model_lock(model)
        got = lock.acquire(timeout=0)
        free.append(got)
        if got:
            lock.release()

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    assert free == [True], "the model's lock is still held"


def check(method: str, case: Case) -> None:
    model = case.kwargs["model"]
    before = snapshot(model)
    result: Any = None
    error: BaseException | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CamLensWarning)
        warnings.filterwarnings("ignore", "Converting a tensor with requires_grad=True to a scalar")
        try:
            cam = get_method(method)(**case.kwargs)
            result = cam(**case.call)
        except Exception as exc:  # judged below
            error = exc
    assert_same(before, snapshot(model))
    assert_released(model)
    if not case.allowed:
        assert error is None, f"faultless case raised {type(error).__name__}: {error}"
        x = case.call["input_tensor"]
        assert isinstance(result, np.ndarray) and result.dtype == np.float32
        assert result.shape == (case.n, *x.shape[-2:])
        assert np.isfinite(result).all()
        assert result.min() >= 0.0 and result.max() <= 1.0
        return
    assert error is not None, f"faults {case.notes} gave no error"
    assert isinstance(error, tuple(case.allowed)), f"faults {case.notes} gave {type(error).__name__}: {error}"
    if isinstance(error, CamLensError):
        assert EXPLAINS_ITSELF.search(str(error)), f"the message does not say what was expected: {error}"
    else:  # the model's own error (wrong channel count): same type, with camlens's context added
        context = camlens_notes(error)  # Python 3.11+: a note; 3.10: appended to the message
        assert len(context) == 1 and "camlens: the model SmallCNN" in context[0], error
        assert "input channels" in context[0]


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=20, **COMMON)
@given(data=st.data())
def test_every_method(method: str, data: st.DataObject) -> None:
    check(method, data.draw(cases(method)))


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=300, **{**COMMON, "derandomize": False})
@given(data=st.data())
def test_every_method_thorough(method: str, data: st.DataObject) -> None:
    check(method, data.draw(cases(method)))
