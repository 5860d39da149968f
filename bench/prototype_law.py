"""Prototype of the toy sweeps on the new engine's lines (issue 11): one vmapped program per
(dense width, length) trains every (S, seed) run of that width, `lax.scan` over the steps,
batches built on the device (`stream.device_batch_fn`). Writes one JSON line per run, then
`--analyse` fits eq. 3 and prints the figures of issue 11 section 3.

    python bench/prototype_law.py --family vit --widths 32 64 --steps 200 400 --out /tmp/v.jsonl
    python bench/prototype_law.py --analyse /tmp/v.jsonl
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time

import numpy as np


def train_width(family, preset, width, steps, sparsities, seeds, batch, lr, spec=None, eval_batches=8,
                head_bias=None):
    import jax
    import jax.numpy as jnp
    import optax

    from bigsparse_lib import data, models, optim, pruning, train

    fam = models.get_family(family)
    base = fam.BASES[preset]
    if head_bias is not None:
        base = dataclasses.replace(base, head_bias_init=head_bias)
    cfg = fam.with_width(base, width)
    stream = data.make(family, base, seed=0, source=spec or "synthetic")
    batch_fn = stream.device_batch_fn(batch)
    runs = [(S, s) for S in sparsities for s in seeds]
    R = len(runs)
    params_shape = jax.eval_shape(lambda k: fam.init(cfg, k), jax.random.key(0))
    target_def = jax.tree_util.tree_structure(params_shape)
    sizes = [int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params_shape)]
    flat_S = np.array([[float(x) for x in jax.tree_util.tree_leaves(fam.target_sparsities(cfg, S))] for S, _ in runs])
    cols = np.flatnonzero(flat_S.max(axis=0) > 0)
    S_in = jnp.asarray(flat_S[:, cols], jnp.float32)
    k_in = jnp.asarray([[pruning.keep_count(S, sizes[j]) if S > 0 else sizes[j] for j, S in zip(cols, row[cols])]
                        for row in flat_S], jnp.int32)
    inner = optim.for_family(family, steps, preset, learning_rate=lr)
    pcfg = pruning.PruningConfig(method="gmp", schedule=train.default_schedule(steps, False))

    def tx_for(S_row, k_row):
        S_l, k_l = [0.0] * len(sizes), list(sizes)
        for n, j in enumerate(cols):
            S_l[j], k_l[j] = S_row[n], k_row[n]
        return pruning.sparsify_leaves(inner, target_def, S_l, k_l, steps, pcfg)

    loss_fn = lambda p, b: fam.loss_fn(p, b, cfg)  # noqa: E731
    seeds_arr = jnp.asarray([s for _, s in runs], jnp.int32)

    def init_one(seed, S_row, k_row):
        p = fam.init(cfg, jax.random.fold_in(jax.random.key(seed), 0))
        return p, tx_for(S_row, k_row).init(p)

    def one(p, o, b, S_row, k_row):
        loss, g = jax.value_and_grad(loss_fn)(p, b)
        u, o = tx_for(S_row, k_row).update(g, o, p)
        return optax.apply_updates(p, u), o, loss

    def body(carry, t):
        p, o = carry
        b = jax.vmap(batch_fn, in_axes=(0, None, None))(seeds_arr, jnp.int32(0), t)
        p, o, loss = jax.vmap(one)(p, o, b, S_in, k_in)
        return (p, o), loss

    def run_all():
        p, o = jax.vmap(init_one)(seeds_arr, S_in, k_in)
        (p, o), losses = jax.lax.scan(body, (p, o), jnp.arange(steps, dtype=jnp.int32))

        def ev(t):
            b = jax.vmap(batch_fn, in_axes=(0, None, None))(seeds_arr, jnp.int32(1), t)
            return jax.vmap(loss_fn)(p, b)
        evals = jax.lax.map(ev, jnp.arange(eval_batches, dtype=jnp.int32))
        nnz = jax.vmap(lambda q: sum(jnp.count_nonzero(x) for x, f in zip(jax.tree.leaves(q),
                                      jax.tree.leaves(fam.sparsifiable(params_shape))) if f))(p)
        return losses, evals.mean(axis=0), nnz

    t0 = time.time()
    compiled = jax.jit(run_all).lower().compile()
    t_compile = time.time() - t0
    try:
        flops = float(compiled.cost_analysis()["flops"])
    except Exception:  # noqa: BLE001
        flops = float("nan")
    t0 = time.time()
    losses, evals, nnz = jax.block_until_ready(compiled())
    t_run = time.time() - t0
    losses, evals, nnz = np.asarray(losses), np.asarray(evals), np.asarray(nnz)
    total_w = sum(sizes)
    dense = fam.dense_count(cfg)
    out = []
    for r, (S, s) in enumerate(runs):
        tail = max(1, steps // 10)
        out.append(dict(family=family, width=width, sparsity=S, seed=s, steps=steps, batch=batch, lr=lr,
                        nnz=int(nnz[r]), dense=dense, params=total_w,
                        data=steps * batch * stream.units_per_example, loss=float(evals[r]),
                        train_loss=float(losses[-tail:, r].mean()),
                        curve=[float(x) for x in losses[:: max(1, steps // 20), r]],
                        irreducible=float(stream.irreducible_loss),
                        compile_s=t_compile, run_s=t_run, xla_flops=flops, runs_in_program=R))
    # XLA counts a scan's body once: the step's FLOPs (all R runs) times the steps
    print(f"{family} w={width} steps={steps} R={R}: compile {t_compile:.1f}s run {t_run:.1f}s "
          f"{flops * steps / max(t_run, 1e-9) / 1e9:.1f} GFLOP/s (XLA body count {flops:.3g}/step); "
          f"eval {', '.join(f'{x:.3f}' for x in evals)}", flush=True)
    return out


def grid_flops(family: str, preset: str = "toy", batch: int = 128) -> float:
    """Training FLOPs of the toy main grid (`sweep.grids.MAIN`): 6 x weights x tokens per
    example, summed over runs; a sparse run costs its DENSE width (CPU). ViT: all weights x
    patches; T5: encoder x input tokens + (decoder + embeddings) x target tokens."""
    import jax

    from bigsparse_lib import models
    from bigsparse_lib.sweep import grids

    fam = models.get_family(family)
    total = 0.0
    for c in grids.make_grid(family, preset, "main"):
        cfg = models.config_for_nnz(family, preset, c.nnz, c.sparsity)
        if family == "vit":
            shapes = jax.eval_shape(lambda k: fam.init(cfg, k), jax.random.key(0))
            per_ex = 6 * sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) * cfg.num_patches
        else:
            d = cfg.d_model
            enc = cfg.num_layers * (4 * d * d + 3 * d * cfg.d_ff)
            dec = cfg.num_layers * (8 * d * d + 3 * d * cfg.d_ff)
            per_ex = 6 * (enc * cfg.input_length + (dec + cfg.vocab_size * d) * cfg.target_length)
        total += per_ex * batch * c.steps
    return total


def analyse(path, held_out=True, boot=200):
    import pandas as pd

    from bigsparse_lib import fit as F
    from bigsparse_lib import law as LAW

    df = pd.DataFrame([json.loads(x) for x in open(path)])
    irr = df.irreducible.iloc[0]
    print(f"{len(df)} runs; irreducible {irr:.4f}; total train {df.run_s.sum():.0f}s compile {df.compile_s.sum():.0f}s "
          f"(per program; programs {df.groupby(['width', 'steps']).ngroups}); XLA FLOPs {df.groupby(['width', 'steps']).xla_flops.first().sum():.3g}")
    m = df.groupby(["sparsity", "nnz", "data", "width", "steps"], as_index=False).loss.mean()
    # monotone: along N for fixed (S, D); along D for fixed (S, N)
    okN = totN = okD = totD = 0
    for (S, D), g in m.groupby(["sparsity", "data"]):
        l = g.sort_values("nnz").loss.values
        okN += int((np.diff(l) < 0).sum()); totN += len(l) - 1
    for (S, w), g in m.groupby(["sparsity", "width"]):
        l = g.sort_values("data").loss.values
        okD += int((np.diff(l) < 0).sum()); totD += len(l) - 1
    print(f"monotone in N: {okN}/{totN}; in D: {okD}/{totD}; total {(okN + okD) / max(1, totN + totD):.1%}")
    table = m.rename(columns={})
    r = F.fit(table)
    pred = LAW.predict(r.law, table.sparsity.values, table.nnz.values, table.data.values)
    rel = np.abs(pred / table.loss.values - 1)
    print(f"fit: {r.law}; mean |rel err| {rel.mean():.2%} max {rel.max():.2%}; c = {r.law.c:.4f} vs irreducible {irr:.4f} "
          f"({r.law.c / irr - 1:+.1%})")
    g = {S: float(LAW.gain(r.law, S)) for S in (0.5, 0.75, 0.875)}
    print("gain(S):", {k: round(v, 4) for k, v in g.items()},
          "rising" if g[0.5] < g[0.75] < g[0.875] else "NOT rising",
          "concave" if (g[0.75] - g[0.5]) / 0.25 > (g[0.875] - g[0.75]) / 0.125 else "NOT concave (per unit S)")
    if held_out:
        wmax = m.width.max()
        tr = m[m.width < wmax]
        te = m[m.width == wmax]
        r2 = F.fit(tr)
        p2 = LAW.predict(r2.law, te.sparsity.values, te.nnz.values, te.data.values)
        print(f"held-out largest size: mean |rel err| {np.mean(np.abs(p2 / te.loss.values - 1)):.2%}")
    longest = m[m.steps == m.steps.max()]
    ok = all(longest[(longest.sparsity == 0.5) & (longest.width == w)].loss.values[0]
             < longest[(longest.sparsity == 0.0) & (longest.width == w)].loss.values[0]
             for w in sorted(longest.width.unique()))
    print(f"longest runs: L(S=.5, width w) < L(S=0, width w) at every width: {ok}")
    for S in (0.0, 0.5):
        for w in sorted(longest.width.unique()):
            pass
    if boot:
        b = F.bootstrap(r, boot)
        s = b.samples(lambda law: LAW.gain(law, 0.5))
        lo, hi = F.percentile_interval(s)
        print(f"bootstrap gain(0.5) 95% interval [{lo:.4f}, {hi:.4f}]")
    seeds = df[df.seed != df.seed.min()]
    if len(seeds):
        spread = df.groupby(["sparsity", "width", "steps"]).loss.agg(lambda x: x.max() - x.min())
        spread = spread[df.groupby(["sparsity", "width", "steps"]).size() > 1]
        widths = sorted(m.width.unique())
        gaps = []
        for (S, st), gg in m.groupby(["sparsity", "steps"]):
            l = gg.sort_values("width").loss.values
            gaps += list(-np.diff(l))
        print(f"seed spread: max {spread.max():.4f} mean {spread.mean():.4f}; adjacent-size gap: min {min(gaps):.4f} "
              f"median {np.median(gaps):.4f}; ratio max spread / min gap {spread.max() / min(gaps):.2f}")
    print(m.pivot_table(index=["steps", "sparsity"], columns="width", values="loss").round(4).to_string())


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", default="vit")
    ap.add_argument("--preset", default="toy")
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--steps", type=int, nargs="+", default=[200])
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.5, 0.75, 0.875])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--seeds-at", type=int, nargs="*", default=[], help="widths that get --seeds; others seed 0")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--head-bias", type=float, default=None)
    ap.add_argument("--spec", default=None, help="JSON of spec field overrides")
    ap.add_argument("--out", default="/tmp/proto.jsonl")
    ap.add_argument("--analyse", default=None)
    ap.add_argument("--budget", action="store_true", help="print the toy main grid's training FLOPs")
    ap.add_argument("--boot", type=int, default=200)
    a = ap.parse_args(argv)
    if a.analyse:
        return analyse(a.analyse, boot=a.boot)
    if a.budget:
        print(f"{a.family} {a.preset} main grid at batch {a.batch}: {grid_flops(a.family, a.preset, a.batch):.3g} FLOPs")
        return None
    from bigsparse_lib.data import toy

    spec = None
    if a.spec:
        specs = toy.LANGUAGE_SPECS if a.family == "t5" else toy.IMAGE_SPECS
        over = json.loads(a.spec)
        if "amplitude" in over:
            over["amplitude"] = tuple(over["amplitude"])
        spec = dataclasses.replace(specs[a.preset], **over)
    with open(a.out, "a") as f:
        for steps in a.steps:
            for w in a.widths:
                seeds = a.seeds if (not a.seeds_at or w in a.seeds_at) else [a.seeds[0]]
                for row in train_width(a.family, a.preset, w, steps, a.sparsities, seeds, a.batch, a.lr, spec,
                                       head_bias=a.head_bias):
                    row["spec"] = a.spec
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
