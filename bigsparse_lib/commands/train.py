"""`bigsparse train`: train one model of the sweep (§3.1, App. A) and write DIR/result.json.

    bigsparse train --family t5 --preset smoke --sparsity 0.5 --out runs/t5-s50
    bigsparse train --family vit --preset toy --nnz 200000 --sparsity 0.75 --pattern unstructured --out runs/v
    bigsparse train --family vit --preset toy --sparsity 0.5 --method oneshot --init runs/dense --out runs/pruned

Running the same command again resumes from the checkpoint in --out (or returns the finished
result); a --out that holds a run of another config is refused.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from bigsparse_lib.commands._common import add_json_flag, emit
from bigsparse_lib.errors import InputError
from bigsparse_lib.vocab import FAMILIES, PRESETS


def _count(text: str) -> int:
    """'85000000', '8.5e7' -> 85000000."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of non-zero parameters, got {text!r}") from None
    if not math.isfinite(value) or value != round(value):
        raise argparse.ArgumentTypeError(f"expected a whole number of non-zero parameters, got {text!r}")
    return int(round(value))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train one sparse (or dense) T5/ViT model and record loss, N, D and FLOPs",
        description="Train one run of the sweep: gradual magnitude pruning (cubic, 25%%->75%% of training) "
                    "to sparsity S, with N non-zeros in the sparsified layers. Writes DIR/result.json "
                    "(eval loss, nnz, dense params, per-layer sparsity, data D, dense and sparse FLOPs), "
                    "DIR/log.jsonl and orbax checkpoints; resumes from DIR when run again.")
    p.add_argument("--family", choices=FAMILIES, required=True)
    p.add_argument("--preset", choices=PRESETS, required=True,
                   help="model base and recipe (batch size, steps): smoke/toy on CPU, full = the paper's")
    p.add_argument("--nnz", type=_count, metavar="N",
                   help="non-zeros of the sparsified layers at the end; the width is scaled to hold N/(1-S) "
                        "(default: the preset's base width)")
    p.add_argument("--sparsity", type=float, default=0.0, metavar="S", help="target sparsity S in [0, 1) (default 0)")
    p.add_argument("--pattern", default="unstructured", help="'unstructured' (default) or n:m, e.g. 2:4 (§4.1)")
    p.add_argument("--method", choices=["gmp", "acdc", "oneshot"], default="gmp",
                   help="gmp (the paper's), acdc (App. B) or oneshot (§4.2)")
    p.add_argument("--acdc-phase", type=int, metavar="K",
                   help="acdc only: steps per sparse/dense phase (default: 4%% of the run, App. B's 10K of 250K)")
    p.add_argument("--steps", type=int, metavar="K", help="training steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, metavar="B", help="batch size (default: the preset's)")
    p.add_argument("--init", metavar="CHECKPOINT_DIR",
                   help="a previous `train --out` directory with a dense model to prune from (§4.2; "
                        "the schedule then starts at once)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="compute precision; bfloat16 is for accelerators (parameters stay float32)")
    p.add_argument("--data", metavar="SOURCE", dest="data_source",
                   help="'synthetic' or a folder of real data (C4 shards / images); the full preset needs it")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (resumed if it holds this run)")
    p.add_argument("--save-params", metavar="FILE.npz",
                   help="write each sparsified kernel, keyed by its parameter path, to FILE.npz")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=run)


def _text(result: dict) -> str:
    cfg = result["config"]
    lines = [
        f"{cfg['family']}/{cfg['preset']}  S={cfg['sparsity']:g} ({cfg['pattern']}, {cfg['method']})  "
        f"steps={result['steps']}",
        f"eval loss      {result['eval_loss']:.6g}",
        f"N (non-zeros)  {result['nnz']:,} of {result['dense_params']:,} "
        f"(sparsity {result['sparsity']:.4f})",
        f"D ({result['data_unit']})  {result['data']:,}",
        f"C dense        {result['flops_dense']:.4e} FLOPs",
        f"C sparse       {result['flops_sparse']:.4e} FLOPs",
    ]
    if result.get("params_file"):
        lines.append(f"kernels        {result['params_file']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from bigsparse_lib import train

    save = Path(args.save_params) if args.save_params else None
    if save is not None and save.suffix != ".npz":
        raise InputError(f"--save-params must name a .npz file, got {save}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} is a file; give a directory (it holds checkpoints, log.jsonl, result.json)")
    config = train.TrainConfig(
        family=args.family, preset=args.preset, nnz=args.nnz, sparsity=args.sparsity, pattern=args.pattern,
        method=args.method, steps=args.steps, seed=args.seed, batch_size=args.batch_size, init=args.init,
        dtype=args.dtype, data_source=args.data_source, acdc_phase=args.acdc_phase,
    )
    # Before anything is written or allocated: refuse a model that cannot fit (issue 16, item 15).
    from bigsparse_lib import budget

    budget.check_fits(args.family, train.model_config(config.validate()), where=f"--nnz {args.nnz}"
                      if args.nnz is not None else f"--preset {args.preset}")
    try:
        result = train.train(config, args.out, progress=not args.no_progress)
    except train.Diverged as e:
        print(f"bigsparse train: the run diverged: {e} (see {Path(args.out) / 'result.json'})",
              file=__import__("sys").stderr)
        return 1
    if save is not None:
        kernels = train.sparsified_params(args.out, args.family)
        save.parent.mkdir(parents=True, exist_ok=True)
        np.savez(save, **kernels)
        result = {**result, "params_file": str(save)}
    emit(args, result, _text)
    return 0
