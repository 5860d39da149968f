"""Benchmark: the toy main sweeps, end to end, against the engine's one-run-at-a-time baseline.

Run standalone (prints a Markdown section `## Sweeps` on stdout; `bench/run_all.py` collects it):

    .venv/bin/python bench/sweep.py [--family t5 vit] [--baseline-runs 4]

For each family, in one process:

1. **The sweep.** The toy main grid (every size, sparsity, length and seed) is swept with
   `sweep.run_sweep` into a fresh results directory, as `bigsparse sweep` and the book do:
   runs of one dense width train as one compiled program (lanes of a `jax.vmap` over a
   `lax.scan` of steps, batches made on the device), with checkpoints, logs and records. The
   JAX compilation cache is a fresh empty folder, so compile time is included; the table
   gives XLA's compile seconds within it (JAX's backend-compile monitoring event).
2. **Achieved FLOP/s.** XLA's own count of one dense training step's FLOPs at each dense width
   (forward, backward and optimizer), times the steps every run of that width trained, over the
   sweep's wall time; against the float32 matmul peak (2048^3) measured in the same process.
3. **Side by side** (`--together`, the default): both families swept again at once, each in its
   own process (`sweep.run_sweeps`), as the book's sweeps chapter trains them, into fresh
   folders with another cold cache; its wall time against the one-after-the-other total above.
4. **The baseline.** `--baseline-runs` runs of the grid (the shortest length, spread over the
   widths) trained the way the engine did before: one run at a time, one step per dispatch,
   every batch built on the host (`train.train_runs(..., block=1, device_data=False)`). Their
   runs x steps per second against the sweep's.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

_CACHE = tempfile.mkdtemp(prefix="bigsparse-bench-jax-")
os.environ["BIGSPARSE_JAX_CACHE"] = _CACHE  # a cold compilation cache: compile time counts

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from bigsparse_lib import sweep, train  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import make_step, matmul_peak, xla_flops  # noqa: E402


def step_flops(config: train.TrainConfig) -> float:
    """XLA's FLOP count of one dense training step of `config`'s model (batch of the recipe)."""
    c = config.resolved()
    task = train.make_task(c)
    tx = train.make_optimizer(c, task)
    mesh = train.data_mesh(c.batch_size, jax.devices()[:1])
    params = jax.eval_shape(task.init, jax.random.key(0))
    flags = train._flag_list(params, task.sparsifiable(params))
    step, _ = make_step(task, tx, flags, train.DTYPES[c.dtype], mesh)
    opt = jax.eval_shape(tx.init, params)
    batch = jax.eval_shape(lambda: task.train_data.device_batch_fn(c.batch_size)(
        jnp.int32(0), jnp.int32(0), jnp.int32(0))) if hasattr(task.train_data, "device_batch_fn") else \
        task.train_data.batch(0, c.batch_size)
    return xla_flops(step, params, opt, batch, jnp.int32(0))


# XLA's compile seconds in this process (JAX's own monitoring event, which `jax_log_compiles` also
# reports): the sweep's wall time includes them, and the table says how much they were.
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compiled = [0.0]


def _count_compiles(event: str, duration: float, **_) -> None:
    if event == COMPILE_EVENT:
        _compiled[0] += duration


jax.monitoring.register_event_duration_secs_listener(_count_compiles)


def widths(grid) -> dict[str, list]:
    """The grid's runs by dense width (`train.group_signature`): each group trains as one program."""
    out: dict[str, list] = {}
    for c in grid:
        out.setdefault(train.group_signature(c), []).append(c)
    return out


def grid_flops(by_width: dict[str, list]) -> float:
    """XLA's count of a dense step at each width x the steps every run of that width trains."""
    return sum(step_flops(cs[0]) * sum(c.resolved().steps for c in cs) for cs in by_width.values())


def together(rows) -> tuple[float, str]:
    """Step 3: the families' toy main grids swept side by side, into fresh folders, with a cold cache."""
    os.environ["BIGSPARSE_JAX_CACHE"] = tempfile.mkdtemp(prefix="bigsparse-bench-jax-")
    with tempfile.TemporaryDirectory() as d:
        jobs = [(sweep.make_grid(r["family"], "toy", "main"), Path(d) / r["family"]) for r in rows]
        t0 = time.perf_counter()
        out = sweep.run_sweeps(jobs, parallel=len(jobs), progress=False)
        both = time.perf_counter() - t0
    if not all(s.complete and not s.failed for s, _ in out):
        raise RuntimeError(f"a side-by-side sweep did not finish: {[s for s, _ in out]}")
    return both, ", ".join(f"{r['family']} {w:.0f} s" for r, (_, w) in zip(rows, out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", nargs="+", default=["t5", "vit"], choices=["vit", "t5"])
    ap.add_argument("--baseline-runs", type=int, default=4)
    ap.add_argument("--results", default=None,
                    help="sweep into DIR/<family>-toy-main (e.g. results/, the book's cache) instead of a "
                         "temporary folder; it must not hold finished runs, or the timing means nothing")
    ap.add_argument("--together", action=argparse.BooleanOptionalAction, default=True,
                    help="then sweep the families again, side by side in their own processes (`sweep.run_sweeps`, "
                         "as the book's sweeps chapter does), into fresh folders with another cold cache")
    ap.add_argument("--together-only", action="store_true",
                    help="only step 3: the families side by side (their FLOP counts for the rate; no baseline)")
    args = ap.parse_args()

    peak = matmul_peak(jnp.float32, 2048, 5)
    rows = []
    for family in args.family:
        grid = sweep.make_grid(family, "toy", "main")
        if args.together_only:
            rows.append(dict(family=family, flops=grid_flops(widths(grid))))
            continue
        with tempfile.TemporaryDirectory() as d:
            where = Path(args.results) / f"{family}-toy-main" if args.results else Path(d) / "sweep"
            t0, c0 = time.perf_counter(), _compiled[0]
            summary = sweep.run_sweep(grid, where, progress=False)
            wall, compiling = time.perf_counter() - t0, _compiled[0] - c0
            if not summary.complete or summary.failed:
                raise RuntimeError(f"the {family} toy sweep did not finish: {summary}")
            steps = sum(c.resolved().steps for c in grid)
            by_width = widths(grid)
            flops = grid_flops(by_width)
            # the baseline: a few of the shortest runs, spread over the widths, one at a time
            shortest = min(c.resolved().steps for c in grid)
            picks = [min((c for c in grid if c.resolved().steps == shortest and train.group_signature(c) == k),
                         key=lambda c: c.seed, default=cs[0]) for k, cs in by_width.items()]
            picks = picks[:: max(1, len(picks) // args.baseline_runs)][: args.baseline_runs]
            t0 = time.perf_counter()
            for i, c in enumerate(picks):
                train.train_runs([c], [Path(d) / "base" / str(i)], progress=False, block=1, device_data=False)
            base_wall = time.perf_counter() - t0
            base_steps = sum(c.resolved().steps for c in picks)
        rows.append(dict(family=family, runs=len(grid), widths=len(by_width), wall=wall, compiling=compiling, steps=steps,
                         flops=flops, base_runs=len(picks), base_steps=base_steps, base_wall=base_wall))
        # each family's figures as soon as they exist: a bench stopped during the next family keeps them
        print(f"[bench/sweep] {family}: {len(grid)} runs, {steps:,} run-steps in {wall:.0f} s "
              f"({compiling:.0f} s compiling), "
              f"{flops / wall / 1e9:,.1f} GFLOP/s ({flops / wall / peak:.0%} of the matmul peak); baseline "
              f"{base_steps / base_wall:,.1f} run-steps/s vs {steps / wall:,.1f}", file=sys.stderr, flush=True)

    cmd = ("python bench/sweep.py " + shlex.join(sys.argv[1:])).strip()
    print("## Sweeps\n")
    if args.together_only:
        both, each = together(rows)
        flops = sum(r["flops"] for r in rows)
        print(f"`{cmd}`: both families' toy main grids swept side by side, each in its own process "
              f"(`sweep.run_sweeps`, as the sweeps chapter runs them), into fresh folders with a cold JAX "
              f"compilation cache: **{both:.0f} s ({both / 60:.1f} min; target <= 15 min)** ({each}); "
              f"{flops / both / 1e9:,.1f} GFLOP/s together, {flops / both / peak:.0%} of a 2048^3 float32 "
              f"matmul measured in the same process ({peak / 1e9:,.1f} GFLOP/s).")
        return 0
    print(f"`{cmd}`: each family's toy main grid swept into a fresh results directory with a cold JAX "
          "compilation cache (so compile time is included), as `make book` runs it; FLOP/s = XLA's count of "
          "a dense step at each width x the steps trained there / wall time, against a 2048^3 float32 "
          f"matmul measured in the same process ({peak / 1e9:,.1f} GFLOP/s). Baseline: a few of the "
          "shortest runs trained the way the engine did before this rewrite (one run at a time, one step "
          "per dispatch, host-built batches).\n")
    print("| family | runs (widths) | runs x steps | sweep wall time | of which XLA compiling | GFLOP/s | "
          "of matmul peak | runs x steps / s | baseline runs x steps / s | speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rate, base = r["steps"] / r["wall"], r["base_steps"] / r["base_wall"]
        print(f"| {r['family']} | {r['runs']} ({r['widths']}) | {r['steps']:,} | {r['wall']:.0f} s | "
              f"{r['compiling']:.0f} s ({r['compiling'] / r['wall']:.0%}) | "
              f"{r['flops'] / r['wall'] / 1e9:,.1f} | {r['flops'] / r['wall'] / peak:.0%} | {rate:,.0f} | "
              f"{base:,.1f} ({r['base_runs']} runs) | {rate / base:,.1f}x |")
    total = sum(r["wall"] for r in rows)
    print(f"\nBoth families' toy main sweeps, one after the other: {total:.0f} s ({total / 60:.1f} min; "
          "target <= 15 min).")
    if args.together and len(rows) > 1:
        both, each = together(rows)
        flops = sum(r["flops"] for r in rows)
        print(f"Side by side, each family in its own process (`sweep.run_sweeps`, as the sweeps chapter runs "
              f"them; cold cache): **{both:.0f} s ({both / 60:.1f} min; target <= 15 min)** ({each}), "
              f"{total / both:.2f}x the one-after-the-other time of this run; {flops / both / 1e9:,.1f} GFLOP/s "
              f"together, {flops / both / peak:.0%} of the matmul peak.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
