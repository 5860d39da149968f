"""Benchmark: groups trained one at a time against two side by side (`bigsparse sweep --workers 2`).

Run standalone (prints a Markdown section `## Groups side by side` on stdout):

    .venv/bin/python bench/side_by_side.py [--family t5] [--widths 2]

The runs of the toy main grid on its `--widths` smallest dense widths are swept twice into
fresh results directories, each in its own process with its own empty JAX compilation cache
(compile time counts): `workers=1`, then `workers=2` (threads of one process, costliest group
first, `sweep.executors.LocalExecutor`). It prints both wall times, their ratio, and checks
that both sweeps recorded the same losses. About 15 minutes on 2 cores; `bench/run_all.py`
runs it only when asked (`--only side_by_side`).
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

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from bigsparse_lib import sweep
from bigsparse_lib.sweep.grids import Grid
g = sweep.make_grid({family!r}, "toy", "main")
width = lambda c: round(c.nnz / (1 - c.sparsity))
keep = sorted({{width(c) for c in g}})[:{widths}]
sub = Grid(g.family, g.preset, g.name, tuple(c for c in g if width(c) in keep))
t0 = time.perf_counter()
s = sweep.run_sweep(sub, {out!r}, workers={workers}, progress=False)
wall = time.perf_counter() - t0
loss = sweep.export({out!r}).set_index("run_id")["loss"].sort_index()
print(json.dumps(dict(wall=wall, runs=len(sub), widths=keep, run_steps=sum(c.steps for c in sub),
                      complete=s.complete, loss=loss.to_dict())))
"""


def sweep_once(family: str, widths: int, workers: int, tmp: Path) -> dict:
    env = {**os.environ, "BIGSPARSE_JAX_CACHE": str(tmp / f"cache-{workers}")}
    code = CHILD.format(root=str(ROOT), family=family, widths=widths, workers=workers, out=str(tmp / f"runs-{workers}"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-4000:])
        raise SystemExit(f"the workers={workers} sweep failed (exit {r.returncode})")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--family", default="t5", choices=("t5", "vit"))
    ap.add_argument("--widths", type=int, default=2, help="the toy main grid's smallest dense widths to sweep")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bigsparse-bench-sbs-") as tmp:
        one = sweep_once(args.family, args.widths, 1, Path(tmp))
        two = sweep_once(args.family, args.widths, 2, Path(tmp))
    same = one["loss"] == two["loss"]
    print("## Groups side by side\n")
    print(f"`.venv/bin/python bench/side_by_side.py --family {args.family} --widths {args.widths}`: the "
          f"{args.family.upper()} toy main grid's runs on dense widths {', '.join(f'{w:,}' for w in one['widths'])} "
          f"({one['runs']} runs, {one['run_steps']:,} run-steps), each sweep from an empty compilation cache.\n")
    print("| groups at a time | wall (s) | run-steps/s | ratio |")
    print("|---|---|---|---|")
    for k, r in ((1, one), (2, two)):
        print(f"| {k} | {r['wall']:.1f} | {r['run_steps'] / r['wall']:.1f} | {one['wall'] / r['wall']:.2f}x |")
    print(f"\nSame losses, run for run: {'yes' if same else 'NO'}. The default (`sweep.executors.GROUP_WORKERS`) follows "
          "this ratio: one group at a time unless two are clearly faster.\n")
    return 0 if same and one["complete"] and two["complete"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
