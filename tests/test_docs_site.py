"""The docs site's generator (docs/hooks/camlens_docs.py): every registered method gets a page with
its formula and figure, a method without a formula stops the build, maths becomes MathML, and the
built site loads nothing from another host.

The generator is called directly (no MkDocs needed, figures not rendered): fast. The full strict
build without figures is the one slow test here; ``make docs`` builds everything, figures included.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from camlens import registry
from camlens.registry import available_methods, get_method

ROOT = Path(__file__).resolve().parents[1]


def _load_generator():
    spec = importlib.util.spec_from_file_location("camlens_docs", ROOT / "docs" / "hooks" / "camlens_docs.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
METHODS = available_methods()


@pytest.mark.parametrize("name", METHODS)
def test_method_class_declares_what_its_page_needs(name: str) -> None:
    cls = get_method(name)
    for attr in ("formula", "cost"):
        assert isinstance(cls.__dict__.get(attr), str) and cls.__dict__[attr].strip(), (
            f"{cls.__name__} needs its own class attribute {attr!r} (see docs/hooks/camlens_docs.py)"
        )
    assert str(getattr(cls, "paper", "")).strip()


@pytest.mark.parametrize("name", METHODS)
def test_formula_is_latex_that_converts_to_mathml(name: str) -> None:
    pytest.importorskip("latex2mathml")
    mathml = gen.latex_to_mathml(get_method(name).formula, display=True)
    assert mathml.startswith("<math") and "<mi>" in mathml
    assert "merror" not in mathml


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    figures = {name: f"figures/{gen.slug(name)}.png" for name in METHODS}
    return gen.generate_pages(figures)


@pytest.mark.parametrize("name", METHODS)
def test_every_method_has_a_page_with_formula_and_figure(pages: dict[str, str], name: str) -> None:
    cls = get_method(name)
    page = pages[f"methods/{gen.slug(name)}.md"]
    formula = re.search(r"^\$\$\n(.+?)\n\$\$$", page, flags=re.S | re.M)
    assert formula and formula.group(1) == cls.formula.strip()
    assert f"![{cls.__name__} on a cat and an espresso](../figures/{gen.slug(name)}.png)" in page
    assert cls.paper in page and cls.__dict__["cost"] in page
    assert f"::: {cls.__module__}.{cls.__qualname__}" in page
    assert f"[`{name}`](methods/{gen.slug(name)}.md)" in pages["gallery.md"]
    assert f"({gen.slug(name)}.png)" in pages["gallery.md"].replace("figures/", "")
    assert f"[`{name}`]({gen.slug(name)}.md)" in pages["methods/index.md"]


def test_pages_without_figures_say_so() -> None:
    pages = gen.generate_pages(None)
    assert "not generated" in pages["gallery.md"]
    assert "![" not in pages["methods/gradcam.md"]


def test_slugs_are_distinct_file_names() -> None:
    slugs = [gen.slug(n) for n in METHODS]
    assert len(set(slugs)) == len(slugs)
    assert gen.slug("gradcam++") == "gradcampp"


def test_method_without_formula_stops_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoFormula(get_method("gradcam")):
        """A registered method that forgot its formula."""

        paper = "Nobody, 2026"
        cost = "one forward pass"

    NoFormula.name = "noformula"
    monkeypatch.setitem(registry._METHODS, "noformula", NoFormula)
    monkeypatch.setitem(registry._ALIASES, "noformula", "noformula")
    with pytest.raises(gen.DocsError, match=r"NoFormula \('noformula'\) has no own class attribute 'formula'"):
        gen.generate_pages(None)


def test_math_outside_code_becomes_mathml_and_code_is_left_alone() -> None:
    pytest.importorskip("latex2mathml")
    store: list[str] = []
    md = "Inline $w_k$ here, `not $code$`.\n\n$$\n\\frac{a}{b}\n$$\n\n```python\nx = '$y$'\n```\n"
    out = gen.replace_math(md, store)
    assert "`not $code$`" in out and "x = '$y$'" in out
    assert len(store) == 2
    html = gen.restore_math(f"<p>{out}</p>", store)
    assert "<mfrac>" in html and "CAMLENSMATH" not in html


def test_readme_sections_are_included_by_heading(tmp_path: Path) -> None:
    assert gen.readme_section("Two commands") is not None
    assert gen.include_readme("<!-- readme: No such heading | fallback -->") == "fallback"


def test_external_assets_are_found(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text(
        '<a href="https://example.org/">a plain link is fine</a>'
        '<script src="https://cdn.example.org/x.js"></script>'
        '<link rel="stylesheet" href="//fonts.googleapis.com/css?family=Roboto">'
        '<script src="assets/local.js"></script>'
    )
    (tmp_path / "s.css").write_text("@font-face{src:url(https://fonts.gstatic.com/r.woff2)} a{background:url(data:x)}")
    found = gen.external_assets(tmp_path)
    assert len(found) == 3, found
    assert any("cdn.example.org" in f for f in found)
    assert any("fonts.googleapis.com" in f for f in found)
    assert any("fonts.gstatic.com" in f for f in found)


def test_nav_lists_only_pages_that_exist() -> None:
    config = gen.on_config({})
    flat = repr(config["nav"])
    for page, _ in gen.GUIDES:
        assert (page in flat) == (ROOT / "docs" / page).exists(), page


@pytest.mark.slow
def test_strict_build_is_offline(tmp_path: Path) -> None:
    """``mkdocs build --strict`` (figures off) succeeds and the site loads nothing from other hosts."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    env = {**os.environ, "CAMLENS_DOCS_FIGURES": "0", "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    site = tmp_path / "site"
    proc = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(site)], check=False, cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-3000:]
    assert gen.external_assets(site) == []
    for name in METHODS:
        html = (site / "methods" / f"{gen.slug(name)}.html").read_text()
        assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">' in html
