"""`bigsparse optimal`: the optimal sparsity S_opt(N, C), or the onset of a sparsity, in Chinchilla multiples (§3.3).

    bigsparse optimal (--preset t5|vit | --coefs FILE.json) --nnz N --compute C [--cost sparse|dense] [--json]
    bigsparse optimal (--preset t5|vit | --coefs FILE.json) --onset S [--cost sparse|dense] [--json]
    bigsparse optimal --data FILE.csv [--bootstrap B] ...   (fits eq. 3 to the table: the certified fit)

With --data and --bootstrap B, the answer also carries a 95% percentile interval (key
`interval`) over B bootstrap refits of eq. 3 (`bigsparse_lib/bands.py`).
"""
from __future__ import annotations

import argparse
import math

from bigsparse_lib import optimal
from bigsparse_lib.commands._common import (add_json_flag, add_law_source, emit, positive, sparse_law_from_args,
                                            sparsity)
from bigsparse_lib.errors import InputError


def register(sub) -> None:
    p = sub.add_parser(
        "optimal",
        help="optimal sparsity S_opt for N non-zeros and a compute budget C, or when a sparsity becomes optimal",
        description="S_opt(N, C) minimises L(S, N, D_S) over S in [0, 1), where D_S = (C/6N)/c_mul(S) is the "
        "data the budget C buys an S-sparse model with N non-zeros (§3.3). With --onset S: the multiple of "
        "the dense compute-optimal (Chinchilla) budget, at the same N, beyond which S_opt exceeds S.",
    )
    add_law_source(p)
    source = [a for a in p._mutually_exclusive_groups if any(o.dest == "preset" for o in a._group_actions)][0]
    source.add_argument("--data", metavar="FILE.csv",
                        help="a tidy table (sparsity, nnz, data, loss): fit eq. 3 to it (certified grid fit) and use that law")
    p.add_argument("--bootstrap", type=int, default=0, metavar="B",
                   help="with --data: B bootstrap refits for a 95%% interval (key 'interval')")
    p.add_argument("--delta", type=float, default=1e-3, help="with --data: Huber delta of the fit (default 0.001)")
    p.add_argument("--log", action=argparse.BooleanOptionalAction, default=True,
                   help="with --data: Huber loss on log L (default) or on L (--no-log)")
    p.add_argument("--seed", type=int, default=0, help="with --data: bootstrap seed (default 0)")
    p.add_argument("--nnz", type=float, metavar="N", help="non-zero parameters N (units of the law, e.g. 1e8)")
    p.add_argument("--compute", type=float, metavar="C",
                   help="training budget C = 6 N D c_mul(S) in FLOPs (D in the law's units: tokens for T5, "
                   "images for ViT)")
    p.add_argument("--onset", type=float, metavar="S",
                   help="instead of S_opt: the Chinchilla-compute multiple beyond which sparsity S is optimal")
    p.add_argument("--cost", choices=optimal.COSTS, default="sparse",
                   help="how training compute is counted: 'sparse' (default; the paper's headline: sparsity is "
                   "exploited as soon as it appears, c_mul = eq. 4) or 'dense' (every step costs as much as the "
                   "dense base model of size N/(1-S), c_mul = 1/(1-S))")
    add_json_flag(p)
    p.set_defaults(func=run)


def _check_args(args) -> None:
    if args.onset is not None:
        if args.nnz is not None or args.compute is not None:
            raise InputError("--onset cannot be combined with --nnz/--compute")
        sparsity(args.onset, "--onset")
        return
    if args.nnz is None and args.compute is None:
        raise InputError("give --nnz N and --compute C (optimal sparsity), or --onset S")
    if args.compute is None:
        raise InputError("--nnz needs --compute C (the training budget in FLOPs)")
    if args.nnz is None:
        raise InputError("--compute needs --nnz N (the number of non-zero parameters)")
    positive(args.nnz, "--nnz")
    positive(args.compute, "--compute")
    if args.nnz < 1:
        raise InputError(f"--nnz is a count of non-zero parameters and must be at least 1, got {args.nnz:g}")
    # Under one unit of data per non-zero parameter (D = C / 6N < N) the law is far outside every
    # sweep it was fitted on (the paper's runs see >= 5 per parameter), and S_opt there is an
    # artefact of extrapolation (and, at C ~ 1e-300, of floating point).
    minimum = 6.0 * args.nnz * args.nnz
    if not args.compute >= minimum:
        raise InputError(f"--compute {args.compute:g} buys D = C/(6N) = {args.compute / (6.0 * args.nnz):.3g} for "
                         f"N = {args.nnz:g} non-zeros: under one unit of data (token/image) per parameter; "
                         f"give --compute >= 6 N^2 = {minimum:.3g}")


def _law_and_boot(args):
    """The law of --preset/--coefs, or eq. 3 fitted to --data (with its bootstrap when --bootstrap B)."""
    if args.bootstrap < 0:
        raise InputError(f"--bootstrap must be 0 (none) or positive, got {args.bootstrap}")
    if not args.data:
        if args.bootstrap:
            raise InputError("--bootstrap needs --data FILE.csv (an interval needs the data behind the law)")
        return sparse_law_from_args(args), None
    from bigsparse_lib import fit as F
    from bigsparse_lib import vpfit
    from bigsparse_lib.law import SparseLaw
    from bigsparse_lib.table import read_tidy_csv

    positive(args.delta, "--delta")
    table = read_tidy_csv(args.data)
    gf = vpfit.certified_fit(table, vpfit.EQ3, delta=args.delta, log=args.log)
    if not args.bootstrap:
        return SparseLaw.from_dict(gf.coefs), None
    result = vpfit.to_fit_result(gf, table)
    return result.law, F.bootstrap(result, args.bootstrap, seed=args.seed)


def _interval(samples) -> list | None:
    from bigsparse_lib.fit import percentile_interval

    lo, hi = percentile_interval(samples)
    return [lo, hi] if math.isfinite(lo) and math.isfinite(hi) else None


def run(args) -> int:
    _check_args(args)
    law, boot = _law_and_boot(args)
    if args.onset is not None:
        try:
            k = float(optimal.chinchilla_multiple(law, args.onset, args.cost))
        except ValueError as e:
            raise InputError(f"--onset: {e}") from None
        if not math.isfinite(k):
            raise InputError(f"--onset: the law gives no finite Chinchilla multiple for S = {args.onset}")
        out = {"chinchilla_multiple": k}
        if boot is not None:
            from bigsparse_lib import bands

            out["interval"] = _interval(bands.onset_samples(boot, args.onset, args.cost))
        emit(args, out,
             lambda r: f"S = {args.onset:g} becomes optimal beyond {r['chinchilla_multiple']:.4g}x the "
             f"Chinchilla-optimal compute at the same N ({args.cost} costs)" + _ci(r))
        return 0
    S = float(optimal.s_opt(law, args.nnz, args.compute, args.cost))
    if not (math.isfinite(S) and 0.0 <= S < 1.0):
        raise InputError(f"the law gives no optimal sparsity in [0, 1) for --nnz {args.nnz:g} --compute "
                         f"{args.compute:g} (got {S})")
    out = {"sparsity": S}
    if boot is not None:
        from bigsparse_lib import bands

        out["interval"] = _interval(bands._each(boot, lambda l: optimal.s_opt(l, args.nnz, args.compute, args.cost)))
    emit(args, out,
         lambda r: f"S_opt = {r['sparsity']:.4f} for N = {args.nnz:g} non-zeros and C = {args.compute:g} FLOPs "
         f"({args.cost} costs)" + _ci(r))
    return 0


def _ci(r) -> str:
    if "interval" not in r:
        return ""
    if r["interval"] is None:
        return "; 95% interval: undefined (too few usable bootstrap refits)"
    return f"; 95% bootstrap interval [{r['interval'][0]:.4g}, {r['interval'][1]:.4g}]"
