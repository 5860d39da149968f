"""`bigsparse book [--scale smoke|toy|full] [--only CHAPTER]... [--no-html] [--force]`."""
from __future__ import annotations

from bigsparse_lib import book


def register(sub) -> None:
    p = sub.add_parser("book", help="execute the chapters with papermill and build the HTML book",
                       description="Execute every chapter at a scale (parameter `scale`) and build "
                       "_build/html with jupyter-book. Chapters that are up to date are not re-run.")
    p.add_argument("--scale", default="toy", choices=book.SCALES,
                   help="smoke: seconds per chapter; toy: a laptop CPU (default); full: accelerators")
    p.add_argument("--only", action="append", metavar="CHAPTER", help="execute only this chapter (repeatable)")
    p.add_argument("--no-html", action="store_true", help="execute only; skip jupyter-book")
    p.add_argument("--force", action="store_true", help="re-execute every chapter")
    p.set_defaults(func=run)


def run(args) -> int:
    runs = book.build(args.scale, html=not args.no_html, only=args.only, force=args.force)
    total = sum(r.seconds for r in runs)
    print(f"executed {sum(not r.cached for r in runs)} chapter(s), {sum(r.cached for r in runs)} up to date, "
          f"{total:.0f} s" + ("" if args.no_html else "; HTML in _build/html/index.html"))
    return 0
