"""Benchmark: `make book` from a fresh clone, then a second `make book` in the same clone.

Run standalone (prints a Markdown section `## Building the book` on stdout):

    .venv/bin/python bench/book.py [--scale toy] [--repo .]

It clones the repository's committed HEAD into a temporary directory (nothing of this
checkout's `.venv/`, `results/` or `_executed/` comes along), runs `make book SCALE=...`
there and times it: the install of `.venv/`, every sweep the chapters need, every chapter
through papermill and the HTML. It then runs `make book` again in the same clone, which
must reuse the result store and the executed chapters. Per-chapter seconds come from the
`[book]` lines that `bigsparse book` prints.

It takes as long as the build itself (about half an hour at `toy`), so `make bench` runs it
only when asked: `bench/run_all.py --only book`. The released data are read from
`BIGSPARSE_PAPER_DATA`, else from `../shared/paper-data` beside this checkout.

`--rebuild RESULTS` times only the rebuild after a change to `bigsparse_lib` (every chapter
re-executes against sweeps already trained), in a fresh clone holding a copy of RESULTS (a
`results/` folder of a finished build), three times in the same run:

1. the baseline: one chapter at a time (`--jobs 1`) and no compilation cache (each chapter
   compiles its fits), as `bigsparse book` did before `book.schedule` and `compilecache`;
2. `bigsparse book --force` as it is, with an empty compilation cache;
3. the same again, with the cache the second run filled: the usual case, since the first
   build compiled the same fits.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_FIRST_S = 30 * 60  # issue: a fresh `make book` in 30 minutes or less on 2 cores
TARGET_SECOND_S = 5 * 60  # and a second run in 5 minutes or less


def make_book(clone: Path, scale: str, env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(["make", "book", f"SCALE={scale}"], cwd=clone, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-3000:] + r.stderr[-5000:])
        raise SystemExit(f"make book failed in {clone} (exit {r.returncode})")
    return seconds, r.stderr


def clone_head(repo: str, tmp: Path) -> tuple[Path, str]:
    """A fresh `git clone` of `repo` in `tmp` (only what is committed) and its short HEAD."""
    clone = tmp / "bigsparse"
    subprocess.run(["git", "clone", "-q", repo, str(clone)], check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True,
                          text=True, check=True).stdout.strip()
    return clone, head


def force_book(clone: Path, scale: str, env: dict, *extra: str) -> tuple[float, str]:
    """`bigsparse book --force` in `clone` (every chapter re-executes; the results are reused)."""
    t0 = time.perf_counter()
    r = subprocess.run([str(clone / ".venv" / "bin" / "bigsparse"), "book", "--scale", scale, "--force", *extra],
                       cwd=clone, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-3000:] + r.stderr[-5000:])
        raise SystemExit(f"bigsparse book --force failed in {clone} (exit {r.returncode})")
    return seconds, r.stderr


def rebuild(args, env: dict) -> int:
    """The three rebuilds of `--rebuild` (module docstring); prints the Markdown section."""
    from_results = Path(args.rebuild).resolve()
    if not from_results.is_dir():
        raise SystemExit(f"--rebuild {from_results}: not a results folder")
    tmp = Path(tempfile.mkdtemp(prefix="bigsparse-rebuild-"))
    try:
        clone, head = clone_head(args.repo, tmp)
        subprocess.run(["make", "venv"], cwd=clone, env=env, check=True, capture_output=True)
        shutil.copytree(from_results, clone / "results")
        runs = [("one chapter at a time, no compilation cache (before)", {**env, "BIGSPARSE_JAX_CACHE": "off"},
                 ("--jobs", "1")),
                ("as it is, empty compilation cache", {**env, "BIGSPARSE_JAX_CACHE": str(tmp / "cache")}, ()),
                ("as it is, the cache the run above filled", {**env, "BIGSPARSE_JAX_CACHE": str(tmp / "cache")}, ())]
        out = []
        for label, run_env, extra in runs:
            seconds, log = force_book(clone, args.scale, run_env, *extra, "--no-html")
            out.append((label, seconds, chapter_times(log)))
        sys.path.insert(0, str(clone))
        from bigsparse_lib import book as clone_book
        jobs = clone_book.default_jobs()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = out[0][1]
    print(f"## Building the book (`make book SCALE={args.scale}`): rebuild after a library change\n")
    print(f"Command: `.venv/bin/python bench/book.py --scale {args.scale} --rebuild RESULTS` (a fresh `git clone` of "
          f"{head} holding a copy of a finished build's `results/`; `bigsparse book --force --no-html`, which "
          "re-executes every chapter as a change to `bigsparse_lib` does, three times in the same run; "
          f"the HTML, about 15 s more, is left out). Chapters at once by default here: {jobs}.\n")
    print("| rebuild | wall time | vs before | target |")
    print("|---|---:|---:|---|")
    for label, seconds, _ in out:
        print(f"| {label} | {seconds / 60:.1f} min ({seconds:.0f} s) | {base / seconds:.2f}x | "
              f"{'within' if seconds <= TARGET_SECOND_S else '**over**'} {TARGET_SECOND_S / 60:.0f} min |")
    print("\nPer chapter (seconds; chapters executed side by side each take longer than alone):\n")
    print("| chapter | " + " | ".join(f"run {i + 1}" for i in range(len(out))) + " |")
    print("|---|" + "---:|" * len(out))
    for name in out[0][2]:
        print(f"| {name} | " + " | ".join(t.get(name, "?") for _, _, t in out) + " |")
    return 0


def chapter_times(log: str) -> dict[str, str]:
    """{chapter: 'N.N s' | 'up to date'} from `bigsparse book`'s `[book] name: ...` lines."""
    return dict(re.findall(r"^\[book\] (chapters/\S+): (.+)$", log, re.M))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", default="toy", choices=("smoke", "toy", "full"))
    ap.add_argument("--repo", default=str(ROOT), help="the git checkout whose HEAD is cloned")
    ap.add_argument("--keep", default=None, metavar="DIR",
                    help="move the built clone here afterwards (its results/, _executed/ and _build/)")
    ap.add_argument("--rebuild", default=None, metavar="RESULTS",
                    help="time only the rebuild after a library change, before and after, against a copy of RESULTS")
    args = ap.parse_args()

    env = dict(os.environ)
    shared = Path(args.repo).resolve().parent / "shared" / "paper-data"
    if not env.get("BIGSPARSE_PAPER_DATA") and shared.is_dir():
        env["BIGSPARSE_PAPER_DATA"] = str(shared)
    for var in ("VIRTUAL_ENV", "PYTHONPATH"):  # the clone's own .venv, not this one
        env.pop(var, None)

    if args.rebuild:
        return rebuild(args, env)

    tmp = Path(tempfile.mkdtemp(prefix="bigsparse-book-"))
    try:
        clone, head = clone_head(args.repo, tmp)
        first, log1 = make_book(clone, args.scale, env)
        second, log2 = make_book(clone, args.scale, env)
        pages = len(list((clone / "_build" / "html" / "chapters").glob("*.html")))
        if args.keep:
            shutil.move(str(clone), args.keep)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    times1, times2 = chapter_times(log1), chapter_times(log2)
    ok = lambda s, target: "within" if s <= target else "**over**"
    print(f"## Building the book (`make book SCALE={args.scale}`)\n")
    print(f"Command: `.venv/bin/python bench/book.py --scale {args.scale}` (a fresh `git clone` of {head}, "
          "then `make book` twice in it). The machine's uv package cache was warm, so the install "
          "downloaded nothing; on a cold cache add the download time.\n")
    print("| run | wall time | target | |")
    print("|---|---:|---:|---|")
    print(f"| first (fresh clone: install, sweeps, chapters, HTML) | {first / 60:.1f} min | "
          f"{TARGET_FIRST_S / 60:.0f} min | {ok(first, TARGET_FIRST_S)} |")
    print(f"| second (results and executed chapters reused) | {second / 60:.1f} min | "
          f"{TARGET_SECOND_S / 60:.0f} min | {ok(second, TARGET_SECOND_S)} |")
    print(f"\n{pages} chapter pages built. Per chapter, first run (including the sweeps it starts) "
          "and second run:\n")
    print("| chapter | first | second |")
    print("|---|---:|---:|")
    for name in times1:
        print(f"| {name} | {times1[name]} | {times2.get(name, '?')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
