"""Benchmark: one compiled program for every n of an n:m group size, and for GMP and AC/DC.

Run standalone (prints a Markdown section `## Shared programs` on stdout):

    .venv/bin/python bench/shared_programs.py [--nm-widths 2]

The engine trains runs that share a `train.group_signature` as one program. The n of an n:m
pattern and a run's AC/DC flag are data of that program (`LaneInputs.n`, `pruning.Clock.acdc`),
so 2:4 and 1:4 runs on one dense width are one group (§4.1), and Table 6's AC/DC runs, which
train after its GMP runs, find their programs in the compilation cache (App. B).

Baseline, in the same run: the grouping before that change, one program per pattern and per
method. Emulated: `group_signature` with the pattern and the method added back, AC/DC runs
alone, and the AC/DC sweep given its own empty compilation cache (before, an AC/DC run alone
compiled a program of its own, which no GMP run could share). Each sweep is a fresh process
with an empty cache, so compile time counts, as on a fresh clone. Two subsets of the toy T5
grids, about 10 minutes in all on 2 cores:

- n:m: the runs of the toy nm grid on the `--nm-widths` smallest dense widths that both a
  2:4 and a 1:4 run train on;
- Table 6: GMP, then AC/DC, at (6K, 0.75), (6K, 0.875) and (24K, 0.5), 800 steps each.

It also counts the programs of the whole toy grids (`sweep.group.plan`) under both groupings.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import jax
jax.config.update("jax_log_compiles", True)
from bigsparse_lib import ablations, sweep, train
from bigsparse_lib.sweep.grids import Grid
if {split!r}:
    sys.path.insert(0, {bench!r})
    from shared_programs import old_signature
    shared = train.group_signature
    train.group_signature = lambda c: old_signature(c, shared)
width = lambda c: round(c.nnz / (1 - c.sparsity))
if {part!r} == "nm":
    g = sweep.make_grid("t5", "toy", "nm")
    both = sorted({{width(c) for c in g if c.pattern == "2:4"}} & {{width(c) for c in g if c.pattern == "1:4"}})
    keep = both[:{nm_widths}]
    grid = Grid(g.family, g.preset, g.name, tuple(c for c in g if width(c) in keep and c.pattern in ("2:4", "1:4")))
else:
    g = ablations.table6_grid("t5", "toy", acdc_phase=152)
    pick = {{(6000, 0.75), (6000, 0.875), (24000, 0.5)}}
    grid = Grid(g.family, g.preset, g.name, tuple(c for c in g if (c.nnz, c.sparsity) in pick and c.seed == 0
                                                   and c.method == {part!r}))
t0 = time.perf_counter()
s = sweep.run_sweep(grid, {out!r}, progress=False)
wall = time.perf_counter() - t0
loss = sweep.export({out!r}).set_index("run_id")["loss"].sort_index()
print(json.dumps(dict(wall=wall, runs=len(grid), widths=sorted({{width(c) for c in grid}}),
                      run_steps=sum(c.steps for c in grid), complete=s.complete, loss=loss.to_dict())))
"""
COMPILED = re.compile(r"Finished XLA compilation of jit\((\w+)\) in ([0-9.]+) sec")
HIT = re.compile(r"Persistent compilation cache hit for 'jit_lane_block'")


def old_signature(c, signature):
    """The grouping before cd8b456, emulated: `signature` (train.group_signature) with the n:m
    pattern added back, and AC/DC runs alone (None)."""
    r = c.resolved()
    if r.method == "acdc":
        return None
    s = signature(c)
    return None if s is None else s + "|" + r.pattern


def sweep_once(part: str, split: bool, cache: Path, out: Path, nm_widths: int) -> dict:
    env = {**os.environ, "BIGSPARSE_JAX_CACHE": str(cache)}
    code = CHILD.format(root=str(ROOT), bench=str(Path(__file__).resolve().parent), part=part, split=split,
                        out=str(out), nm_widths=nm_widths)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-4000:])
        raise SystemExit(f"the {part} sweep ({'split' if split else 'shared'}) failed (exit {r.returncode})")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    compiled = COMPILED.findall(r.stderr)
    res["compile"] = sum(float(s) for _, s in compiled)
    # training programs: those XLA compiled, and those read back from the persistent cache (JAX logs
    # both as "Finished XLA compilation"; with jax_log_compiles it also logs each cache hit)
    res["hits"] = len(HIT.findall(r.stderr))
    res["blocks"] = sum(name == "lane_block" for name, _ in compiled) - res["hits"]
    return res


def plan_counts() -> dict:
    """Programs (groups) of the whole toy T5 nm and Table 6 grids, shared and split."""
    sys.path.insert(0, str(ROOT))
    from bigsparse_lib import ablations, sweep, train
    from bigsparse_lib.sweep import group

    split = lambda c: old_signature(c, train.group_signature)  # noqa: E731
    out = {}
    for name, runs in (("nm", list(sweep.make_grid("t5", "toy", "nm"))),
                       ("table6", list(ablations.table6_grid("t5", "toy", acdc_phase=152)))):
        shared = len(group.plan(runs))
        sigs = [split(c) for c in runs]
        out[name] = (len(runs), shared, len(set(s for s in sigs if s is not None)) + sigs.count(None))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nm-widths", type=int, default=2,
                    help="how many of the dense widths shared by 2:4 and 1:4 runs to sweep (smallest first)")
    args = ap.parse_args()
    counts = plan_counts()
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="bigsparse-bench-shared-") as tmp:
        t = Path(tmp)
        for mode, split in (("split", True), ("shared", False)):
            res[mode, "nm"] = sweep_once("nm", split, t / f"cache-{mode}-nm", t / f"runs-{mode}-nm", args.nm_widths)
            res[mode, "gmp"] = sweep_once("gmp", split, t / f"cache-{mode}-t6", t / f"runs-{mode}-t6", 0)
            # split: AC/DC's own cache, as before (its programs were its own); shared: the GMP sweep's cache
            acdc_cache = t / f"cache-{mode}-{'acdc' if split else 't6'}"
            res[mode, "acdc"] = sweep_once("acdc", split, acdc_cache, t / f"runs-{mode}-t6", 0)
    ok = all(r["complete"] for r in res.values())
    diffs = []
    for part in ("nm", "gmp", "acdc"):
        a, b = res["split", part]["loss"], res["shared", part]["loss"]
        ok &= a.keys() == b.keys()
        diffs += [abs(b[k] - v) / abs(v) for k, v in a.items() if k in b]
    print("## Shared programs\n")
    print(f"`.venv/bin/python bench/shared_programs.py --nm-widths {args.nm_widths}`: toy T5 runs swept with "
          "one program per n:m group size and for GMP and AC/DC alike (*shared*, the engine's grouping) and with "
          "one program per pattern and per method (*split*, the grouping before; emulated, see the script), each "
          "sweep a fresh process with an empty compilation cache (AC/DC's sweep, *shared*: the cache its GMP sweep "
          "left).\n")
    print("| sweep | runs (dense widths) | run-steps | split: wall / compile (s), programs | "
          "shared: wall / compile (s), programs | wall ratio |")
    print("|---|---|---:|---:|---:|---:|")
    label = {"nm": "§4.1: 2:4 and 1:4", "gmp": "Table 6: GMP", "acdc": "Table 6: AC/DC, after GMP"}
    tot = {"split": 0.0, "shared": 0.0}
    for part in ("nm", "gmp", "acdc"):
        a, b = res["split", part], res["shared", part]
        tot["split"] += a["wall"]
        tot["shared"] += b["wall"]
        print(f"| {label[part]} | {a['runs']} ({', '.join(f'{w:,}' for w in a['widths'])}) | {a['run_steps']:,} | "
              f"{a['wall']:.1f} / {a['compile']:.1f}, {a['blocks']} + {a['hits']} | {b['wall']:.1f} / "
              f"{b['compile']:.1f}, {b['blocks']} + {b['hits']} | {a['wall'] / b['wall']:.2f}x |")
    print(f"| all three | | | {tot['split']:.1f} | {tot['shared']:.1f} | {tot['split'] / tot['shared']:.2f}x |")
    print(f"\n*programs*: training programs (`lane_block`) XLA compiled + read from the persistent cache "
          "(`jax_log_compiles`); *compile*: XLA's seconds for every program, cache reads included. "
          f"Largest relative difference between the two groupings' eval losses: {max(diffs):.1e} "
          "(runs grouped differently sum in another order: float32 rounding, which training amplifies). "
          "*split* runs today's code with the old grouping: a run alone now also takes its n and its AC/DC flag "
          "as data, so a lone run can find another pattern's or method's lone program in the cache (a cache "
          "read under *split*), which the engine before could not. The baseline is, if anything, faster than "
          "the engine before.\n")
    print("The whole toy T5 grids (`sweep.group.plan`), programs to compile:\n")
    print("| grid | runs | split | shared |")
    print("|---|---:|---:|---:|")
    for name, (n, shared, split) in counts.items():
        note = (" (the chapter trains GMP first: AC/DC's 6 runs then find their program in the cache on the widths "
                "where their group has as many lanes as GMP's, 4 of 5)") if name == "table6" else ""
        print(f"| {name} | {n} | {split} | {shared}{note} |")
    print()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
