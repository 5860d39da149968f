"""`bigsparse gain (--preset t5|vit | --coefs FILE.json) [--sparsity 0.5,0.75,0.875] [--json]`: eq. 7, Table 2."""
from __future__ import annotations

from bigsparse_lib.commands._common import (add_json_flag, add_law_source, emit, float_list, sparse_law_from_args,
                                            sparsity)
from bigsparse_lib.law import gain


def register(sub) -> None:
    p = sub.add_parser(
        "gain",
        help="equivalent dense size multiplier of a sparse model (eq. 7, Table 2)",
        description="gain(S) = ((a_S (1-S)^b_S + c_S) / (a_S + c_S))^(-1/b_N): how many times more "
        "parameters a dense model needs to match an S-sparse one with the same data (§3.3.1).",
    )
    add_law_source(p)
    p.add_argument("--sparsity", default="0.5,0.75,0.875", metavar="S[,S...]",
                   help="comma-separated sparsities in [0, 1) (default: Table 2's 0.5,0.75,0.875)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    law = sparse_law_from_args(args)
    values = [sparsity(S, "--sparsity") for S in float_list(args.sparsity, "--sparsity")]
    result = {"gains": {str(S): float(gain(law, S)) for S in values}}
    emit(args, result, lambda r: "\n".join(f"S = {S}: a dense model needs {g:.3f}x the parameters"
                                           for S, g in r["gains"].items()))
    return 0
