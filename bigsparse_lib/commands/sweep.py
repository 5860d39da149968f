"""`bigsparse sweep`, `bigsparse sweep-status`, `bigsparse export`: run a grid, watch it, get its table.

    bigsparse sweep --family t5 --preset toy --grid main --results runs/t5-toy [--executor process --workers 2]
    bigsparse sweep-status runs/t5-toy
    bigsparse export runs/t5-toy --out t5-toy.csv      # then: bigsparse fit t5-toy.csv
"""
from __future__ import annotations

import argparse
import sys

from bigsparse_lib.commands._common import add_json_flag, emit
from bigsparse_lib.errors import InputError

EXECUTOR_CHOICES = ("local", "process", "dask", "slurm")


def register(subparsers) -> None:
    from bigsparse_lib.sweep.grids import GRIDS
    from bigsparse_lib.vocab import FAMILIES, PRESETS

    p = subparsers.add_parser(
        "sweep", help="train a grid of runs (Table 1, §4.1 n:m, §4.2 pretrained) into a resumable results directory",
        description="Train every run of a grid that the results directory has not recorded yet. "
                    "Killed sweeps resume where they stopped; finished runs are never trained twice.")
    # choices are checked in run() so that a bad name is an InputError (exit 2, one line) like other input
    p.add_argument("--family", required=True, help=f"model family: {', '.join(FAMILIES)}")
    p.add_argument("--preset", required=True, help=f"scale: {', '.join(PRESETS)}")
    p.add_argument("--grid", default="main", help=f"which grid: {', '.join(GRIDS)} (default main)")
    p.add_argument("--results", required=True, metavar="DIR", help="results directory (created if absent)")
    p.add_argument("--executor", default="local", help=f"where runs execute: {', '.join(EXECUTOR_CHOICES)}")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (process/dask), array width (slurm), or groups trained side by side "
                        "in this process (local with grouping; default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run in the grid")
    p.add_argument("--retry-failed", action="store_true", help="train diverged runs again too")
    p.add_argument("--group", action=argparse.BooleanOptionalAction, default=None,
                   help="train runs that share shapes and length as one vmapped program (in-process executor; "
                        "default: on for smoke and toy, off for full)")
    p.add_argument("--dask-address", default=None, metavar="ADDR",
                   help="scheduler of an existing Dask cluster (default: start a local one)")
    p.add_argument("--slurm-cluster", default="slurm", choices=("slurm", "local", "debug"),
                   help="submitit backend: slurm (default), or local/debug to try the jobs on this machine")
    p.add_argument("--slurm-partition", default=None)
    p.add_argument("--slurm-timeout-min", type=int, default=24 * 60)
    p.add_argument("--slurm-gpus-per-node", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--trainer", default=None, metavar="MODULE:FUNCTION",
                   help="train each run with your own function instead of the engine: it is called as "
                        "f(config, out_dir, progress=False) and returns the run's result dict (see "
                        "sweep.executors.run_one); runs then train one at a time, never grouped")
    add_json_flag(p)
    p.set_defaults(func=run_sweep_cmd)

    s = subparsers.add_parser("sweep-status", help="what a results directory holds: done, running, failed, left")
    s.add_argument("results", metavar="DIR")
    s.add_argument("--runs", action="store_true", help="list every run, not just the counts and failures")
    add_json_flag(s)
    s.set_defaults(func=run_status)

    e = subparsers.add_parser("export", help="write a results directory's tidy table (the input of `bigsparse fit`)")
    e.add_argument("results", metavar="DIR")
    e.add_argument("--out", required=True, metavar="FILE.csv")
    e.set_defaults(func=run_export)


def _check_choice(value: str, choices, flag: str) -> None:
    if value not in choices:
        raise InputError(f"{flag}: unknown value {value!r}; choose from {', '.join(choices)}")


def run_sweep_cmd(args) -> int:
    from bigsparse_lib import sweep
    from bigsparse_lib.sweep.executors import DEFAULT_TRAINER

    _check_choice(args.executor, EXECUTOR_CHOICES, "--executor")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    grid = sweep.make_grid(args.family, args.preset, args.grid, seed=args.seed)
    options = {}
    if args.executor == "dask":
        options["address"] = args.dask_address
    if args.executor == "slurm":
        options.update(cluster=args.slurm_cluster, partition=args.slurm_partition,
                       timeout_min=args.slurm_timeout_min, gpus_per_node=args.slurm_gpus_per_node)
    trainer = args.trainer or DEFAULT_TRAINER
    summary = sweep.run_sweep(grid, args.results, executor=args.executor, workers=args.workers, trainer=trainer,
                              progress=not args.no_progress, retry_failed=args.retry_failed, group=args.group,
                              **options)
    result = {"results": args.results, "total": summary.total, "skipped": summary.skipped, "done": summary.done,
              "failed": summary.failed, "complete": summary.complete}

    def text(r):
        lines = [f"{r['results']}: {r['total']} runs; {r['skipped']} already recorded, {r['done']} trained now, "
                 f"{len(r['failed'])} failed"]
        if r["failed"]:
            lines.append(f"failed runs are left out of `bigsparse export`; see `bigsparse sweep-status {r['results']}`")
        return "\n".join(lines)

    emit(args, result, text)
    return 0 if summary.complete else 1


def run_status(args) -> int:
    from bigsparse_lib import sweep

    st = sweep.status(args.results)

    def text(r):
        lines = [f"{r['results']}: {r['family']}/{r['preset']}/{r['grid']} (recipe {r['recipe_version']})",
                 f"  {r['total']} runs: {r['done']} done, {r['running']} running, {r['failed']} failed, "
                 f"{r['left']} left"]
        shown = r["runs"] if args.runs else [x for x in r["runs"] if x["state"] in ("failed", "running")]
        for x in shown:
            what = f"N={x['nnz']} S={x['sparsity']} {x['pattern']} steps={x['steps']} seed={x['seed']}"
            extra = ""
            if x["state"] == "failed":
                extra = f"  {x.get('status')}: {x.get('reason')}"
            elif x.get("loss") is not None:
                extra = f"  loss={x['loss']:.4f}"
            lines.append(f"  {x['run_id']}  {x['state']:<7}  {what}{extra}")
        return "\n".join(lines)

    emit(args, st, text)
    return 0


def run_export(args) -> int:
    from bigsparse_lib import sweep
    from bigsparse_lib.table import check_output_file, validate_tidy, write_tidy_csv

    check_output_file(args.out)

    def warn(msg: str) -> None:
        print(f"bigsparse export: warning: {msg}", file=sys.stderr)

    df = sweep.export(args.results, warn=warn)
    validate_tidy(df, where=str(args.results),
                  locations=[f"run {rid} (runs/{rid}/record.json)" for rid in df["run_id"]])
    path = write_tidy_csv(df, args.out)
    print(f"wrote {len(df)} runs to {path}")
    return 0
