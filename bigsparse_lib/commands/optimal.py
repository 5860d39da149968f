"""`bigsparse optimal`: the optimal sparsity S_opt(N, C), or the onset of a sparsity, in Chinchilla multiples (§3.3).

    bigsparse optimal (--preset t5|vit | --coefs FILE.json) --nnz N --compute C [--cost sparse|dense] [--json]
    bigsparse optimal (--preset t5|vit | --coefs FILE.json) --onset S [--cost sparse|dense] [--json]
"""
from __future__ import annotations

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


def run(args) -> int:
    _check_args(args)
    law = sparse_law_from_args(args)
    if args.onset is not None:
        try:
            k = float(optimal.chinchilla_multiple(law, args.onset, args.cost))
        except ValueError as e:
            raise InputError(f"--onset: {e}") from None
        if not math.isfinite(k):
            raise InputError(f"--onset: the law gives no finite Chinchilla multiple for S = {args.onset}")
        emit(args, {"chinchilla_multiple": k},
             lambda r: f"S = {args.onset:g} becomes optimal beyond {r['chinchilla_multiple']:.4g}x the "
             f"Chinchilla-optimal compute at the same N ({args.cost} costs)")
        return 0
    S = float(optimal.s_opt(law, args.nnz, args.compute, args.cost))
    if not (math.isfinite(S) and 0.0 <= S < 1.0):
        raise InputError(f"the law gives no optimal sparsity in [0, 1) for --nnz {args.nnz:g} --compute "
                         f"{args.compute:g} (got {S})")
    emit(args, {"sparsity": S},
         lambda r: f"S_opt = {r['sparsity']:.4f} for N = {args.nnz:g} non-zeros and C = {args.compute:g} FLOPs "
         f"({args.cost} costs)")
    return 0
