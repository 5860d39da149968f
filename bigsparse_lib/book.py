"""Build the book: execute each chapter with papermill at a scale, then jupyter-book to HTML.

Chapters are jupytext MyST-markdown notebooks in `chapters/` with a `parameters` cell
(`scale = "toy"`). `build()`:

1. copies the book's frame (`_config.yml`, `_toc.yml`, `references.bib`, `intro.md`...)
   into a staging folder (`_executed/<scale>/`);
2. converts every chapter listed in `_toc.yml` to a notebook and executes it with
   papermill (parameter `scale`), in the repository root so that chapters read the
   same relative paths whether run by hand or here; a chapter whose source, scale and
   library code are unchanged since its last successful run is not run again. Two chapters
   (`default_jobs`) execute at once, each after those its front matter names (`after`,
   `schedule`): the chapters that read the main sweeps wait for the `sweeps` chapter;
3. runs `jupyter-book build` on the staging folder, writing `_build/html/`, and copies the
   figures' data (CSV files the chapters write through `bigsparse_lib.figures`) to
   `_build/html/data/`, next to the pages that link them.

The repository URL is one setting, `repository.url` in `_config.yml`, overridden by the
environment variable `BIGSPARSE_REPO_URL` or `bigsparse book --repo-url`. Empty (the default),
the book has no repository, issues or launch buttons. Set, the build turns them on and writes
the launch targets: one notebook per chapter under `notebooks/` (`write_notebooks`), which the
Colab and Binder buttons open at `<url>/blob/<branch>/notebooks/<chapter>.ipynb`. They exist on
GitHub once the published branch (`repository.branch`) carries the `notebooks/` folder.

A cell that raises stops the build with the chapter's name: a page with an error
output never reaches the book.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
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
REPO_ENV = "BIGSPARSE_REPO_URL"
NOTEBOOKS = "notebooks"  # the launch targets, relative to the repository root (= repository.path_to_book)
FIGURE_DATA = "data"     # figure CSVs: <stage>/data/<chapter>/<figure>.csv -> _build/html/data/...
_GITHUB = re.compile(r"https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


def default_jobs() -> int:
    """Chapters executed at once by default: 2 where there are 2 cores or more, else 1.

    A rebuild re-executes every chapter against cached sweeps: mostly fits, plots and kernel
    start-up, which keep about one core busy each. On a 2-core Xeon, 2 at once took a toy
    rebuild from 394 s to 254 s, and with the fits' compilation cache to 198 s against 348 s
    (`bench/book.py --rebuild`). More would only share the same cores while a sweep trains."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


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


def after(name: str, root: Path = ROOT) -> tuple[str, ...]:
    """The chapters `name` executes after: its front matter's `bigsparse: after: [...]`.

    A chapter that reads the runs another chapter trains (the main sweeps) names it there;
    chapters that name nothing may execute while others do (`schedule`)."""
    import yaml

    text = (root / f"{name}.md").read_text()
    front = text.split("\n---", 1)[0][4:] if text.startswith("---\n") else ""
    meta = (yaml.safe_load(front) or {}).get("bigsparse", {}) or {}
    deps = meta.get("after", []) or []
    if isinstance(deps, str) or not all(isinstance(d, str) for d in deps):
        raise InputError(f"{name}.md: front matter 'bigsparse: after:' must be a list of chapter paths, got {deps!r}")
    known = set(chapters(root))
    unknown = [d for d in deps if d not in known]
    if unknown:
        raise InputError(f"{name}.md: 'bigsparse: after:' names {', '.join(unknown)}, not a chapter of _toc.yml")
    return tuple(deps)


def schedule(names: list[str], deps: dict[str, tuple[str, ...]], jobs: int, run, *, started=None,
             finished=None) -> list:
    """Call `run(name)` for each of `names`, up to `jobs` at once, each only after the chapters
    `deps[name]` among `names` have finished; returns the results in `names`' order.

    Ready chapters start in `names`' (table of contents) order. `run` executes in worker
    processes when `jobs` > 1 (so it must pickle), in this process when `jobs` is 1. After a
    failure no chapter starts; those running finish, then the first error is raised.
    `started(name)` and `finished(name, result)` are called in this process as each chapter
    starts and ends (the build's progress lines).
    """
    order = {n: i for i, n in enumerate(names)}
    need = {n: {d for d in deps.get(n, ()) if d in order} for n in names}
    for n in names:
        if n in need[n]:
            raise InputError(f"{n} cannot execute after itself (front matter 'bigsparse: after:')")
    results: dict[str, object] = {}
    if jobs <= 1:
        done: set[str] = set()
        while len(done) < len(names):
            ready = [n for n in names if n not in done and need[n] <= done]
            if not ready:
                raise InputError(f"chapters wait for each other in a cycle: {', '.join(n for n in names if n not in done)}")
            n = ready[0]
            if started:
                started(n)
            results[n] = run(n)
            done.add(n)
            if finished:
                finished(n, results[n])
        return [results[n] for n in names]

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    done, running, error = set(), {}, None
    # spawn, not fork: the workers start kernels and JAX, neither of which is fork-safe
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        while len(done) < len(names):
            if error is None:
                for n in names:
                    if len(running) >= jobs:
                        break
                    if n not in done and n not in running.values() and need[n] <= done:
                        if started:
                            started(n)
                        running[pool.submit(run, n)] = n
            if not running:
                if error is not None:
                    raise error
                raise InputError(f"chapters wait for each other in a cycle: {', '.join(n for n in names if n not in done)}")
            ended, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in ended:
                n = running.pop(f)
                done.add(n)
                try:
                    results[n] = f.result()
                except BaseException as e:  # noqa: BLE001 -- re-raised once the chapters in flight end
                    error = error or e
                    continue
                if finished:
                    finished(n, results[n])
    if error is not None:
        raise error
    return [results[n] for n in names]


def repository(root: Path = ROOT, repo_url: str | None = None) -> tuple[str, str]:
    """(url, branch) of the repository the book is published from; url "" when none is set.

    The url is `repo_url` if given, else $BIGSPARSE_REPO_URL, else `repository.url` of
    `_config.yml`. Colab opens notebooks from GitHub only, so a set url must be
    `https://github.com/OWNER/REPO`.
    """
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text()).get("repository") or {}
    url = repo_url if repo_url is not None else os.environ.get(REPO_ENV, config.get("url") or "")
    url = url.strip().rstrip("/").removesuffix(".git")
    if url and not _GITHUB.fullmatch(url):
        raise InputError(f"{{arg}} (or {REPO_ENV}, or repository.url in _config.yml) must be "
                         f"https://github.com/OWNER/REPO, got {url!r}", arg="repo_url")
    return url, str(config.get("branch") or "main")


def staged_config(root: Path, repo_url: str) -> dict:
    """`_config.yml` as the build uses it: the repository, issues and launch buttons only with a url."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text())
    config.setdefault("repository", {})
    config["repository"]["url"] = repo_url
    config["repository"]["path_to_book"] = NOTEBOOKS  # the launch buttons open notebooks/<chapter>.ipynb
    html = config.setdefault("html", {})
    html["use_repository_button"] = html["use_issues_button"] = bool(repo_url)
    if not repo_url:
        config.pop("launch_buttons", None)  # no repository, nothing to launch
    return config


def _setup_cell(repo_url: str, branch: str) -> str:
    return f"""\
# Setup on Colab or Binder: install bigsparse when it does not import (a no-op in the book's own
# environment), then work from the repository root when there is one (chapters use relative paths).
import importlib.util, os, pathlib, subprocess, sys

if importlib.util.find_spec("bigsparse_lib") is None:
    # --ignore-requires-python: Colab's Python may be newer than the 3.11 the project pins
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--ignore-requires-python",
                    "bigsparse @ git+{repo_url}@{branch}"], check=True)
_here = pathlib.Path.cwd()
_root = next((p for p in (_here, *_here.parents) if (p / "_toc.yml").is_file()), None)
if _root is not None:
    os.chdir(_root)"""


def launch_notebook(name: str, repo_url: str, branch: str, *, root: Path = ROOT):
    """The notebook the Colab and Binder buttons open for chapter `name`.

    The chapter's own cells, after a first setup cell (`_setup_cell`), with the `parameters`
    cell set to `scale = "smoke"`: a free Colab or Binder machine runs a chapter in seconds
    at smoke scale; change it to "toy" for the book's numbers.
    """
    import jupytext
    import nbformat

    nb = jupytext.read(root / f"{name}.md")
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.metadata.pop("jupytext", None)
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = re.sub(r'^scale\s*=\s*"toy"', 'scale = "smoke"  # "toy" gives the book\'s numbers '
                                 '(minutes on a laptop CPU)', cell.source, flags=re.M)
    setup = nbformat.v4.new_code_cell(_setup_cell(repo_url, branch), metadata={"tags": ["setup"]})
    nb.cells.insert(0, setup)
    return nb


def write_notebooks(repo_url: str, branch: str, *, root: Path = ROOT, out: Path | None = None) -> list[Path]:
    """Write `launch_notebook` of every chapter to `<out>/<chapter>.ipynb` (out: `<root>/notebooks`)."""
    import nbformat

    if not repo_url:
        raise InputError(f"a repository url is needed (--repo-url, {REPO_ENV}, or repository.url in _config.yml)")
    out = out or root / NOTEBOOKS
    written = []
    for name in chapters(root):
        target = out / f"{name}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(launch_notebook(name, repo_url, branch, root=root), target)
        written.append(target)
    return written


def _library_digest(root: Path) -> str:
    """A hash of the library's source: a changed library re-executes every chapter."""
    h = hashlib.sha256()
    for p in sorted((root / "bigsparse_lib").rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _chapter_digest(source: Path, scale: str, library: str) -> str:
    return hashlib.sha256(source.read_bytes() + scale.encode() + library.encode()).hexdigest()


@functools.cache
def kernel_manager():
    """The kernel manager papermill starts each chapter's kernel with: jupyter_client's, except
    that shutting a kernel down does not interrupt it first.

    jupyter_client sends SIGINT before its shutdown request, to stop code still running. A
    chapter's kernel is shut down after its last cell, so there is nothing to stop; but on a
    busy machine (two chapters at once) the signal could reach a kernel not yet idle, which
    then logged "KeyboardInterrupt caught in kernel" as an ERROR in the middle of a good build.
    """
    from jupyter_client import AsyncKernelManager

    class ChapterKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return ChapterKernelManager


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
    # MPLBACKEND=Agg (set by make and the tests) would make plt.show() draw nothing, so the kernel
    # gets the inline backend that records figures.
    # The kernel inherits this process's environment: it also learns where `bigsparse_lib.figures`
    # writes the figures' CSV files (beside the executed notebooks, copied into the HTML by `build`).
    saved = {k: os.environ.get(k) for k in ("MPLBACKEND", "BIGSPARSE_FIGURE_DATA", "BIGSPARSE_PAGE", "BIGSPARSE_SCALE")}
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ["BIGSPARSE_FIGURE_DATA"] = str(out / FIGURE_DATA)
    os.environ["BIGSPARSE_PAGE"] = name
    os.environ["BIGSPARSE_SCALE"] = scale
    try:
        papermill.execute_notebook(
            str(unexecuted), str(target), parameters={"scale": scale}, kernel_name=KERNEL,
            cwd=str(root), progress_bar=False, log_output=log_output, kernel_manager_class=kernel_manager(),
        )
    except papermill.PapermillExecutionError as e:
        target.unlink(missing_ok=True)  # never leave a notebook with an error output behind
        raise RuntimeError(f"chapter {name} failed at scale {scale!r}: {e.ename}: {e.evalue}") from None
    finally:
        unexecuted.unlink(missing_ok=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    seconds = time.perf_counter() - t0
    done = nbformat.read(target, as_version=4)
    done.metadata["bigsparse"] = {**done.metadata.get("bigsparse", {}), "digest": digest, "scale": scale,
                                  "seconds": round(seconds, 1)}
    for cell in done.cells:  # the page shows the injected values (the scale it ran at), not the defaults too
        if "parameters" in cell.metadata.get("tags", []):
            cell.metadata["tags"] = [*cell.metadata["tags"], "remove-cell"]
    nbformat.write(done, target)
    return ChapterRun(name, seconds, False)


def build(scale: str = "toy", *, root: Path = ROOT, stage: Path | None = None, html: bool = True,
          only: list[str] | None = None, force: bool = False, output: Path | None = None,
          repo_url: str | None = None, notebooks: Path | None = None, jobs: int | None = None) -> list[ChapterRun]:
    """Execute the chapters at `scale` and (optionally) build the HTML into `<output>/_build/html`.

    `jobs` chapters execute at once (default `default_jobs()`), each after the chapters its front
    matter names (`after`): the sweeps first, the chapters that read them next; the analytic
    chapters fill the other slot.

    `output` defaults to the repository root; `stage` (the executed notebooks) to `_executed/<scale>`.
    `repo_url` overrides `repository.url` (see `repository`); when a url is set, the launch
    notebooks are written to `notebooks` (default `<root>/notebooks`).
    """
    import yaml

    if scale not in SCALES:
        raise InputError(f"{{arg}} must be one of {', '.join(SCALES)}, got {scale!r}", arg="scale")
    url, branch = repository(root, repo_url)
    stage = stage or root / "_executed" / scale
    if force and stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True, exist_ok=True)
    for name in FRAME:
        shutil.copy2(root / name, stage / name)
    (stage / "_config.yml").write_text(yaml.safe_dump(staged_config(root, url), sort_keys=False))
    for extra in ("images",):
        if (root / extra).is_dir():
            shutil.copytree(root / extra, stage / extra, dirs_exist_ok=True)
    library = _library_digest(root)
    names = chapters(root)
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise InputError(f"unknown chapter(s) {', '.join(unknown)}; chapters are {', '.join(names)}", arg="only")
        names = [n for n in names if n in only]
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise InputError(f"{{arg}} must be >= 1, got {jobs}", arg="jobs")
    runs = schedule(
        names, {n: after(n, root) for n in names}, jobs,
        functools.partial(execute_chapter, scale=scale, out=stage, root=root, library=library),
        started=lambda name: print(f"[book] {name} ({scale}) ...", file=sys.stderr, flush=True),
        finished=lambda name, run: print(f"[book] {name}: {'up to date' if run.cached else f'{run.seconds:.1f} s'}",
                                         file=sys.stderr, flush=True))
    # The prose must say what this run computed (issue 15): every number pasted by glue exists in
    # the executed notebook, and no result is typed by hand. A build whose text would be false fails.
    from bigsparse_lib import prose

    findings = [f for name in names for f in prose.check_notebook(stage / f"{name}.ipynb", name)]
    if findings:
        raise InputError(f"the prose of {len({f.where for f in findings})} chapter(s) does not match its run: "
                         + "; ".join(map(str, findings[:5])) + (" ..." if len(findings) > 5 else ""))
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
        data = stage / FIGURE_DATA
        if data.is_dir():
            shutil.copytree(data, out / "_build" / "html" / FIGURE_DATA, dirs_exist_ok=True)
        if url:
            write_notebooks(url, branch, root=root, out=notebooks)
    return runs
