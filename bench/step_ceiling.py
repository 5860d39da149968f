"""Benchmark: how much of the matmul peak a toy training step could reach at best.

Run standalone (prints a Markdown section `## The toy step's ceiling` on stdout;
`bench/run_all.py` collects it):

    .venv/bin/python bench/step_ceiling.py [--family t5 vit] [--reps 40]

Issue 11 asks the toy main sweep for 50% of the float32 matmul peak (a 2048^3 product). The
engine reaches about 12% (`bench/sweep.py`). This asks what the step's own shapes allow.

For every dense width of each family's toy main grid, in one process:

1. The dense training step (forward, backward and the optimizer, the body of the engine's
   scanned block: `bench/train_step.make_step`) is traced, and every `dot_general` in its jaxpr is
   collected with its operand shapes and dimension numbers (inside scans, times their length).
2. Each distinct product is timed **bare**: the same `lax.dot_general` on operands of the same
   shapes, repeated in a compiled loop (`lax.optimization_barrier` keeps XLA from hoisting it), best
   of 3. A step cannot take less time than its products take alone, so

       ceiling = XLA's FLOP count of the step / (sum over its products of their bare times)

   is an upper bound on the FLOP/s the step can reach on this machine, whatever the engine does
   around it (lanes, scans, dispatch): the rest of the step (norms, softmax, masks, the optimizer)
   only adds time. Bare timings are, if anything, optimistic: their operands sit in cache. The loop
   itself adds next to nothing: a trip with a trivial body measured under 0.1 us, against 80 us and
   more for the toy step's small products (ad hoc, 2026-12-01).
3. The step itself is timed too (median of interleaved timings, one batch), for the share of its
   time that its products explain.

The grid's ceiling weights each width by the run-steps the grid trains on it, as `bench/sweep.py`
weights its achieved FLOP/s. One lane: the engine's lanes batch the same products (`jax.vmap`), and
a batched product of 4 lanes ran at the same per-lane speed as one (ad-hoc, 2026-12-01).
"""
from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402
from jax.extend import core as jcore  # noqa: E402

from bigsparse_lib import models, sweep, train  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import make_step, matmul_peak, xla_flops  # noqa: E402

TARGET = 0.50  # issue 11: 50% of the matmul peak


def _subjaxprs(params):
    for v in params.values():
        for x in (v if isinstance(v, (list, tuple)) else (v,)):
            if isinstance(x, jcore.ClosedJaxpr):
                yield x.jaxpr
            elif isinstance(x, jcore.Jaxpr):
                yield x


def dot_products(jaxpr, times: int = 1, out: Counter | None = None) -> Counter:
    """Every `dot_general` of `jaxpr` (and of the jaxprs inside it) as (lhs shape, rhs shape, dtype,
    dimension numbers) -> how many times one evaluation runs it. A scan's body counts `length` times;
    a while loop's trip count is unknown, so a product inside one is an error rather than a guess."""
    out = Counter() if out is None else out
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            lhs, rhs = (v.aval for v in eqn.invars)
            key = (tuple(lhs.shape), tuple(rhs.shape), str(lhs.dtype), eqn.params["dimension_numbers"])
            out[key] += times
            continue
        inner = times * (eqn.params["length"] if eqn.primitive.name == "scan" else 1)
        for sub in _subjaxprs(eqn.params):
            if eqn.primitive.name == "while" and dot_products(sub):
                raise ValueError("a dot_general inside a while loop: its trip count is unknown")
            dot_products(sub, inner, out)
    return out


def dot_flops(key) -> float:
    """2 x (batch x free lhs x free rhs x contracted) for one dot_general."""
    lhs, rhs, _, ((lc, rc), (lb, rb)) = key
    contracted = math.prod(lhs[i] for i in lc)
    batch = math.prod(lhs[i] for i in lb)
    free_l = math.prod(d for i, d in enumerate(lhs) if i not in lc and i not in lb)
    free_r = math.prod(d for i, d in enumerate(rhs) if i not in rc and i not in rb)
    return 2.0 * batch * free_l * free_r * contracted


def bare_seconds(key, reps: int) -> float:
    """Seconds one bare `dot_general` of this signature takes: `reps` of it in a compiled loop, best of 3."""
    lhs_shape, rhs_shape, dtype, dims = key
    a = jax.random.normal(jax.random.key(0), lhs_shape, dtype)
    b = jax.random.normal(jax.random.key(1), rhs_shape, dtype)
    out = jax.eval_shape(lambda a, b: lax.dot_general(a, b, dims), a, b)

    def body(_, carry):
        a, b, _ = carry
        a, b = lax.optimization_barrier((a, b))  # not loop-invariant to XLA: one product per trip
        return a, b, lax.dot_general(a, b, dims)

    f = jax.jit(lambda a, b: lax.fori_loop(0, reps, body, (a, b, jnp.zeros(out.shape, out.dtype)))[2])
    f(a, b).block_until_ready()
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return best / reps


def width_configs(family: str) -> list[tuple[train.TrainConfig, int]]:
    """One config per dense width of the toy main grid, with the run-steps the grid trains on it."""
    by_width: dict = {}
    for c in sweep.make_grid(family, "toy", "main"):
        by_width.setdefault(train.group_signature(c), []).append(c)
    return [(cs[0].resolved(), sum(c.resolved().steps for c in cs)) for cs in by_width.values()]


def measure_width(config: train.TrainConfig, reps: int, step_repeats: int = 5, step_n: int = 10) -> dict:
    """One width's row: XLA's FLOPs of its dense step, its products and their bare time, the step's own time."""
    task = train.make_task(config)
    tx = train.make_optimizer(config, task)
    mesh = train.data_mesh(config.batch_size, jax.devices()[:1])
    params = jax.jit(task.init)(jax.random.key(0))
    flags = train._flag_list(params, task.sparsifiable(params))
    step, batch_sharding = make_step(task, tx, flags, train.DTYPES[config.dtype], mesh)
    opt_state = jax.jit(tx.init)(params)
    batch = jax.device_put(task.train_data.batch(0, config.batch_size), batch_sharding)
    t = jnp.int32(0)
    flops = xla_flops(step, params, opt_state, batch, t)
    products = dot_products(jax.make_jaxpr(step)(params, opt_state, batch, t).jaxpr)
    bare = {k: bare_seconds(k, reps) for k in products}
    dots_s = sum(n * bare[k] for k, n in products.items())
    dots_flops = sum(n * dot_flops(k) for k, n in products.items())
    # the step itself: median of timings of step_n steps (donated state, one batch)
    times = []
    for i in range(step_repeats + 1):
        t0 = time.perf_counter()
        for _ in range(step_n):
            params, opt_state, loss, _ = step(params, opt_state, batch, t)
        jax.block_until_ready((params, loss))
        if i:  # the first includes the compile
            times.append((time.perf_counter() - t0) / step_n)
    slowest = sorted(products, key=lambda k: products[k] * bare[k], reverse=True)[:3]
    return dict(flops=flops, dots_flops=dots_flops, products=sum(products.values()), distinct=len(products),
                dots_s=dots_s, step_s=statistics.median(times),
                slowest=[(k, products[k], products[k] * bare[k] / dots_s, dot_flops(k) / bare[k]) for k in slowest])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", nargs="+", default=["t5", "vit"], choices=["vit", "t5"])
    ap.add_argument("--reps", type=int, default=40, help="bare products per timed loop")
    args = ap.parse_args()

    first_peak = peak = matmul_peak(jnp.float32, 2048, 5)
    rows, grid = [], {}
    for family in args.family:
        for config, run_steps in width_configs(family):
            r = measure_width(config, args.reps)
            r.update(family=family, width=_width_label(config), run_steps=run_steps)
            rows.append(r)
            print(f"[bench/step_ceiling] {family} {r['width']}: ceiling {r['flops'] / r['dots_s'] / peak:.0%}, "
                  f"step {r['flops'] / r['step_s'] / peak:.0%} of the peak; products {r['dots_s'] / r['step_s']:.0%} "
                  "of the step's time", file=sys.stderr, flush=True)
        fam = [r for r in rows if r["family"] == family]
        w = sum(r["run_steps"] for r in fam)
        grid[family] = dict(
            ceiling=sum(r["run_steps"] * r["flops"] for r in fam) / sum(r["run_steps"] * r["dots_s"] for r in fam),
            step=sum(r["run_steps"] * r["flops"] for r in fam) / sum(r["run_steps"] * r["step_s"] for r in fam),
            run_steps=w)
    # Shared machines drift: of the peaks measured before and after, the lower makes every percentage
    # the higher, so the verdict "below 50%" errs on the side of the target.
    last_peak = matmul_peak(jnp.float32, 2048, 5)
    peak = min(first_peak, last_peak)

    cmd = ("python bench/step_ceiling.py " + shlex.join(sys.argv[1:])).strip()
    print("## The toy step's ceiling\n")
    print(f"`{cmd}`: for each dense width of the toy main grids, XLA's FLOP count of one dense training "
          "step (forward, backward, optimizer) over the time its matrix products take **bare**: every "
          "`dot_general` of the step's jaxpr, timed alone on operands of its shapes in a compiled loop. The "
          "step cannot be faster than its products, so this is an upper bound on the FLOP/s the step can "
          "reach on this machine, whatever the engine does around it. Against a 2048^3 float32 matmul "
          f"measured in the same process before and after ({first_peak / 1e9:,.1f} and {last_peak / 1e9:,.1f} "
          "GFLOP/s; percentages are of the lower, which errs on the side of the target). *step*: the step itself, one lane, dispatched alone (median of 5 timings of 10 steps).\n")
    print("| family | dense width | run-steps in the grid | XLA GFLOP / step | products (distinct) | "
          "product FLOPs of the step's | products bare, ms | step, ms | products' share of the step | "
          "**ceiling**, of peak | step, of peak |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['family']} | {r['width']} | {r['run_steps']:,} | {r['flops'] / 1e9:.3f} | "
              f"{r['products']} ({r['distinct']}) | {r['dots_flops'] / r['flops']:.0%} | {r['dots_s'] * 1e3:.2f} | "
              f"{r['step_s'] * 1e3:.2f} | {r['dots_s'] / r['step_s']:.0%} | **{r['flops'] / r['dots_s'] / peak:.0%}** | "
              f"{r['flops'] / r['step_s'] / peak:.0%} |")
    print()
    for family, g in grid.items():
        verdict = "below" if g["ceiling"] < TARGET * peak else "at or above"
        print(f"- **{family}**, the whole grid (widths weighted by their {g['run_steps']:,} run-steps): ceiling "
              f"**{g['ceiling'] / peak:.0%}** of the matmul peak, {verdict} issue 11's {TARGET:.0%}; the step "
              f"dispatched alone reaches {g['step'] / peak:.0%}.")
    print()
    print("Where the products' time goes, at each family's width with the most run-steps: the three products "
          "that take the most of it (operand shapes, dimension numbers ((contracted), (batch)), times per step).\n")
    for family in grid:
        r = max((r for r in rows if r["family"] == family), key=lambda r: r["run_steps"])
        for (lhs, rhs, _, dims), n, share, rate in r["slowest"]:
            print(f"- {family} {r['width']}: {lhs} x {rhs}, {dims}, x{n}: {share:.0%} of the products' time, "
                  f"{rate / 1e9:,.1f} GFLOP/s ({rate / peak:.0%} of the peak)")
    return 0


def _width_label(config: train.TrainConfig) -> str:
    """The dense model's hidden size and sparsifiable weights, e.g. "d_model 22 (27,192)"."""
    shapes = models.config_for_nnz(config.family, config.preset, config.nnz, config.sparsity)
    family = models.get_family(config.family)
    hidden = family.hidden_size(shapes)
    return f"{'d_model' if config.family == 't5' else 'width'} {hidden} ({family.dense_count(shapes):,})"


if __name__ == "__main__":
    sys.exit(main())
