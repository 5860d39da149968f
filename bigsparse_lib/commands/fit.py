"""`bigsparse fit FILE.csv`: fit eq. 3 (or eq. 2 with --dense) to a tidy table (§3.2, App. C).

Prints the best coefficients over many seeded starts (table units, as in Table 7), the
mean Huber loss, how many starts reached the best optimum, and with --bootstrap B 95%
percentile intervals for the coefficients, the gains of Table 2, the onset and --predict points.
"""
from __future__ import annotations

import argparse
import math

from bigsparse_lib.commands._common import add_json_flag, coef_problem, emit, float_list, positive, sparsity
from bigsparse_lib.errors import InputError


# The defaults of `bigsparse_lib.fit` (DELTA, LOG, STARTS, SEED), repeated so that building the
# parser does not import JAX; tests/test_cli_fit.py checks they agree.
DELTA, LOG, STARTS, SEED = 1e-3, True, 1000, 0
# A 95% percentile interval needs at least one resample in each 2.5% tail: B >= 2 / (1 - 0.95).
MIN_BOOTSTRAP = 40


def register(subparsers) -> None:
    F = argparse.Namespace(DELTA=DELTA, LOG=LOG, STARTS=STARTS, SEED=SEED)
    p = subparsers.add_parser(
        "fit", help="fit the scaling law to a tidy CSV (sparsity, nnz, data, loss)",
        description="Multi-start BFGS fit of L(S, N, D) (eq. 3), or of the dense law (eq. 2) with --dense, "
                    "minimising the mean Huber loss over points.")
    p.add_argument("file", metavar="FILE.csv", help="tidy table with columns sparsity, nnz, data, loss")
    p.add_argument("--delta", type=float, default=F.DELTA, help=f"Huber delta (default {F.DELTA:g})")
    p.add_argument("--log", action=argparse.BooleanOptionalAction, default=F.LOG,
                   help="Huber loss on log L (default) or, with --no-log, on L")
    p.add_argument("--dense", action="store_true", help="fit the dense law eq. 2 (every sparsity must be 0)")
    p.add_argument("--starts", type=int, default=F.STARTS, help=f"random starts (default {F.STARTS})")
    p.add_argument("--seed", type=int, default=F.SEED, help=f"seed of starts and bootstrap (default {F.SEED})")
    p.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                   help="keep a coefficient at VALUE (table units); repeatable, e.g. to refit only a_S, b_S, c_S")
    p.add_argument("--bootstrap", type=int, default=0, metavar="B",
                   help="B bootstrap resamples for 95%% percentile intervals (default: none)")
    p.add_argument("--predict", action="append", default=[], metavar="S,N,D",
                   help="also predict the loss at sparsity S, non-zeros N, data D; repeatable")
    add_json_flag(p)
    p.set_defaults(func=run)


def parse_fix(items: list[str]) -> dict[str, float]:
    """['b_N=0.245', ...] -> {'b_N': 0.245}; names are checked against the law by the fit."""
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip()
        try:
            v = float(value)
        except ValueError:
            v = None
        if not eq or not name or v is None or not math.isfinite(v):
            raise InputError(f"--fix: expected NAME=VALUE with a finite number, got {item!r}")
        if name in out:
            raise InputError(f"--fix: {name} given twice")
        problem = coef_problem(name, v)
        if problem:
            raise InputError(f"--fix: {name} {problem}")
        out[name] = v
    return out


def parse_predict(items: list[str], dense: bool) -> list[tuple[float, float, float]]:
    out = []
    for item in items:
        values = float_list(item, f"--predict {item!r}")
        if len(values) != 3:
            raise InputError(f"--predict: expected S,N,D (three numbers), got {item!r}")
        S, N, D = values
        sparsity(S, f"--predict {item!r}: sparsity")
        if dense and S != 0:
            raise InputError(f"--predict {item!r}: sparsity must be 0 with --dense")
        positive(N, f"--predict {item!r}: nnz")
        positive(D, f"--predict {item!r}: data")
        out.append((S, N, D))
    return out


def _finite_or_none(x):
    return float(x) if x is not None and math.isfinite(float(x)) else None


def run(args: argparse.Namespace) -> int:
    from bigsparse_lib import fit as F
    from bigsparse_lib.table import read_tidy_csv

    fix = parse_fix(args.fix)
    points = parse_predict(args.predict, args.dense)
    if args.starts < 1:
        raise InputError(f"--starts must be at least 1, got {args.starts}")
    if args.bootstrap != 0 and args.bootstrap < MIN_BOOTSTRAP:
        raise InputError(f"--bootstrap must be 0 (none) or at least {MIN_BOOTSTRAP} (a 95% percentile interval "
                         f"needs a resample in each 2.5% tail), got {args.bootstrap}")
    if args.seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {args.seed}")
    positive(args.delta, "--delta")
    table = read_tidy_csv(args.file, dense=args.dense)
    from bigsparse_lib.identify import require_identifiable
    from bigsparse_lib.table import require_points

    names = ("a_N", "b_N", "a_D", "b_D", "c") if args.dense else ("a_S", "b_S", "c_S", "b_N", "a_D", "b_D", "c")
    require_points(len(table), len(set(names) - set(fix)), where=args.file)
    require_identifiable(table["sparsity"], table["nnz"], table["data"], dense=args.dense, fixed=fix,
                         where=args.file)
    try:
        result = F.fit(table, dense=args.dense, delta=args.delta, log=args.log, starts=args.starts,
                       seed=args.seed, fix=fix)
    except RuntimeError as e:  # every start diverged: the data, not the program (e.g. losses near 1e-308)
        raise InputError(f"{args.file}: {e}") from None
    boot = F.bootstrap(result, args.bootstrap, seed=args.seed) if args.bootstrap else None
    out = result.to_dict()
    out["intervals"] = ({k: [_finite_or_none(lo), _finite_or_none(hi)] for k, (lo, hi) in F.intervals(boot).items()}
                        if boot is not None else {})
    out["derived"] = {k: _finite_or_none(fn(result.law)) for k, fn in F.derived(result.law).items()}
    out["predictions"] = [{k: _finite_or_none(v) for k, v in row.items()}
                          for row in F.predictions(result.law, points, boot)]
    out["settings"] = {"delta": args.delta, "log": args.log, "dense": args.dense, "seed": args.seed,
                       "fixed": fix, "bootstrap": args.bootstrap, "best_rtol": F.BEST_RTOL}
    emit(args, out, _text)
    return 0


def _text(r: dict) -> str:
    s = r["settings"]
    lines = [f"fit of {'eq. 2 (dense)' if s['dense'] else 'eq. 3'}: Huber delta {s['delta']:g} on "
             f"{'log L' if s['log'] else 'L'}, {r['n_points']} points, {r['starts']} starts (seed {s['seed']})",
             f"objective (mean Huber loss): {r['objective']:.6g}",
             f"starts reaching the best (rel. tol. {s['best_rtol']:g}): {r['converged_to_best']} of {r['starts']}",
             ""]
    head = f"{'coefficient':<12} {'value':>14}"
    if r["intervals"]:
        head += f"   {'95% interval':>31}"
    lines.append(head)

    def row(name, value, note=""):
        line = f"{name:<12} {_g(value):>14}"
        if name in r["intervals"]:
            lo, hi = r["intervals"][name]
            line += f"   [{_g(lo):>13}, {_g(hi):>13}]"
        return line + note

    for name, value in r["coefs"].items():
        lines.append(row(name, value, "   (fixed)" if name in s["fixed"] else ""))
    if r["derived"]:
        lines.append("")
        for name, value in r["derived"].items():
            lines.append(row(name, value))
    if r["predictions"]:
        lines += ["", f"{'sparsity':>8} {'nnz':>12} {'data':>12} {'loss':>10}   95% interval"]
        for p in r["predictions"]:
            ci = f"[{_g(p['lo'])}, {_g(p['hi'])}]" if p["lo"] is not None or p["hi"] is not None else "-"
            lines.append(f"{p['sparsity']:>8g} {p['nnz']:>12.4g} {p['data']:>12.4g} {_g(p['loss']):>10}   {ci}")
    return "\n".join(lines)


def _g(x) -> str:
    """A value or "n/a": JSON carries a non-finite value (e.g. a gain under a fixed b_N) as null."""
    return "n/a" if x is None else f"{x:.6g}"
