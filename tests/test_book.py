"""The book: every chapter runs at smoke scale through papermill, and the HTML builds without errors."""
from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import pytest

from bigsparse_lib import book

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = book.chapters(ROOT)


def test_toc_chapters_exist_and_take_a_scale_parameter():
    assert CHAPTERS[0] == "chapters/intro" and len(CHAPTERS) >= 5
    for name in CHAPTERS:
        nb = jupytext.read(ROOT / f"{name}.md")
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, f"{name}: needs exactly one cell tagged 'parameters'"
        assert re.search(r'^scale\s*=\s*"toy"', params[0].source, re.M), f"{name}: default scale must be 'toy'"
        text = (ROOT / f"{name}.md").read_text()
        assert "## Try it" in text, f"{name}: ends with a 'Try it' section for students"


@pytest.fixture(scope="module")
def stage(smoke_stage):
    return smoke_stage  # shared with the session's smoke build (conftest.py), so the chapters run once


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_executes_at_smoke_scale(name, stage, released):
    released("t5"), released("vit"), released("chinchilla")  # the chapters read them; skip without them
    (stage / f"{name}.ipynb").unlink(missing_ok=True)  # a fresh run even if the shared build came first
    run = book.execute_chapter(name, "smoke", stage, root=ROOT)
    nb = nbformat.read(stage / f"{name}.ipynb", as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert nb.metadata["bigsparse"]["scale"] == "smoke" and not run.cached
    # the injected parameters cell sets the scale
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'scale = "smoke"' in injected[0].source
    # every chapter shows at least one figure
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{name} shows no figure"
    # a second execution with nothing changed is skipped
    assert book.execute_chapter(name, "smoke", stage, root=ROOT).cached


@pytest.mark.slow
@pytest.mark.book
def test_html_builds_with_figures_and_no_error_output(smoke_html):
    html = smoke_html  # book.build("smoke", stage=<the shared stage>, output=<tmp>) in conftest.py
    for name in CHAPTERS:
        page = (html / f"{name}.html").read_text()
        assert "<img" in page, f"{name}.html has no figure"
        assert "Traceback" not in page and 'class="output traceback' not in page, f"{name}.html shows an error"
        assert "math notranslate" in page, f"{name}.html has no math"
        # every citation links to its entry in the book's bibliography (an unknown key renders as "[]")
        for cite in re.findall(r'<span class="bibtex-citation"[^>]*>(.*?)</span>', page, re.S):
            assert 'class="reference internal"' in cite, f"{name}.html has an unresolved citation: {cite!r}"
    assert (html / "index.html").is_file()
    assert "To prune, or not to prune" in (html / "chapters" / "appendix.html").read_text()  # the bibliography
