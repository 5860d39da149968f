"""`bigsparse compare FILE.csv [--json]`: eq. 3 and the successor laws side by side on one tidy table.

For each form (`bigsparse_lib/laws.py`: eq3, multiplier, average, dense) the certified fit
(`vpfit`), the number of coefficients, the in-sample objective (mean Huber loss), AIC and
BIC (twice the mean Huber loss in place of the mean squared residual), the mean |relative
error| when the largest size and when the longest runs are held out and refit
(`heldout.leave_out`), and the gains at 0.5, 0.75, 0.875. Rows are sorted by BIC.
With --json: a list with one object per form.
"""
from __future__ import annotations

import argparse

from bigsparse_lib.commands._common import add_json_flag, emit, positive

FORMS = ("eq3", "multiplier", "average", "dense")  # laws.FORMS, repeated so that building the parser skips JAX


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="fit eq. 3 and the successor laws to a tidy CSV and compare them (AIC, BIC, held-out errors)",
        description="Fits eq. 3, the effective-multiplier law (Frantar et al. 2025), the average-parameter law "
        "(Jin et al. 2025) and the dense law on N (the null model) with the certified grid fit, and prints "
        "their size, objective, AIC, BIC and held-out errors (largest size left out; longest runs left out).")
    p.add_argument("file", metavar="FILE.csv", help="tidy table with columns sparsity, nnz, data, loss")
    p.add_argument("--forms", default=",".join(FORMS), metavar="F[,F...]",
                   help=f"forms to compare (default: {','.join(FORMS)})")
    p.add_argument("--delta", type=float, default=1e-3, help="Huber delta (default 0.001)")
    p.add_argument("--log", action=argparse.BooleanOptionalAction, default=True,
                   help="Huber loss on log L (default) or, with --no-log, on L")
    p.add_argument("--resolution", type=int, default=None, metavar="K",
                   help="grid points per exponent (default 21)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from bigsparse_lib import laws
    from bigsparse_lib.commands.fit import _clean
    from bigsparse_lib.errors import InputError
    from bigsparse_lib.table import read_tidy_csv

    names = [f.strip() for f in args.forms.split(",") if f.strip()]
    if not names:
        raise InputError("--forms: give at least one form")
    for name in names:
        laws.form_named(name)
    positive(args.delta, "--delta")
    if args.resolution is not None and args.resolution < 2:
        raise InputError(f"--resolution must be at least 2, got {args.resolution}")
    table = read_tidy_csv(args.file)
    for name in names:  # every form's requirements, before any fitting
        laws.form_named(name).check(table)
    rows = laws.compare(table, names, delta=args.delta, log=args.log, resolution=args.resolution)
    result = _clean([r.to_dict() for r in rows])
    if args.json:
        emit(args, result, str)  # type: ignore[arg-type]
    else:
        emit(args, {"rows": result}, _text)
    return 0


def _text(r: dict) -> str:
    f = lambda x, spec: "-" if x is None else format(x, spec)
    lines = [f"{'form':<11} {'k':>3} {'objective':>11} {'AIC':>9} {'BIC':>9} {'held out: size':>15} {'length':>8}"
             f"   gain@0.5  0.75  0.875"]
    for row in r["rows"]:
        g = row["gains"]
        lines.append(f"{row['form']:<11} {row['n_params']:>3} {f(row['objective'], '.4g'):>11} {f(row['aic'], '.1f'):>9} "
                     f"{f(row['bic'], '.1f'):>9} {f(row['heldout'].get('size'), '.2%'):>15} "
                     f"{f(row['heldout'].get('length'), '.2%'):>8}   {f(g.get('0.5'), '.3f'):>8} "
                     f"{f(g.get('0.75'), '.3f'):>5} {f(g.get('0.875'), '.3f'):>6}")
    lines.append("(sorted by BIC; held out: mean |relative error| of a refit without the largest size / longest runs)")
    return "\n".join(lines)
