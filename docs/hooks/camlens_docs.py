"""MkDocs hook: everything on the site that comes from the code is generated here, at build time.

* **Method pages** -- one page per registered method (``camlens.registry``), from the class's
  ``formula`` (LaTeX), ``paper``, ``summary``, ``cost`` and docstring. A registered method without
  its own ``formula`` or ``cost`` (or without ``paper``) stops the build (:class:`DocsError`).
* **Figures and gallery** -- the bundled EfficientNet-Lite0 explains scikit-image's ``chelsea()``
  (a cat) and ``coffee()`` (an espresso) with every registered method; PNGs are written into the
  site, never into the repository (cached in ``build/docs-figures/``, keyed by the method's source).
  A method that cannot explain this model as called here (``unsupported_reason(model)`` gives a
  reason, e.g. LeGrad on a CNN, or the method refuses with a camlens error, e.g. RefineCAM with one
  layer, CAM without a pooled linear head) gets no figure; its page and the gallery say why. Any
  other exception stops the build.
* **Maths without network** -- ``$$...$$`` blocks and ``$...$`` inline in any page are converted to
  MathML at build time (``latex2mathml``); browsers render MathML natively, no script needed.
* **Navigation** -- built from the pages present in ``docs/`` (known pages in a fixed order, any
  other page under "More"), so a page added or not yet merged never breaks the build.

Environment: ``CAMLENS_DOCS_FIGURES=0`` builds without figures (quick checks; the pages then say so).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CACHE = ROOT / "build" / "docs-figures"

#: Guides in reading order: (file in docs/, title). Pages that do not exist (yet) are left out.
GUIDES: list[tuple[str, str]] = [
    ("getting-started.md", "Getting started"),
    ("choosing-a-layer.md", "Choosing a layer"),
    ("architectures.md", "Architectures and automatic layers"),
    ("vision-transformers.md", "Vision transformers"),
    ("inputs.md", "Signals, volumes, video and several inputs"),
    ("tasks.md", "Detection, segmentation, embeddings"),
    ("metrics.md", "Judging explanations"),
    ("perturbation.md", "Perturbation methods"),
    ("dataset-runs.md", "Dataset runs and the explorer"),
    ("scale.md", "Runs at scale"),
    ("migrating.md", "Migrating from pytorch-grad-cam"),
    ("cli.md", "Command line"),
    ("engine.md", "The engine's promises"),
]
API_PAGES: list[tuple[str, str]] = [
    ("api/camlens.md", "camlens"),
    ("api/targets.md", "camlens.targets"),
    ("api/image.md", "camlens.image"),
    ("api/metrics.md", "camlens.metrics"),
    ("api/reshape.md", "camlens.reshape"),
    ("api/layers.md", "camlens.layers"),
    ("api/yolo.md", "camlens.yolo"),
]
PHOTOS = [("chelsea", "scikit-image `data.chelsea()`"), ("coffee", "scikit-image `data.coffee()`")]


class DocsError(RuntimeError):
    """The documentation cannot be generated (e.g. a registered method lacks its formula)."""


# --------------------------------------------------------------------------- registry -> pages
def methods() -> list[type]:
    """Every registered method class, in registration order, each checked for what its page needs."""
    from camlens.registry import available_methods, get_method

    classes = [get_method(name) for name in available_methods()]
    problems = []
    for cls in classes:
        for attr in ("formula", "cost"):
            value = cls.__dict__.get(attr)
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{cls.__name__} ({cls.name!r}) has no own class attribute {attr!r}")
        if not str(getattr(cls, "paper", "") or "").strip():
            problems.append(f"{cls.__name__} ({cls.name!r}) has no 'paper'")
    if problems:
        raise DocsError(
            "method pages cannot be generated: " + "; ".join(problems)
            + ". Every registered method class needs `formula = r\"<LaTeX>\"` (the map's formula), "
            "`cost = \"<forward/backward passes>\"` and `paper = \"<authors, title, venue year>\"`."
        )
    return classes


def slug(name: str) -> str:
    """File-name form of a method name (``gradcam++`` -> ``gradcampp``)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower().replace("+", "p")).strip("-")


def _docstring_sections(cls: type) -> tuple[str, str, str]:
    """``(first line, body, example)`` of the class docstring; body in Markdown, example as code."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    first, _, rest = doc.partition("\n")
    example = ""
    m = re.search(r"^Example::\s*\n((?:\n|[ \t]+.*\n?)+)", rest, flags=re.M)
    if m:
        example = textwrap.dedent(m.group(1)).strip("\n")
        rest = rest[: m.start()] + rest[m.end():]
    # reST literal markup -> Markdown: ``x`` -> `x`, :class:`~a.B` -> `B`
    rest = re.sub(r":\w+:`~?([^`]+)`", lambda mm: f"`{mm.group(1).split('.')[-1]}`", rest)
    rest = rest.replace("``", "`")
    return first.strip(), rest.strip(), example


def method_page(cls: type, figure: str | None, note: str | None = None) -> str:
    """Markdown of one method's page. ``figure``: site-relative path of its PNG (None: not built);
    ``note``: why the method has no figure in a build with figures."""
    first, body, example = _docstring_sections(cls)
    aliases = sorted(a for a, n in _aliases().items() if n == cls.name and a != cls.name.replace("-", ""))
    out = [
        f"# {cls.__name__} (`{cls.name}`)",
        "",
        first.replace("``", "`"),
        "",
        "$$",
        cls.__dict__["formula"].strip(),
        "$$",
        "",
        f"**Paper:** {cls.paper}",
        "",
        f"**Cost:** {cls.__dict__['cost']}",
        "",
        f"**In one line:** {getattr(cls, 'summary', '')}",
        "",
        "**Use:** `camlens explain IMAGE --method " + cls.name + "` or `camlens." + cls.__name__ + "(model, ...)`"
        + (f"; also accepted: {', '.join(f'`{a}`' for a in aliases)}" if aliases else "") + ".",
        "",
        "## What camlens does",
        "",
        body or "(no further notes)",
        "",
    ]
    if example:
        out += ["## Example", "", "```python", example, "```", ""]
    out += ["## On two photos", ""]
    if figure:
        out += [
            f"![{cls.__name__} on a cat and an espresso]({figure})",
            "",
            "EfficientNet-Lite0 (bundled ImageNet weights), automatic target layer, each photo's top-1 "
            "class; generated by the docs build. All methods side by side: [gallery](../gallery.md).",
        ]
        lighter = getattr(cls, "figure_options", None)
        if lighter:
            out += ["", "The figure uses lighter settings than the defaults, to keep the docs build short: "
                    + ", ".join(f"`{k}={v!r}`" for k, v in lighter.items()) + "."]
    elif note:
        out += [f"No figure: {note}"]
    else:
        out += ["Figures were not generated in this build (`CAMLENS_DOCS_FIGURES=0`)."]
    out += [
        "",
        "## API",
        "",
        f"::: {cls.__module__}.{cls.__qualname__}",
        "    options:",
        "      show_root_heading: true",
        "      heading_level: 3",
        "      show_root_full_path: false",
        "      show_docstring_description: false",
        "      show_docstring_examples: false",
        "      merge_init_into_class: true",
        "      members: false",
        "",
    ]
    return "\n".join(out)


def _aliases() -> dict[str, str]:
    from camlens import registry

    return dict(registry._ALIASES)


def cost_headline(cost: str) -> str:
    """The part of a ``cost`` before its first ``;`` outside parentheses (the index shows only that)."""
    depth = 0
    for i, ch in enumerate(cost):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == ";" and depth == 0:
            return cost[:i].strip()
    return cost.strip()


def methods_index(classes: list[type]) -> str:
    rows = ["| name | class | in one line | cost | paper |", "| --- | --- | --- | --- | --- |"]
    for cls in classes:
        cost = cost_headline(cls.__dict__["cost"])
        cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731  (a '|' would end the cell)
        rows.append(
            f"| [`{cls.name}`]({slug(cls.name)}.md) | `{cls.__name__}` | {cell(getattr(cls, 'summary', ''))} "
            f"| {cell(cost)} | {cell(cls.paper)} |"
        )
    return "\n".join(
        [
            "# Methods",
            "",
            "Every method registered in `camlens.registry` (this page and the pages below are generated "
            "from the registry when the site is built; `camlens methods` prints the same list).",
            "",
            *rows,
            "",
            "See also the [gallery](../gallery.md): every method on the same two photos.",
            "",
        ]
    )


def gallery(
    classes: list[type],
    figures: dict[str, str] | None,
    labels: list[str] | None = None,
    notes: dict[str, str] | None = None,
) -> str:
    out = [
        "# Gallery",
        "",
        "Every registered method explains the same two real photos (" + " and ".join(p for _, p in PHOTOS)
        + ") with the bundled EfficientNet-Lite0 (ImageNet weights), the automatic target layer and each "
        "photo's top-1 class. The figures are generated by `make docs`.",
        "",
        "Some maps coincide here by design, not by accident: EfficientNet-Lite0 ends in global average "
        "pooling and one linear layer, so the gradient of a class score is the same at every position of "
        "the last feature map. Grad-CAM, HiResCAM and XGrad-CAM then give the same normalised map, and so "
        "do LayerCAM and Grad-CAM element-wise (its activations are non-negative). They differ at inner layers.",
        "",
    ]
    if figures is None:
        out.append("Figures were not generated in this build (`CAMLENS_DOCS_FIGURES=0`).")
        return "\n".join(out)
    if labels:
        out += [f"Classes explained: cat: `{labels[0]}`; espresso: `{labels[1]}`.", ""]
    out.append('<div class="camlens-gallery" markdown>')
    for cls in classes:
        if cls.name not in figures:
            continue
        out += [
            "",
            '<figure markdown="span">',
            f"![{cls.name} on a cat and an espresso]({figures[cls.name]})",
            f"<figcaption markdown=\"span\">[`{cls.name}`](methods/{slug(cls.name)}.md)</figcaption>",
            "</figure>",
        ]
    out += ["", "</div>", ""]
    missing = [cls for cls in classes if cls.name not in figures]
    if missing:
        out += ["Methods without a figure here (they cannot explain this model as the gallery calls them):", ""]
        out += [f"- [`{c.name}`](methods/{slug(c.name)}.md): {(notes or {}).get(c.name, 'no figure')}" for c in missing]
        out.append("")
    return "\n".join(out)


def generate_pages(
    figures: dict[str, str] | None, labels: list[str] | None = None, notes: dict[str, str] | None = None
) -> dict[str, str]:
    """``{path in the site: Markdown}`` of every generated page. ``figures``: method -> PNG path
    relative to ``docs/`` (``None``: built without figures); ``labels``: the two photos' classes;
    ``notes``: method -> why it has no figure (every method missing from ``figures`` needs one)."""
    classes = methods()
    notes = notes or {}
    if figures is not None:
        unexplained = [c.name for c in classes if c.name not in figures and not notes.get(c.name)]
        if unexplained:
            raise DocsError(f"methods without a figure and without a note saying why: {unexplained}")
    pages = {"methods/index.md": methods_index(classes), "gallery.md": gallery(classes, figures, labels, notes)}
    for cls in classes:
        fig = f"../{figures[cls.name]}" if figures is not None and cls.name in figures else None
        pages[f"methods/{slug(cls.name)}.md"] = method_page(cls, fig, notes.get(cls.name))
    for path, module in API_PAGES:
        pages[path] = f"# `{module}`\n\n::: {module}\n"
    pages["api/camlens.md"] = api_camlens(classes)
    return pages


def api_camlens(classes: list[type]) -> str:
    """The top-level package: ``camlens.__all__`` is partly built at import time (every registered
    method is exported), so its members are listed from the imported package, each documented
    where it is defined; the method classes link to their pages."""
    import camlens

    method_names = {cls.__name__ for cls in classes}
    out = [
        "# `camlens`",
        "",
        inspect.cleandoc(camlens.__doc__ or "").split("\n")[0],
        "",
        "## Methods",
        "",
        "Every registered method class is exported by `camlens`; each has its page:",
        "",
        *(f"- [`camlens.{c.__name__}`](../methods/{slug(c.name)}.md): {getattr(c, 'summary', '')}" for c in classes),
        "",
    ]
    for name in camlens.__all__:
        if name in method_names or name.startswith("__"):
            continue
        obj = getattr(camlens, name)
        out += [f"::: {obj.__module__}.{obj.__qualname__}", "    options:", "      show_root_full_path: false", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- figures
def _method_key(cls: type) -> str:
    import camlens

    src = inspect.getsource(inspect.getmodule(cls))  # type: ignore[arg-type]
    return hashlib.sha256(f"{src}\n{getattr(camlens, '__version__', '')}".encode()).hexdigest()[:16]


def make_figures(
    classes: list[type], out_dir: Path = CACHE
) -> tuple[dict[str, Path], list[str], dict[str, str]]:
    """One PNG per method (the two photos side by side, each with its top-1 class's map), the two
    classes' names, and ``{method: why it has no figure}`` for the methods that cannot explain the
    model as called here: ``unsupported_reason(model)`` gives a reason, or the call raises a camlens
    error (a refusal with a message, e.g. RefineCAM given one layer). Any other exception is a bug
    and stops the build.

    Cached in ``out_dir`` under the hash of the method's source file (a refusal as a ``.txt`` file
    next to where the PNG would be); slow for perturbation methods.
    """
    import json

    import numpy as np
    import torch
    from PIL import Image

    from camlens.app.demo import TILE, demo_scene
    from camlens.app.zoo import load_model
    from camlens.errors import CamLensError
    from camlens.image import show_cam_on_image

    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = {cls.name: out_dir / f"{slug(cls.name)}-{_method_key(cls)}.png" for cls in classes}
    refused = {name: png.with_suffix(".txt") for name, png in wanted.items()}
    todo = [cls for cls in classes if not wanted[cls.name].exists() and not refused[cls.name].exists()]
    names_file = out_dir / "classes.json"
    if todo or not names_file.exists():
        torch.manual_seed(0)
        zm = load_model("efficientnet-lite0", "default", "cpu")
        scene, _ = demo_scene()
        tiles = np.stack([scene[:, :TILE], scene[:, TILE:]])
        x = zm.preprocessing.normalize(tiles)
        with torch.no_grad():
            cats = zm.model(x).argmax(dim=1).tolist()
        names = zm.categories
        names_file.write_text(json.dumps([f"{c} {names[c]}" if names else str(c) for c in cats]))
        for cls in todo:
            reason = cls.unsupported_reason(zm.model) if hasattr(cls, "unsupported_reason") else None
            if reason is not None:
                refused[cls.name].write_text(f"{cls.__name__} does not apply to EfficientNet-Lite0: {reason}")
                continue
            try:
                cam = cls(zm.model, target_layers=zm.target_layer, progress=False, **(getattr(cls, "figure_options", None) or {}))
                maps = cam(x, target_category=cats)
            except CamLensError as exc:  # the method refuses this model or this call, with a message
                refused[cls.name].write_text(
                    f"{cls.__name__} cannot be called on EfficientNet-Lite0 with its one automatic target "
                    f"layer, as the gallery calls every method ({type(exc).__name__}: {exc})"
                )
                continue
            except Exception as exc:  # a bug: re-raised with the method's name
                raise DocsError(f"the figure of method {cls.name!r} failed: {type(exc).__name__}: {exc}") from exc
            panels = [show_cam_on_image(tiles[k], maps[k], use_rgb=True) for k in range(2)]
            gap = np.full((TILE, 8, 3), 255, dtype=np.uint8)
            tmp = wanted[cls.name].with_suffix(".tmp.png")
            Image.fromarray(np.concatenate([panels[0], gap, panels[1]], axis=1)).save(tmp, optimize=True)
            tmp.replace(wanted[cls.name])
    current = {*wanted.values(), *refused.values()}
    for stale in {*out_dir.glob("*.png"), *out_dir.glob("*.txt")} - current:  # figures of older sources
        stale.unlink()
    notes = {name: " ".join(path.read_text().split()) for name, path in refused.items() if path.exists()}
    pngs = {name: path for name, path in wanted.items() if name not in notes}
    return pngs, json.loads(names_file.read_text()), notes


def figures_enabled() -> bool:
    return os.environ.get("CAMLENS_DOCS_FIGURES", "1") not in ("0", "no", "false")


# --------------------------------------------------------------------------- maths
_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE = re.compile(r"(?<![\\$\w])\$(?!\s)([^$\n]+?)(?<!\s)\$(?![\w$])")


def latex_to_mathml(tex: str, display: bool) -> str:
    from latex2mathml.converter import convert

    return convert(tex.strip(), display="block" if display else "inline")


def replace_math(markdown: str, store: list[str]) -> str:
    """Replace ``$$..$$`` and ``$..$`` outside code with placeholders; MathML goes into ``store``."""

    def protect(text: str) -> str:
        def inl(m: re.Match[str]) -> str:
            store.append(latex_to_mathml(m.group(1), False))
            return f"CAMLENSMATH{len(store) - 1}X"

        pieces, last = [], 0
        for m in _CODE.finditer(text):
            pieces.append(_INLINE.sub(inl, text[last : m.start()]))
            pieces.append(m.group(0))
            last = m.end()
        pieces.append(_INLINE.sub(inl, text[last:]))
        return "".join(pieces)

    out, last = [], 0
    for m in _FENCE.finditer(markdown):
        out.append(protect(_DISPLAY.sub(lambda d: _display(d, store), markdown[last : m.start()])))
        out.append(m.group(0))
        last = m.end()
    out.append(protect(_DISPLAY.sub(lambda d: _display(d, store), markdown[last:])))
    return "".join(out)


def _display(m: re.Match[str], store: list[str]) -> str:
    store.append(f'<div class="math-display">{latex_to_mathml(m.group(1), True)}</div>')
    return f"\n\nCAMLENSMATH{len(store) - 1}X\n\n"


def restore_math(html_text: str, store: list[str]) -> str:
    text = re.sub(r"<p>CAMLENSMATH(\d+)X</p>", lambda m: store[int(m.group(1))], html_text)
    return re.sub(r"CAMLENSMATH(\d+)X", lambda m: store[int(m.group(1))], text)


# --------------------------------------------------------------------------- README sections
def readme_section(heading: str) -> str | None:
    """The body of README.md's ``## heading`` section (without the heading), or None."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"^## {re.escape(heading)}[^\n]*\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    return m.group(1).strip() if m else None


def include_readme(markdown: str) -> str:
    """``<!-- readme: Heading | fallback text -->`` -> that README section (links fixed for docs/)."""

    def sub(m: re.Match[str]) -> str:
        heading, _, fallback = m.group(1).partition("|")
        body = readme_section(heading.strip())
        if body is None:
            return fallback.strip()
        return body.replace("](docs/", "](")

    return re.sub(r"<!--\s*readme:\s*(.+?)\s*-->", sub, markdown)


# --------------------------------------------------------------------------- offline check
_ASSET = re.compile(r"<(script|link|img|iframe|source)\b[^>]*?\b(src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I | re.S)
_CSS_URL = re.compile(r"(?:@import\s+|url\()\s*[\"']?((?:https?:)?//[^\"')\s]+)", re.I)


def external_assets(site_dir: Path) -> list[str]:
    """Every script, style sheet, font, image or frame the built site would load from another host:
    ``<script src>``, ``<link href>``, ``<img src>``, ``<iframe src>``, ``<source src>`` in HTML and
    ``url(...)`` / ``@import`` in CSS, whose address is absolute (``http(s)://`` or ``//``).
    Plain links (``<a href>``) are not loads and are allowed."""
    found = []
    for path in sorted(Path(site_dir).rglob("*")):
        if path.suffix == ".html":
            for m in _ASSET.finditer(path.read_text(encoding="utf-8", errors="replace")):
                if re.match(r"(?:https?:)?//", m.group(3).strip(), re.I):
                    found.append(f"{path.relative_to(site_dir)}: <{m.group(1)} {m.group(2)}={m.group(3)}>")
        elif path.suffix == ".css":
            for m in _CSS_URL.finditer(path.read_text(encoding="utf-8", errors="replace")):
                found.append(f"{path.relative_to(site_dir)}: {m.group(1)}")
    return found


# --------------------------------------------------------------------------- MkDocs events
_STATE: dict[str, Any] = {}


def on_config(config: Any) -> Any:
    import camlens  # noqa: F401  (fail early if the sources are not importable)

    classes = methods()
    guides = [{title: f} for f, title in GUIDES if (DOCS / f).exists()]
    known = {"index.md", *(f for f, _ in GUIDES)}
    more = sorted(
        p.relative_to(DOCS).as_posix()
        for p in DOCS.rglob("*.md")
        if p.relative_to(DOCS).as_posix() not in known and p.relative_to(DOCS).parts[0] != "hooks"
    )
    nav: list[Any] = [{"Home": "index.md"}, {"Guides": guides}]
    nav.append({"Methods": [{"Overview": "methods/index.md"}] + [{c.name: f"methods/{slug(c.name)}.md"} for c in classes]})
    nav.append({"Gallery": "gallery.md"})
    nav.append({"API reference": [{m: p} for p, m in API_PAGES]})
    if more:
        nav.append({"More": more})
    config["nav"] = nav
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    classes = methods()
    figures: dict[str, str] | None = None
    labels: list[str] | None = None
    notes: dict[str, str] = {}
    if figures_enabled():
        pngs, labels, notes = make_figures(classes)
        figures = {}
        for cls in classes:
            if cls.name not in pngs:
                continue
            uri = f"figures/{slug(cls.name)}.png"
            files.append(File.generated(config, uri, content=pngs[cls.name].read_bytes()))
            figures[cls.name] = uri
    for uri, text in generate_pages(figures, labels, notes).items():
        files.append(File.generated(config, uri, content=text))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    store: list[str] = []
    _STATE[page.file.src_uri] = store
    return replace_math(include_readme(markdown), store)


def on_page_content(html_text: str, page: Any, config: Any, files: Any) -> str:
    return restore_math(html_text, _STATE.pop(page.file.src_uri, []))


def on_post_build(config: Any) -> None:
    """Fail the build if any page would load a script, style sheet or font from another host."""
    found = external_assets(Path(config["site_dir"]))
    if found:
        raise DocsError("the site must work offline, but it loads from other hosts:\n  " + "\n  ".join(found))


__all__ = [
    "DocsError",
    "external_assets",
    "generate_pages",
    "make_figures",
    "methods",
    "replace_math",
    "restore_math",
    "slug",
]
