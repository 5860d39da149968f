"""Benchmark: what the toy T5's shape costs per token, against the shape the toy grids use.

Run standalone (prints a Markdown section `## Toy T5 shapes` on stdout):

    .venv/bin/python bench/toy_shapes.py [--nnz 28000] [--steps 250]

Issue 11 asks for both toy main sweeps within 15 minutes on 2 cores; the engine runs the toy
steps at a tenth or so of the matmul peak because the toy widths make tiny matrix products
(`train_step`, `sweep`). So the remaining lever is the toy task's shape. This script trains
the same non-zero count N (S = 0.5, 2 seeds as 2 lanes of one program, `train.train_runs`)
under variants of `models.t5.BASES["toy"]`: fewer layers (a wider model at the same N) and
shorter rows. Each variant runs in its own process with its own empty compilation cache.
Per variant it prints the steady time per lane-step (from the difference of a 50- and a
`--steps`-step sweep), the time per input token, both as ratios to the current shape, and the
mean eval loss after `--steps` steps with the task's irreducible loss (shorter rows are a
different task, with a different floor: compare losses only within one row length).

It measures; it changes nothing. Adopting a new toy shape changes every toy T5 result and
needs the main sweep to show the law again (issue 11 §3). About 12 minutes on 2 cores;
`bench/run_all.py` runs it only when asked (`--only toy_shapes`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (label, num_layers, input_length, target_length); the first is the toy grids' shape
# (2+2 layers was the toy grids' shape until 2026-12-02; `models.t5.BASES["toy"]` says why it changed)
VARIANTS = (("current: 1+1 layers, rows 64 -> 16", 1, 64, 16),
            ("2+2 layers, rows 64 -> 16", 2, 64, 16),
            ("2+2 layers, rows 32 -> 8", 2, 32, 8),
            ("1+1 layers, rows 32 -> 8", 1, 32, 8))

CHILD = r"""
import dataclasses, json, shutil, sys, tempfile, time
sys.path.insert(0, {root!r})
import numpy as np
from bigsparse_lib import data, train
from bigsparse_lib.models import t5
t5.BASES["toy"] = dataclasses.replace(t5.BASES["toy"], num_layers={layers}, input_length={lin},
                                      target_length={ltg})
seeds = (0, 1)
walls, losses = [], None
for steps in (50, 50, {steps}):  # the first call compiles; the other two differ by their steps only
    d = tempfile.mkdtemp()
    cfgs = [train.TrainConfig(family="t5", preset="toy", nnz={nnz}, sparsity=0.5, steps=steps, seed=s,
                              checkpoint_every=100_000) for s in seeds]
    t0 = time.perf_counter()
    res = train.train_runs(cfgs, [f"{{d}}/{{s}}" for s in seeds], progress=False)
    walls.append(time.perf_counter() - t0)
    losses = [r["eval_loss"] for r in res]
    shutil.rmtree(d)
cfg = train.model_config(cfgs[0].resolved())
per = (walls[2] - walls[1]) / ({steps} - 50) / len(seeds)
batch = cfgs[0].resolved().batch_size
print(json.dumps(dict(d_model=cfg.d_model, lane_step_ms=per * 1e3, token_us=per / (batch * {lin}) * 1e6,
                      compile_s=walls[0] - walls[1], loss=float(np.mean(losses)),
                      irreducible=data.make("t5", cfg, seed=0).irreducible_loss)))
"""


def measure(layers: int, lin: int, ltg: int, nnz: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "BIGSPARSE_JAX_CACHE": cache}
        code = CHILD.format(root=str(ROOT), layers=layers, lin=lin, ltg=ltg, nnz=nnz, steps=steps)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-3000:])
        raise SystemExit(f"variant {layers} layers, rows {lin} -> {ltg} failed (exit {r.returncode})")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nnz", type=int, default=28_000, help="N, the non-zeros at S = 0.5 (a toy main size)")
    ap.add_argument("--steps", type=int, default=250, help="the longer of the two timed sweeps (> 50)")
    args = ap.parse_args()
    if args.steps <= 50:
        ap.error("--steps must be above 50")
    rows = [(label, measure(layers, lin, ltg, args.nnz, args.steps)) for label, layers, lin, ltg in VARIANTS]
    base = rows[0][1]
    print("## Toy T5 shapes\n")
    print(f"`.venv/bin/python bench/toy_shapes.py --nnz {args.nnz} --steps {args.steps}`: N = {args.nnz:,} at "
          f"S = 0.5, 2 seeds as 2 lanes of one program, batch 32, each shape in a fresh process with an empty "
          f"compilation cache. *speed-up*: the current shape's time over this one's, per step (what the grids "
          f"count) and per input token. Losses after {args.steps} steps (mean of the 2 seeds); shorter rows are "
          f"another task with its own irreducible loss.\n")
    print("| shape | d_model | ms per lane-step | speed-up per step | us per token | speed-up per token "
          "| compile (s) | eval loss | irreducible |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, m in rows:
        print(f"| {label} | {m['d_model']} | {m['lane_step_ms']:.1f} | {base['lane_step_ms'] / m['lane_step_ms']:.2f}x "
              f"| {m['token_us']:.2f} | {base['token_us'] / m['token_us']:.2f}x | {m['compile_s']:.0f} | "
              f"{m['loss']:.3f} | {m['irreducible']:.3f} |")
    step = max(rows[1:], key=lambda r: base["lane_step_ms"] / r[1]["lane_step_ms"])
    token = max(rows[1:], key=lambda r: base["token_us"] / r[1]["token_us"])
    print(f"\nPer step, the cheapest shape here is *{step[0]}*: {base['lane_step_ms'] / step[1]['lane_step_ms']:.2f}x "
          f"the current one, at an eval loss of {step[1]['loss']:.3f} after {args.steps} steps against "
          f"{base['loss']:.3f}. Per token it is *{token[0]}*: {base['token_us'] / token[1]['token_us']:.2f}x. "
          f"This measures the T5 half of issue 11's 15 minutes only. Any change of shape re-runs every toy T5 "
          f"result and must show the law again.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
