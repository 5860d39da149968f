"""`bigsparse paper-data {t5,vit,chinchilla} [--source PATH|URL] --out FILE.csv`."""
from __future__ import annotations

from bigsparse_lib import paper
from bigsparse_lib.commands._common import add_json_flag, emit
from bigsparse_lib.errors import InputError
from bigsparse_lib.table import check_output_file, validate_tidy, write_tidy_csv


def register(sub) -> None:
    p = sub.add_parser(
        "paper-data",
        help="convert the paper's released sweep data (or Epoch's Chinchilla data) to the tidy table",
        description="Read t5-data.csv, vit-data.json or Epoch's chinchilla CSV and write the tidy table "
        "(sparsity, nnz, data, loss + metadata). Without --source the file is looked up in "
        f"${paper.ENV_VAR}, ../shared/paper-data beside the checkout, the cache, then downloaded.",
    )
    p.add_argument("name", choices=sorted(paper.RELEASED), help="which data set")
    p.add_argument("--source", metavar="PATH|URL", help="a file, a folder holding it, or a URL")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="where to write the tidy CSV")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    check_output_file(args.out)
    try:
        path = paper.locate(args.name, args.source)
    except FileNotFoundError as e:
        raise InputError(str(e)) from None
    try:
        df = paper.LOADERS[args.name](path)
    except (ValueError, KeyError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: not in the format of the released {args.name} data ({e})") from None
    df = validate_tidy(df, where=str(path))
    out = write_tidy_csv(df, args.out)
    result = {"name": args.name, "source": str(path), "out": str(out), "n_points": len(df),
              "sparsities": sorted(float(s) for s in df["sparsity"].unique())}
    emit(args, result, lambda r: f"wrote {r['n_points']} rows of {r['name']} ({r['source']}) to {r['out']}\n"
         f"sparsities: {', '.join(f'{s:g}' for s in r['sparsities'])}")
    return 0
