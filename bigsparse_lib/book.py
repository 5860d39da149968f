"""Build the book: execute each chapter with papermill at a scale, then jupyter-book to HTML.

Chapters are jupytext MyST-markdown notebooks in `chapters/` with a `parameters` cell
(`scale = "toy"`). `build()`:

1. copies the book's frame (`_config.yml`, `_toc.yml`, `references.bib`, `intro.md`...)
   into a staging folder (`_executed/<scale>/`);
2. converts every chapter listed in `_toc.yml` to a notebook and executes it with
   papermill (parameter `scale`), in the repository root so that chapters read the
   same relative paths whether run by hand or here; a chapter whose source, scale and
   library code are unchanged since its last successful run is not run again;
3. runs `jupyter-book build` on the staging folder, writing `_build/html/`.

A cell that raises stops the build with the chapter's name: a page with an error
output never reaches the book.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bigsparse_lib.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SCALES = ("smoke", "toy", "full")
FRAME = ("_config.yml", "_toc.yml", "references.bib")
KERNEL = "python3"


def check_scale(scale) -> str:
    """A chapter's papermill parameter `scale`, or InputError naming the allowed values.

    Papermill injects `-p scale ...` in a cell *after* the one tagged `parameters`, so each
    chapter calls this first thing in the cell that follows it.
    """
    if scale not in SCALES:
        raise InputError(f"parameter scale must be one of {', '.join(map(repr, SCALES))}, got {scale!r} "
                         f"(papermill -p scale ...)")
    return scale


@dataclass(frozen=True)
class ChapterRun:
    name: str
    seconds: float
    cached: bool


def chapters(root: Path = ROOT) -> list[str]:
    """Chapter paths (without suffix, relative to the root) in `_toc.yml` order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                names.append(e["file"])
            walk(e.get("sections"))
            for part in e.get("parts", []) or []:
                walk(part.get("chapters"))

    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return [n for n in names if (root / f"{n}.md").is_file()]


def _library_digest(root: Path) -> str:
    """A hash of the library's source: a changed library re-executes every chapter."""
    h = hashlib.sha256()
    for p in sorted((root / "bigsparse_lib").rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _chapter_digest(source: Path, scale: str, library: str) -> str:
    return hashlib.sha256(source.read_bytes() + scale.encode() + library.encode()).hexdigest()


def execute_chapter(name: str, scale: str, out: Path, *, root: Path = ROOT, library: str | None = None,
                    log_output: bool = False) -> ChapterRun:
    """Execute one chapter with papermill into `out/<name>.ipynb`; skip it if up to date."""
    import jupytext
    import nbformat
    import papermill

    source = root / f"{name}.md"
    target = out / f"{name}.ipynb"
    digest = _chapter_digest(source, scale, library or _library_digest(root))
    if target.is_file():
        meta = nbformat.read(target, as_version=4).metadata.get("bigsparse", {})
        if meta.get("digest") == digest:
            return ChapterRun(name, 0.0, True)
    target.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    unexecuted = target.with_suffix(".input.ipynb")
    nbformat.write(nb, unexecuted)
    t0 = time.perf_counter()
    # The kernel inherits this process's environment; MPLBACKEND=Agg (set by make and the tests)
    # would make plt.show() draw nothing, so the kernel gets the inline backend that records figures.
    backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        papermill.execute_notebook(
            str(unexecuted), str(target), parameters={"scale": scale}, kernel_name=KERNEL,
            cwd=str(root), progress_bar=False, log_output=log_output,
        )
    except papermill.PapermillExecutionError as e:
        target.unlink(missing_ok=True)  # never leave a notebook with an error output behind
        raise RuntimeError(f"chapter {name} failed at scale {scale!r}: {e.ename}: {e.evalue}") from None
    finally:
        unexecuted.unlink(missing_ok=True)
        if backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = backend
    seconds = time.perf_counter() - t0
    done = nbformat.read(target, as_version=4)
    done.metadata["bigsparse"] = {"digest": digest, "scale": scale, "seconds": round(seconds, 1)}
    for cell in done.cells:  # the page shows the injected values (the scale it ran at), not the defaults too
        if "parameters" in cell.metadata.get("tags", []):
            cell.metadata["tags"] = [*cell.metadata["tags"], "remove-cell"]
    nbformat.write(done, target)
    return ChapterRun(name, seconds, False)


def build(scale: str = "toy", *, root: Path = ROOT, stage: Path | None = None, html: bool = True,
          only: list[str] | None = None, force: bool = False, output: Path | None = None) -> list[ChapterRun]:
    """Execute the chapters at `scale` and (optionally) build the HTML into `<output>/_build/html`.

    `output` defaults to the repository root; `stage` (the executed notebooks) to `_executed/<scale>`.
    """
    if scale not in SCALES:
        raise InputError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    stage = stage or root / "_executed" / scale
    if force and stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True, exist_ok=True)
    for name in FRAME:
        shutil.copy2(root / name, stage / name)
    for extra in ("images",):
        if (root / extra).is_dir():
            shutil.copytree(root / extra, stage / extra, dirs_exist_ok=True)
    library = _library_digest(root)
    names = chapters(root)
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise InputError(f"--only: unknown chapter(s) {', '.join(unknown)}; chapters are {', '.join(names)}")
        names = [n for n in names if n in only]
    runs = []
    for name in names:
        print(f"[book] {name} ({scale}) ...", file=sys.stderr, flush=True)
        run = execute_chapter(name, scale, stage, root=root, library=library)
        print(f"[book] {name}: {'up to date' if run.cached else f'{run.seconds:.1f} s'}", file=sys.stderr, flush=True)
        runs.append(run)
    if html:
        env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        # Sphinx re-reads only the pages whose source changed and keeps the others' resolved
        # citations in its pickled environment, but citations resolve across pages (the
        # bibliography lives in the appendix): after any re-execution, start from a fresh one.
        out = Path(output or root)
        if any(not r.cached for r in runs):
            shutil.rmtree(out / "_build" / ".doctrees", ignore_errors=True)  # every page is then re-read and written
        subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(stage),
                        "--path-output", str(out), "--quiet"], check=True, env=env)
    return runs
