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


def _note(log, name):
    """A chapter stand-in for `book.schedule`: records when it ran (module-level, so it pickles)."""
    import time
    t0 = time.time()
    time.sleep(0.3)
    Path(log, name.replace("/", "_")).write_text(f"{t0} {time.time()}")
    if name == "boom":
        raise RuntimeError("boom failed")
    return name.upper()


def _spans(log):
    return {p.name.replace("_", "/"): tuple(map(float, p.read_text().split())) for p in Path(log).iterdir()}


@pytest.mark.parametrize("jobs", [1, 2])
def test_schedule_runs_each_chapter_after_those_it_names(tmp_path, jobs):
    import functools
    names = ["intro", "sweeps", "law", "uses", "also", "tail"]
    deps = {"uses": ("sweeps",), "also": ("sweeps", "law"), "law": ("not-selected",)}
    order = []
    out = book.schedule(names, deps, jobs, functools.partial(_note, tmp_path), started=order.append)
    assert out == [n.upper() for n in names]  # results in the given order
    spans = _spans(tmp_path)
    for n, ds in deps.items():
        for d in ds:
            if d in spans:
                assert spans[n][0] >= spans[d][1], f"{n} started before {d} ended"
    overlaps = sum(1 for a in names for b in names if a < b
                   and spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1])
    assert overlaps == 0 if jobs == 1 else overlaps >= 1  # 2 jobs: some chapters did run side by side
    assert order[:2] == ["intro", "sweeps"]  # ready chapters start in table-of-contents order


@pytest.mark.parametrize("jobs", [1, 2])
def test_schedule_stops_starting_chapters_after_a_failure(tmp_path, jobs):
    import functools
    names = ["a", "boom", "b", "c"]
    deps = {"b": ("boom",), "c": ("b",)}
    with pytest.raises(RuntimeError, match="boom failed"):
        book.schedule(names, deps, jobs, functools.partial(_note, tmp_path))
    assert "b" not in _spans(tmp_path) and "c" not in _spans(tmp_path)


def test_schedule_refuses_a_cycle_and_after_names_a_chapter(tmp_path):
    with pytest.raises(book.InputError, match="cycle"):
        book.schedule(["a", "b"], {"a": ("b",), "b": ("a",)}, 1, str)
    with pytest.raises(book.InputError, match="cycle"):
        book.schedule(["a", "b"], {"a": ("b",), "b": ("a",)}, 2, str)
    # the chapters that read the main sweeps say so; the analytic ones wait for nothing
    assert book.after("chapters/core_law_sweep", ROOT) == ("chapters/sweeps",)
    assert book.after("chapters/core_law", ROOT) == ()
    bad = tmp_path / "book"
    (bad / "chapters").mkdir(parents=True)
    (bad / "_toc.yml").write_text("format: jb-book\nroot: chapters/a\nchapters:\n  - file: chapters/b\n")
    front = "---\nkernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\nbigsparse:\n  after: {}\n---\n# x\n"
    (bad / "chapters" / "a.md").write_text(front.format("[chapters/nowhere]"))
    (bad / "chapters" / "b.md").write_text(front.format("chapters/a"))
    with pytest.raises(book.InputError, match="chapters/nowhere"):
        book.after("chapters/a", bad)
    with pytest.raises(book.InputError, match="must be a list"):
        book.after("chapters/b", bad)


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


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_book_jobs_must_be_a_positive_whole_number(jobs, capsys):
    from bigsparse_lib.cli import main

    with pytest.raises(SystemExit) as e:
        main(["book", "--jobs", jobs, "--no-html"])
    assert e.value.code == 2
    assert f"argument --jobs: must be a whole number >= 1, got '{jobs}'" in capsys.readouterr().err


@pytest.mark.parametrize("quiet", [True, False])
def test_a_chapter_kernel_is_shut_down_without_an_interrupt(quiet):
    """jupyter_client's own manager interrupts a kernel before shutting it down (the ERROR line
    "KeyboardInterrupt caught in kernel" of busy builds); the chapters' manager does not."""
    import asyncio
    import signal

    from jupyter_client import AsyncKernelManager

    cls = book.kernel_manager() if quiet else AsyncKernelManager
    sent = []

    async def run():
        km = cls(kernel_name=book.KERNEL)
        await km.start_kernel()
        real = km._async_signal_kernel

        async def spy(signum):
            sent.append(signum)
            await real(signum)

        km._async_signal_kernel = spy
        await km.shutdown_kernel()
        assert not await km.is_alive()

    asyncio.run(run())
    assert (signal.SIGINT in sent) is not quiet
