"""Benchmark: sweep throughput, runs per hour, one run at a time against a vmapped group.

Run standalone (prints a Markdown section `## Sweeps` on stdout; `bench/run_all.py` collects it):

    .venv/bin/python bench/sweep.py [--family vit] [--runs 4] [--steps 100]

What it measures, in one process on the toy preset:

1. *one at a time*: `--runs` runs of one toy grid point (same N, S, length; seeds 0..K-1),
   each through `train.train` as `bigsparse sweep` runs them (compile, train, evaluate,
   checkpoint, write the result);
2. *grouped*: the same K runs as one program, the engine's step (`train.make_task`,
   `train.make_optimizer`, the family's loss) `jax.vmap`ped over the run axis and jitted
   once; every run's batches and keys are its own, so each run computes what it would
   alone. This is a prototype of grouping: it has no checkpoints or log, and groups only
   runs that differ in seed (see the note printed with the numbers for why).

It prints runs/hour for both, their ratio, and how far the grouped runs' eval losses are
from the one-at-a-time ones (they should agree to float32 rounding).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bigsparse_lib import train  # noqa: E402


def one_at_a_time(configs, root: Path) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    losses = [train.train(c, root / f"run{i}", progress=False)["eval_loss"] for i, c in enumerate(configs)]
    return time.perf_counter() - t0, losses


def grouped(configs) -> tuple[float, list[float]]:
    """K runs that share shapes, length and targets, trained by one vmapped, jitted step."""
    t0 = time.perf_counter()
    configs = [c.resolved() for c in configs]
    tasks = [train.make_task(c) for c in configs]
    task, cfg = tasks[0], configs[0]
    tx = train.make_optimizer(cfg, task)  # the same for all: same targets, steps and schedule
    dtype = train.DTYPES[cfg.dtype]
    params = [t.init(jax.random.fold_in(jax.random.key(c.seed), 0)) for t, c in zip(tasks, configs)]
    params = jax.tree.map(lambda *x: jnp.stack(x), *params)
    opt_state = jax.vmap(tx.init)(params)
    keys = jnp.stack([jax.random.fold_in(jax.random.key(c.seed), 1) for c in configs])

    def step(params, opt_state, batch, key, t):
        rng = jax.random.fold_in(key, t)
        loss, grads = jax.value_and_grad(task.loss_fn)(params, batch, rng=rng, dtype=dtype)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    vstep = jax.jit(jax.vmap(step, in_axes=(0, 0, 0, 0, None)), donate_argnums=(0, 1))
    veval = jax.jit(jax.vmap(lambda p, b: task.loss_fn(p, b, rng=None, dtype=dtype)))
    stack = lambda batches: jax.tree.map(lambda *x: np.stack(x), *batches)  # noqa: E731
    for t in range(cfg.steps):
        batch = stack([tk.train_data.batch(t, cfg.batch_size) for tk in tasks])
        params, opt_state, loss = vstep(params, opt_state, batch, keys, jnp.asarray(t, jnp.int32))
    if not np.all(np.isfinite(np.asarray(loss))):
        raise RuntimeError("a grouped run diverged")
    evals = [veval(params, stack([tk.eval_data.batch(i, cfg.batch_size) for tk in tasks]))
             for i in range(cfg.eval_batches)]
    losses = np.mean(np.stack([np.asarray(e) for e in evals]), axis=0)
    return time.perf_counter() - t0, [float(x) for x in losses]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="vit", choices=["vit", "t5"])
    ap.add_argument("--runs", type=int, default=4, help="K: runs in the group")
    ap.add_argument("--steps", type=int, default=100, help="length of each run (the toy grid's shortest)")
    ap.add_argument("--nnz", type=int, default=12_000)
    ap.add_argument("--sparsity", type=float, default=0.5)
    args = ap.parse_args()

    configs = [train.TrainConfig(family=args.family, preset="toy", nnz=args.nnz, sparsity=args.sparsity,
                                 steps=args.steps, seed=s) for s in range(args.runs)]
    # warm-up: imports and the first compile of anything shared, kept out of both timings
    with tempfile.TemporaryDirectory() as d:
        train.train(train.TrainConfig(family=args.family, preset="toy", nnz=args.nnz, sparsity=args.sparsity,
                                      steps=2, seed=99), Path(d) / "warm", progress=False)
    # interleaved (single, grouped, single, grouped) so that a noisy shared machine hurts both alike
    t_single, t_group, l_single, l_group = [], [], None, None
    for _ in range(2):
        with tempfile.TemporaryDirectory() as d:
            t, l_single = one_at_a_time(configs, Path(d))
            t_single.append(t)
        t, l_group = grouped(configs)
        t_group.append(t)
    ts, tg = min(t_single), min(t_group)
    K = args.runs
    diff = max(abs(a - b) / abs(a) for a, b in zip(l_single, l_group))
    cmd = "python bench/sweep.py " + shlex.join(sys.argv[1:])
    print("## Sweeps\n")
    print(f"`{cmd.strip()}`: {K} toy {args.family} runs (N={args.nnz}, S={args.sparsity}, {args.steps} steps, "
          f"seeds 0..{K - 1}); best of 2 interleaved repeats, wall-clock seconds including compilation.\n")
    print("| execution | seconds for the K runs | runs / hour | speed-up |")
    print("|---|---:|---:|---:|")
    print(f"| one at a time (`train.train`, as `bigsparse sweep`) | {ts:.1f} | {3600 * K / ts:.0f} | 1.00x |")
    print(f"| grouped: one vmapped program (prototype) | {tg:.1f} | {3600 * K / tg:.0f} | {ts / tg:.2f}x |")
    print(f"\nLargest relative difference of the K eval losses, grouped vs one at a time: {diff:.1e}.")
    print("\nThe grouped prototype skips checkpoints, the log and result files, which `train.train` "
          "writes, so the ratio is an upper bound for what grouping seeds would gain. Grouping the "
          "main grid's points (several S on one dense width) is not done: `pruning.sparsify` bakes each "
          "run's target sparsities in as Python floats, so runs with different S are different programs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
