"""`bigsparse book [--scale smoke|toy|full] [--only CHAPTER]... [--no-html] [--force] [--jobs N] [--repo-url URL]`
and `bigsparse notebooks [--repo-url URL] [--out DIR]` (the Colab/Binder launch targets)."""
from __future__ import annotations

import argparse
from pathlib import Path

from bigsparse_lib import book

_REPO_HELP = (f"GitHub repository the book is published from (https://github.com/OWNER/REPO); overrides "
              f"${book.REPO_ENV} and repository.url in _config.yml. Set, the book gets repository, issues, "
              "Colab and Binder buttons; empty (the default), none")


def register(sub) -> None:
    p = sub.add_parser("book", help="execute the chapters with papermill and build the HTML book",
                       description="Execute every chapter at a scale (parameter `scale`) and build "
                       "_build/html with jupyter-book. Chapters that are up to date are not re-run.")
    p.add_argument("--scale", default="toy", choices=book.SCALES,
                   help="smoke: seconds per chapter; toy: a laptop CPU (default); full: accelerators")
    p.add_argument("--only", action="append", metavar="CHAPTER", help="execute only this chapter (repeatable)")
    p.add_argument("--no-html", action="store_true", help="execute only; skip jupyter-book")
    p.add_argument("--force", action="store_true", help="re-execute every chapter")
    p.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                   help="chapters executed at once, each after those its front matter names "
                        f"(default: {book.default_jobs()} on this machine)")
    p.add_argument("--repo-url", metavar="URL", help=_REPO_HELP)
    p.set_defaults(func=run)

    n = sub.add_parser("notebooks", help="write the notebooks the Colab and Binder buttons open",
                       description="Write one notebook per chapter (a setup cell first, scale 'smoke') to "
                       f"{book.NOTEBOOKS}/chapters/*.ipynb. Commit them on the branch the book is published "
                       "from (repository.branch in _config.yml).")
    n.add_argument("--repo-url", metavar="URL", help=_REPO_HELP)
    n.add_argument("--out", type=Path, default=None, help=f"output folder (default: {book.NOTEBOOKS}/)")
    n.set_defaults(func=run_notebooks)


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return n


def run(args) -> int:
    runs = book.build(args.scale, html=not args.no_html, only=args.only, force=args.force, repo_url=args.repo_url,
                      jobs=args.jobs)
    total = sum(r.seconds for r in runs)
    print(f"executed {sum(not r.cached for r in runs)} chapter(s), {sum(r.cached for r in runs)} up to date, "
          f"{total:.0f} s" + ("" if args.no_html else "; HTML in _build/html/index.html"))
    return 0


def run_notebooks(args) -> int:
    url, branch = book.repository(repo_url=args.repo_url)
    written = book.write_notebooks(url, branch, out=args.out)
    print(f"wrote {len(written)} notebook(s) to {written[0].parents[1] if written else args.out}")
    return 0
