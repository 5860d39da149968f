"""`bigsparse fit FILE.csv`: fit eq. 3 (or eq. 2 with --dense, or a successor law with --form) to a tidy table.

Two methods (§3.2, App. C; `bigsparse_lib/vpfit.py`):
- `--method grid` (the default): the certified fit. The exponents are searched on a full
  grid with the non-negative coefficients profiled out (variable projection), and the grid's
  minima are refined. It prints every distinct local optimum within a factor of the best,
  so a flat or multi-basin landscape is visible, and its answer is global to the grid's
  resolution, which a count of agreeing random starts cannot claim. It costs about as much
  as the 1000-start fit (BENCHMARKS.md), so it is the default.
- `--method starts`: the random-start BFGS of `fit.fit` (eq. 3 or eq. 2 only). Giving
  --starts or --fix selects it (the grid fit has no fixed coefficients).
Prints the coefficients (table units, as in Table 7), the mean Huber loss, and with
--bootstrap B 95% percentile intervals for the coefficients, the gains of Table 2, the onset
and --predict points.
Each --predict point also gets its distance outside the data (log N, log D) and, with
--bootstrap, a second interval that adds the law's own extrapolation error, measured by
refitting with each size and each length held out (`bigsparse_lib.extrapolation`).
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
    p.add_argument("--method", choices=("grid", "starts"), default=None,
                   help="grid: certified fit (exhaustive exponent grid + refinement; the default); starts: random-start "
                   "BFGS (the default when --starts or --fix is given)")
    p.add_argument("--form", default="eq3", metavar="FORM",
                   help="the law: eq3 (default), multiplier (Frantar et al. 2025), average (Jin et al. 2025: dense "
                   "law on the average parameter count), dense (eq. 2 on the non-zeros, ignoring S)")
    p.add_argument("--resolution", type=int, default=None, metavar="K",
                   help="--method grid: grid points per exponent (default 21)")
    p.add_argument("--starts", type=int, default=None, help=f"random starts (default {F.STARTS}; implies --method starts)")
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


def method_of(args) -> str:
    """--method, or its default: starts when --starts or --fix is given, else grid."""
    if args.method is not None:
        if args.method == "grid" and args.fix:
            raise InputError("--fix works with --method starts only (the grid fit profiles out every coefficient)")
        if args.method == "grid" and args.starts is not None:
            raise InputError("--starts works with --method starts only")
        return args.method
    return "starts" if (args.starts is not None or args.fix) else "grid"


def run(args: argparse.Namespace) -> int:
    from bigsparse_lib import fit as F
    from bigsparse_lib import laws, vpfit
    from bigsparse_lib.table import read_tidy_csv

    fix = parse_fix(args.fix)
    method = method_of(args)
    form = laws.form_named(args.form)
    if args.dense and args.form not in ("eq3", "dense"):
        raise InputError(f"--dense fits eq. 2 on S = 0 data; it cannot be combined with --form {args.form}")
    if args.dense:
        form = vpfit.EQ2
    starts = F.STARTS if args.starts is None else args.starts
    points = parse_predict(args.predict, args.dense)
    if starts < 1:
        raise InputError(f"--starts must be at least 1, got {starts}")
    if args.bootstrap != 0 and args.bootstrap < MIN_BOOTSTRAP:
        raise InputError(f"--bootstrap must be 0 (none) or at least {MIN_BOOTSTRAP} (a 95% percentile interval "
                         f"needs a resample in each 2.5% tail), got {args.bootstrap}")
    if args.seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {args.seed}")
    if args.resolution is not None and args.resolution < 2:
        raise InputError(f"--resolution must be at least 2, got {args.resolution}")
    positive(args.delta, "--delta")
    if method == "starts" and form not in (vpfit.EQ3, vpfit.EQ2):
        raise InputError(f"--method starts fits eq3 (or eq. 2 with --dense); use --method grid for --form {args.form}")
    if method == "starts" and form is vpfit.EQ2 and not args.dense:
        raise InputError("--method starts with --form dense: use --dense on a table of dense runs, or --method grid")
    boot_ok = form is vpfit.EQ3 or args.dense
    if args.bootstrap and not boot_ok:
        raise InputError(f"--bootstrap works with --form eq3 (or --dense), not --form {args.form}")
    table = read_tidy_csv(args.file, dense=args.dense)
    from bigsparse_lib.identify import require_identifiable
    from bigsparse_lib.table import require_points

    names = ("a_N", "b_N", "a_D", "b_D", "c") if args.dense else ("a_S", "b_S", "c_S", "b_N", "a_D", "b_D", "c")
    require_points(len(table), len(set(names) - set(fix)), where=args.file)
    require_identifiable(table["sparsity"], table["nnz"], table["data"], dense=args.dense, fixed=fix,
                         where=args.file)
    settings = {"method": method, "form": form.name if not args.dense else "eq2", "delta": args.delta,
                "log": args.log, "dense": args.dense, "seed": args.seed, "fixed": fix, "bootstrap": args.bootstrap,
                "best_rtol": F.BEST_RTOL}
    if method == "starts":
        try:
            result = F.fit(table, dense=args.dense, delta=args.delta, log=args.log, starts=starts,
                           seed=args.seed, fix=fix)
        except RuntimeError as e:  # every start diverged: the data, not the program (e.g. losses near 1e-308)
            raise InputError(f"{args.file}: {e}") from None
        out = result.to_dict()
    else:
        kw = {} if args.resolution is None else {"resolution": args.resolution}
        gf = vpfit.certified_fit(table, form, delta=args.delta, log=args.log, **kw)
        out = gf.to_dict()
        result = vpfit.to_fit_result(gf, table) if (boot_ok and args.bootstrap) else None
        if result is None and boot_ok:
            from bigsparse_lib.law import DenseLaw, SparseLaw

            law = (DenseLaw if args.dense else SparseLaw).from_dict(gf.coefs)
            result = argparse.Namespace(law=law)
    boot = F.bootstrap(result, args.bootstrap, seed=args.seed) if args.bootstrap else None
    out["intervals"] = ({k: [_finite_or_none(lo), _finite_or_none(hi)] for k, (lo, hi) in F.intervals(boot).items()}
                        if boot is not None else {})
    if result is not None:
        out["derived"] = {k: _finite_or_none(fn(result.law)) for k, fn in F.derived(result.law).items()}
        out["predictions"] = _predictions(F, result, boot, points, table, starts, args)
    else:
        out["derived"] = {f"gain@{S:g}": _finite_or_none(g) for S, g in laws.gains(form, gf.coefs).items()}
        out["predictions"] = [_form_prediction(form, gf.coefs, p) for p in points]
    out["settings"] = settings
    emit(args, _clean(out), _text)
    return 0


def _clean(obj):
    """JSON-safe: non-finite numbers (e.g. eff of a level whose term vanished) become null."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _form_prediction(form, coefs, point) -> dict:
    import pandas as pd

    S, N, D = point
    loss = form.predict(coefs, pd.DataFrame({"sparsity": [S], "nnz": [N], "data": [D], "loss": [1.0]}))[0]
    return {"sparsity": S, "nnz": N, "data": D, "loss": _finite_or_none(loss), "lo": None, "hi": None}


def _predictions(F, result, boot, points, table, starts, args) -> list[dict]:
    """Each point: loss, the bootstrap interval (lo, hi), the distance outside the data, and with --bootstrap
    the extrapolation interval (`bigsparse_lib.extrapolation`: held-out sizes and lengths, B resamples each)
    and the interval for one run's measured loss (plus the fit's scatter)."""
    from bigsparse_lib import extrapolation as X

    rows = [{k: _finite_or_none(v) for k, v in row.items()} for row in F.predictions(result.law, points, boot)]
    if not points:
        return rows
    S, N, D = (list(v) for v in zip(*points))
    data_N, data_D = table["nnz"].to_numpy(float), table["data"].to_numpy(float)
    d_N, d_D = X.outside(N, D, data_N, data_D)
    ext = None
    if boot is not None:
        held = X.held_out(result, starts=min(X.FOLD_STARTS, starts), resamples=args.bootstrap, seed=args.seed)
        model = X.error_model(held)
        ext = X.predictions(result, boot, model, S, N, D).frame
    for i, row in enumerate(rows):
        row["outside"] = {"log_N": float(d_N[i]), "log_D": float(d_D[i])}
        row["extrapolation"] = ([_finite_or_none(ext.ext_lo[i]), _finite_or_none(ext.ext_hi[i])]
                                if ext is not None else [None, None])
        row["run"] = ([_finite_or_none(ext.run_lo[i]), _finite_or_none(ext.run_hi[i])]
                      if ext is not None else [None, None])
    return rows


def _text(r: dict) -> str:
    s = r["settings"]
    what = {"eq3": "eq. 3", "eq2": "eq. 2 (dense)", "multiplier": "the multiplier law", "average": "the average law",
            "dense": "eq. 2 on the non-zeros (ignoring S)"}[s["form"]]
    head = f"fit of {what}: Huber delta {s['delta']:g} on {'log L' if s['log'] else 'L'}, {r['n_points']} points"
    if s["method"] == "starts":
        lines = [f"{head}, {r['starts']} starts (seed {s['seed']})",
                 f"objective (mean Huber loss): {r['objective']:.6g}",
                 f"starts reaching the best (rel. tol. {s['best_rtol']:g}): {r['converged_to_best']} of {r['starts']}",
                 ""]
    else:
        g = r["grid"]
        lines = [f"{head}, certified: grid {'x'.join(map(str, g['shape']))} over {', '.join(g['exponents'])}, "
                 f"{g['local_minima']} grid minima refined",
                 f"objective (mean Huber loss): {r['objective']:.6g}",
                 f"distinct optima within {r['within']:g}x the best: {len(r['optima'])}"]
        for o in r["optima"]:
            ex = ", ".join(f"{k}={o['coefs'][k]:.4g}" for k in g["exponents"])
            lines.append(f"  {o['objective']:.6g}  ({ex}; from {o['cells']} grid minima)")
        lines.append("")
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
        lines += ["", f"{'sparsity':>8} {'nnz':>12} {'data':>12} {'loss':>10}   {'outside (log N, log D)':>22}"
                      f"   {'95% parameters only':>21}   95% with extrapolation error"]
        for p in r["predictions"]:
            ci = f"[{_g(p['lo'])}, {_g(p['hi'])}]" if p["lo"] is not None or p["hi"] is not None else "-"
            ext = p.get("extrapolation")
            ei = f"[{_g(ext[0])}, {_g(ext[1])}]" if p["lo"] is not None else "-"
            out = f"{p['outside']['log_N']:.2f}, {p['outside']['log_D']:.2f}"
            lines.append(f"{p['sparsity']:>8g} {p['nnz']:>12.4g} {p['data']:>12.4g} {_g(p['loss']):>10}   {out:>22}"
                         f"   {ci:>21}   {ei}")
        if r["settings"]["bootstrap"]:
            lines.append("(extrapolation: the bootstrap interval widened by the error of refits with each size and "
                         "length held out, grown with the distance outside the data; nan: no held-out test along that axis)")
            lines.append("one run's measured loss, with the fit's in-sample scatter too: "
                         + "; ".join(f"[{_g(p['run'][0])}, {_g(p['run'][1])}]" for p in r["predictions"]))
    return "\n".join(lines)


def _g(x) -> str:
    """A value or "n/a": JSON carries a non-finite value (e.g. a gain under a fixed b_N) as null."""
    return "n/a" if x is None else f"{x:.6g}"
