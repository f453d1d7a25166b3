"""Every ```python block of docs/tasks.md runs (blocks starting with ``# requires: pkg`` are skipped without pkg)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "tasks.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_doc_has_one_example_per_task():
    assert len(BLOCKS) == 4


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=["detection", "segmentation", "embeddings", "clip"][: len(BLOCKS)])
def test_doc_example_runs(index):
    code = BLOCKS[index]
    needs = re.match(r"# requires: (\w+)", code)
    if needs and importlib.util.find_spec(needs.group(1)) is None:
        pytest.skip(f"{needs.group(1)} is not installed")
    torch.manual_seed(0)
    scope: dict = {"__name__": "docs_tasks"}
    exec(compile(code, f"{DOC}:block{index}", "exec"), scope)
    maps = [v for k, v in scope.items() if isinstance(v, np.ndarray) and v.dtype == np.float32 and v.ndim == 3]
    assert maps and all(np.isfinite(m).all() and 0 <= m.min() and m.max() <= 1 for m in maps)
