"""`bigsparse figure DATA.csv [--out FIGURE.png]`: redraw a book figure from the CSV under it."""
from __future__ import annotations

from pathlib import Path

from bigsparse_lib.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("figure", help="redraw a figure of the book from its data (the CSV linked under it)",
                       description="Read the tidy table a chapter wrote for one figure "
                       "(bigsparse_lib.figures.publish) and draw it again: same panels, scales, labels and series.")
    p.add_argument("data", type=Path, help="the figure's CSV (the 'Data' link under the figure)")
    p.add_argument("--out", type=Path, default=None, help="image to write (default: DATA with suffix .png)")
    p.set_defaults(func=run)


def run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from bigsparse_lib import figures

    if not args.data.is_file():
        raise InputError(f"figure: DATA {args.data} does not exist")
    try:
        data = pd.read_csv(args.data, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"figure: DATA {args.data} is not a CSV table: {str(e).splitlines()[0]}") from None
    out = args.out or args.data.with_suffix(".png")
    figures.redraw(data).savefig(out, dpi=120)
    print(f"wrote {out}")
    return 0
