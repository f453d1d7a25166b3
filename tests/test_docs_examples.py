"""Every code example in the documentation runs: a failing example fails the tests.

Three kinds of example are collected and executed:

* ``>>>`` doctests in every module of ``camlens`` (run as written, nothing skipped);
* every ``Example::`` block in a ``camlens`` docstring (every registered method must have one: it
  is also shown on the method's docs page);
* every ```` ```python ```` block in ``README.md`` and ``docs/**/*.md`` (the guides).

The docstring and Markdown examples are fragments that use a few names they do not define; each
runs in a fresh namespace (:func:`example_namespace`) that binds them to small real objects:
``model`` (torchvision ResNet-18, random weights), ``x`` / ``batch`` / ``input_tensor`` (a
``(2, 3, 32, 32)`` batch), ``rgb_float_image``, ``loader`` (one ``(x, labels, boxes)`` batch),
``MEAN`` / ``STD`` (ImageNet's), ``torch``, ``np``, ``torchvision``, every name ``camlens`` and
``camlens.targets`` export, and ``vit`` / ``swin`` (tiny random timm models at 64 px).

A block (Markdown or ``Example::``) that cannot run here (a download, a file that is not in the
repository) starts with the comment ``# docs: skip <reason>``; such blocks are reported as skipped tests with their
reason, so they stay visible (``pytest -rs``). A block that needs an optional package outside the ``test``
extra starts with ``# docs: requires <module> ...`` and runs where the modules import (skipped elsewhere).
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import camlens
from camlens.registry import available_methods, get_method

ROOT = Path(__file__).resolve().parents[1]
SKIP = re.compile(r"^\s*#\s*docs:\s*skip\b\s*(.*)$")
REQUIRES = re.compile(r"^\s*#\s*docs:\s*requires\s+(\S.*)$")


# --------------------------------------------------------------------------- the namespace
_MODELS: dict[str, torch.nn.Module] = {}


def _model(kind: str) -> torch.nn.Module:
    import copy

    if kind not in _MODELS:
        torch.manual_seed(0)
        if kind == "resnet18":
            import torchvision

            _MODELS[kind] = torchvision.models.resnet18(weights=None).eval()
        elif kind == "vit":
            timm = pytest.importorskip("timm")
            _MODELS[kind] = timm.create_model(
                "vit_tiny_patch16_224", pretrained=False, img_size=64, depth=2
            ).eval()
        elif kind == "swin":
            timm = pytest.importorskip("timm")
            _MODELS[kind] = timm.create_model(
                "swin_tiny_patch4_window7_224", pretrained=False, img_size=64, window_size=2,
                depths=(1, 1, 1, 1), embed_dim=24, num_heads=(1, 1, 1, 1),
            ).eval()
    return copy.deepcopy(_MODELS[kind])


def example_namespace() -> dict:
    import numpy as np
    import torchvision

    import camlens.targets

    ns: dict = {"__name__": "__docs_example__"}
    ns.update({name: getattr(camlens, name) for name in camlens.__all__ if not name.startswith("__")})
    ns.update({name: getattr(camlens.targets, name) for name in getattr(camlens.targets, "__all__", [])})
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([281, 243])
    boxes = [torch.tensor([[4.0, 4.0, 20.0, 20.0]]), torch.tensor([[10.0, 0.0, 31.0, 16.0]])]
    ns.update(
        torch=torch,
        np=np,
        torchvision=torchvision,
        camlens=camlens,
        model=_model("resnet18"),
        x=x,
        batch=x,
        input_tensor=x,
        rgb_float_image=x[0].permute(1, 2, 0).numpy(),
        loader=[(x, labels, boxes)],
        MEAN=(0.485, 0.456, 0.406),
        STD=(0.229, 0.224, 0.225),
    )
    return ns


def run_example(code: str, where: str) -> None:
    ns = example_namespace()  # the transformers are built only for the examples that use them
    for name in ("vit", "swin"):
        if re.search(rf"\b{name}\b", code):
            ns[name] = _model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, where, "exec"), ns)  # noqa: S102


# --------------------------------------------------------------------------- doctests
def _camlens_modules() -> list[str]:
    names = ["camlens"]
    for info in pkgutil.walk_packages(camlens.__path__, "camlens."):
        names.append(info.name)
    return sorted(names)


def _doctests() -> list[tuple[str, doctest.DocTest]]:
    found = []
    finder = doctest.DocTestFinder(exclude_empty=True)
    for name in _camlens_modules():
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional extra that is not installed
            continue
        for test in finder.find(module, name):
            if test.examples:
                found.append((test.name, test))
    return found


DOCTESTS = _doctests()


def test_doctests_found() -> None:
    assert len(DOCTESTS) >= 4, [n for n, _ in DOCTESTS]


@pytest.mark.parametrize("test", [t for _, t in DOCTESTS], ids=[n for n, _ in DOCTESTS])
def test_doctest(test: doctest.DocTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    skipped = [e.source for e in test.examples if e.options.get(doctest.SKIP)]
    assert not skipped, f"{test.name}: doctest examples marked +SKIP never run; make them run: {skipped}"
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


# --------------------------------------------------------------------------- method examples
def method_example(cls: type) -> str | None:
    doc = inspect.cleandoc(cls.__doc__ or "")
    m = re.search(r"^Example::\s*\n((?:\n|[ \t]+.*\n?)+)", doc, flags=re.M)
    return textwrap.dedent(m.group(1)).strip("\n") if m else None


METHODS = available_methods()


@pytest.mark.parametrize("name", METHODS)
def test_method_docstring_has_example(name: str) -> None:
    cls = get_method(name)
    assert method_example(cls), f"{cls.__name__}'s docstring needs an 'Example::' block (shown on its docs page)"


def _docstring_examples() -> list[tuple[str, str]]:
    """``(qualified name, code)`` of every ``Example::`` block in any docstring of ``camlens``:
    modules, classes (registered methods included), functions and methods."""
    found: dict[str, str] = {}

    def visit(qualname: str, obj: object) -> None:
        doc = inspect.getdoc(obj) if not isinstance(obj, type) else inspect.cleandoc(obj.__doc__ or "")
        for k, m in enumerate(re.finditer(r"^Example::\s*\n((?:\n|[ \t]+.*\n?)+)", doc or "", flags=re.M)):
            found[qualname + (f"[{k}]" if k else "")] = textwrap.dedent(m.group(1)).strip("\n")

    for name in _camlens_modules():
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        visit(name, module)
        for attr, obj in vars(module).items():
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", None) == name:
                visit(f"{name}.{attr}", obj)
                if inspect.isclass(obj):
                    for member, value in vars(obj).items():
                        if inspect.isfunction(value) and value.__doc__:
                            visit(f"{name}.{attr}.{member}", value)
    return sorted(found.items())


EXAMPLES = _docstring_examples()


def test_docstring_examples_found() -> None:
    names = {q for q, _ in EXAMPLES}
    for method in METHODS:
        cls = get_method(method)
        assert f"{cls.__module__}.{cls.__name__}" in names


@pytest.mark.parametrize("where,code", EXAMPLES, ids=[q for q, _ in EXAMPLES])
def test_docstring_example_runs(where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _skip_if_marked(code, where)
    monkeypatch.chdir(tmp_path)
    run_example(code, f"<{where} docstring example>")


def _skip_if_marked(code: str, where: str) -> None:
    first = code.strip().split("\n")[0]
    m = SKIP.match(first)
    if m:
        assert m.group(1).strip(), f"{where}: '# docs: skip' needs a reason"
        pytest.skip(f"{where}: {m.group(1).strip()}")
    m = REQUIRES.match(first)
    if m:  # an optional package outside the test extra: the block runs where it is installed
        for module in m.group(1).split():
            pytest.importorskip(module, reason=f"{where} needs {module}", exc_type=ImportError)


# --------------------------------------------------------------------------- guides and README
def markdown_blocks(path: Path) -> list[tuple[int, str]]:
    """``(line, code)`` of every ```python block in a Markdown file."""
    blocks = []
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        if re.match(r"^\s*```\s*python\s*$", lines[i]):
            start = i + 1
            j = start
            while not re.match(r"^\s*```\s*$", lines[j]):
                j += 1
            blocks.append((start + 1, textwrap.dedent("\n".join(lines[start:j]))))
            i = j
        i += 1
    return blocks


MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [(p, line, code) for p in MARKDOWN for line, code in markdown_blocks(p)]


def test_markdown_blocks_found() -> None:
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize(
    "path,line,code", BLOCKS, ids=[f"{p.relative_to(ROOT)}:{line}" for p, line, _ in BLOCKS]
)
def test_markdown_example_runs(path: Path, line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _skip_if_marked(code, f"{path.relative_to(ROOT)}:{line}")
    monkeypatch.chdir(tmp_path)
    run_example(code, f"{path.relative_to(ROOT)}:{line}")
