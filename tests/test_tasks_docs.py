"""docs/tasks.md has one example per task; tests/test_docs_examples.py runs every block of it
(the CLIP block needs transformers, which the ``test`` extra installs; the YOLO block runs where
ultralytics is installed)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "tasks.md"


def test_the_doc_has_one_example_per_task():
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 5
    needles = ("BoxScoreTarget", "YOLOOutputAdapter", "SemanticSegmentationTarget", "concept_embedding", "CLIPModel")
    for needle, block in zip(needles, blocks):
        assert needle in block
