"""Benchmark: the cost of sparsity in the training step, and the FLOP/s the step reaches.

Run standalone (prints a Markdown section on stdout; `bench/run_all.py` collects it):

    .venv/bin/python bench/train_step.py

Measured in the same process, interleaved so that a noisy shared machine hurts all alike:

1. the *dense* step (the family's optimizer alone) against the same model trained sparse
   with `pruning.sparsify` at S = 0.5 -- once with a fixed mask (the masking every step
   costs) and once on the GMP ramp, where the mask is also recomputed (top-k) every
   `mask_update_every(steps)` steps, amortised. Target: masking costs <= 10%.
2. the FLOP/s the dense step achieves (XLA's own count of the compiled step's FLOPs / time)
   against a large matrix product on the same device: the practical peak.
3. on a GPU, the same at the full (paper) sizes in bfloat16, as MFU against the measured
   matmul peak and, where known, the device's nominal bf16 peak.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bigsparse_lib import optim, train  # noqa: E402
from bigsparse_lib.schedule import GradualSchedule  # noqa: E402

# Nominal dense bf16 tensor-core peaks (vendor data sheets, SXM parts), FLOP/s.
NOMINAL_BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def matmul_peak(dtype, n: int, repeats: int) -> float:
    """FLOP/s of an n x n x n matrix product: 2 n^3 FLOPs, best of `repeats`."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(lambda a, b: a @ b)
    f(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a, b).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / min(times)


@dataclasses.dataclass
class Variant:
    """One compiled training step and its state, ready to be timed."""

    name: str
    step: object
    params: object
    opt_state: object
    batch: object
    t: int = 0
    flops: float | None = None

    def run(self, n: int) -> float:
        """Seconds per step over n steps."""
        t0 = time.perf_counter()
        loss = None
        for _ in range(n):
            self.params, self.opt_state, loss, _ = self.step(self.params, self.opt_state, self.batch,
                                                             jnp.asarray(self.t, jnp.int32))
            self.t += 1
        jax.block_until_ready((self.params, loss))
        return (time.perf_counter() - t0) / n


def xla_flops(jitted, *args) -> float:
    """XLA's own FLOP count of `jitted` compiled for `args` (arrays or shapes); 0.0 when it gives none."""
    cost = jitted.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0))


def make_step(task, tx, flags, dtype, mesh):
    """One jit-compiled training step (batch sharded over "data", params replicated): the body of
    the engine's scanned block (`train.train_runs`), dispatched alone so that it can be timed."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    import optax

    replicated, batch_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    key = jax.random.fold_in(jax.random.key(0), 1)

    def nnz(params):
        leaves = [x for x, f in zip(jax.tree.leaves(params), flags) if f]
        return jnp.stack([jnp.count_nonzero(x) for x in leaves])

    def step(params, opt_state, batch, t):
        loss, grads = jax.value_and_grad(task.loss_fn)(params, batch, rng=jax.random.fold_in(key, t), dtype=dtype)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, nnz(params)

    return jax.jit(step, in_shardings=(replicated, replicated, batch_sharding, replicated),
                   out_shardings=(replicated,) * 4, donate_argnums=(0, 1)), batch_sharding


def build(family: str, preset: str, mode: str, dtype: str, batch_size: int | None, S: float = 0.5) -> Variant:
    """mode: "dense" (optimizer alone), "masked" (fixed mask), "ramp" (GMP, mask recomputed every `every`)."""
    recipe = train.RECIPES[family][preset]
    steps = recipe.steps
    every = train.mask_update_every(steps)
    schedule = {"dense": None, "masked": GradualSchedule(0.0, 0.0, 3.0, every),
                "ramp": GradualSchedule(0.0, 1.0, 3.0, every)}[mode]
    config = train.TrainConfig(
        family=family, preset=preset, sparsity=0.0 if mode == "dense" else S,
        method="oneshot" if mode == "masked" else "gmp", steps=steps, batch_size=batch_size, dtype=dtype,
        schedule=schedule, data_source="synthetic" if preset == "full" else None,
    ).resolved()
    task = train.make_task(config)
    if mode == "dense":  # the optimizer alone, no pruning wrapper at all
        task = dataclasses.replace(task, optimizer=lambda c, t: optim.for_family(
            c.family, int(c.steps), c.preset, learning_rate=c.learning_rate))
    tx = task.optimizer(config, task) if task.optimizer else train.make_optimizer(config, task)
    mesh = train.data_mesh(config.batch_size)
    params = jax.jit(task.init)(jax.random.key(0))
    flags = train._flag_list(params, task.sparsifiable(params))
    step, batch_sharding = make_step(task, tx, flags, train.DTYPES[dtype], mesh)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    params = jax.device_put(params, replicated)
    opt_state = jax.device_put(jax.jit(tx.init)(params), replicated)
    # One batch, made once: this measures the step, not the (numpy) data pipeline.
    batch = jax.device_put(task.train_data.batch(0, config.batch_size), batch_sharding)
    v = Variant(mode, step, params, opt_state, batch)
    try:
        v.flops = xla_flops(step, params, opt_state, batch, jnp.asarray(0, jnp.int32)) or None
    except Exception:  # cost analysis is best-effort on some backends
        v.flops = None
    v.run(2)  # compile and warm up
    return v, config, task


def bench_family(family: str, preset: str, dtype: str, batch_size: int | None, steps: int, repeats: int,
                 peak: float) -> dict:
    variants = {}
    for mode in ("dense", "masked", "ramp"):
        variants[mode], config, task = build(family, preset, mode, dtype, batch_size)
    times = {m: [] for m in variants}
    for _ in range(repeats):  # interleaved
        for m, v in variants.items():
            times[m].append(v.run(steps))
    med = {m: statistics.median(ts) for m, ts in times.items()}
    flops = variants["dense"].flops
    return {
        "family": family, "preset": preset, "dtype": dtype, "batch": config.batch_size,
        "every": config.schedule.every if config.schedule else train.mask_update_every(config.steps),
        "dense_ms": 1e3 * med["dense"], "masked_ms": 1e3 * med["masked"], "ramp_ms": 1e3 * med["ramp"],
        "masked_ratio": med["masked"] / med["dense"], "ramp_ratio": med["ramp"] / med["dense"],
        "xla_gflop": None if flops is None else flops / 1e9,
        "achieved": None if flops is None else flops / med["dense"],
        "peak_fraction": None if flops is None else flops / med["dense"] / peak,
    }


def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default="t5,vit")
    p.add_argument("--preset", default="toy", help="CPU size to measure (default toy)")
    p.add_argument("--steps", type=int, default=10, help="steps per timing (default 10)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats; the median is reported")
    p.add_argument("--full-batch", type=int, default=None,
                   help="batch size for the GPU full-size rows (default: the recipe's, capped at 256 for ViT)")
    p.add_argument("--no-full", action="store_true", help="skip the full-size rows even on a GPU")
    args = p.parse_args(argv)

    dev = jax.devices()[0]
    on_gpu = dev.platform == "gpu"
    peak_f32 = matmul_peak(jnp.float32, 4096 if on_gpu else 2048, 5)
    rows = [bench_family(f, args.preset, "float32", None, args.steps, args.repeats, peak_f32)
            for f in args.families.split(",")]
    full_rows, peak_bf16 = [], None
    if on_gpu and not args.no_full:
        peak_bf16 = matmul_peak(jnp.bfloat16, 8192, 10)
        for f in args.families.split(","):
            batch = args.full_batch or (256 if f == "vit" else None)
            full_rows.append(bench_family(f, "full", "bfloat16", batch, args.steps, args.repeats, peak_bf16))

    cmd = ".venv/bin/python bench/train_step.py" + (" " + shlex.join(argv if argv is not None else sys.argv[1:])
                                                     if (argv if argv is not None else sys.argv[1:]) else "")
    out = ["## Training step", "",
           f"Command: `{cmd}`  ",
           f"Device: {len(jax.devices())} x {dev.device_kind} ({dev.platform}), jax {jax.__version__}, "
           f"{platform.machine()} with {__import__('os').cpu_count()} CPU cores.", "",
           f"Step times are medians of {args.repeats} interleaved timings of {args.steps} steps (one batch reused; "
           "compile excluded). *masked*: S = 0.5 with a fixed mask (the masking every step costs); *GMP ramp*: the "
           "mask is also recomputed by magnitude every `every` steps, amortised. Target: masked / dense <= 1.10. "
           "FLOP/s: XLA's count of the compiled dense step's FLOPs over its time, against a "
           f"{'4096' if on_gpu else '2048'}^3 float32 matmul on the same device "
           f"({peak_f32 / 1e9:,.1f} GFLOP/s, the practical peak). XLA's count covers the whole step: forward, "
           "backward (embeddings and attention scores included) and the optimizer.", "",
           "| family | preset | dtype | batch | dense ms/step | masked ms/step | masked/dense | GMP ramp ms/step "
           "(every) | ramp/dense | XLA GFLOP/step | GFLOP/s | of matmul peak |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows + full_rows:
        out.append(f"| {r['family']} | {r['preset']} | {r['dtype']} | {r['batch']} | {r['dense_ms']:.2f} | "
                   f"{r['masked_ms']:.2f} | {r['masked_ratio']:.3f} | {r['ramp_ms']:.2f} ({r['every']}) | "
                   f"{r['ramp_ratio']:.3f} | {fmt(r['xla_gflop'], '.3f')} | "
                   f"{fmt(None if r['achieved'] is None else r['achieved'] / 1e9, ',.1f')} | "
                   f"{fmt(None if r['peak_fraction'] is None else 100 * r['peak_fraction'], '.1f')}% |")
    if full_rows:
        nominal = next((v for k, v in NOMINAL_BF16_PEAK.items() if k in dev.device_kind), None)
        out += ["", f"Full sizes in bfloat16 on {dev.device_kind}: measured 8192^3 bfloat16 matmul peak "
                    f"{peak_bf16 / 1e12:,.1f} TFLOP/s" + (f", nominal {nominal / 1e12:,.0f} TFLOP/s" if nominal else "")
                + ". MFU here = XLA-counted FLOPs of the dense step / time / peak:", ""]
        for r in full_rows:
            if r["achieved"] is None:
                out.append(f"- {r['family']} full, batch {r['batch']}: no FLOP count from XLA on this backend.")
                continue
            line = (f"- {r['family']} full, batch {r['batch']}: {r['achieved'] / 1e12:,.1f} TFLOP/s, "
                    f"{r['achieved'] / peak_bf16:.1%} of the measured matmul peak")
            if nominal:
                line += f", {r['achieved'] / nominal:.1%} of nominal"
            out.append(line + ".")
    elif not on_gpu:
        out += ["", "No GPU here (`jax.devices()[0].platform` is "
                    f"{dev.platform!r}): the full-size bfloat16 MFU rows need one; run this script there."]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
