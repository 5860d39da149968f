"""Benchmark of `bigsparse_lib.fit` on the released T5 data: prints a Markdown section (`## Fitting`).

Measured in the same run (ratios, no asserts):
- starts per second of our vectorised fit vs the authors' procedure (their notebook's scipy
  BFGS loop over random starts, numerical gradients, default tolerances), same data;
- a 1000-start fit through the CLI, end to end (subprocess: Python + JAX import, compile, fit), with an
  empty compilation cache and again with the cache the first run filled;
- the certified grid fit (`vpfit`, the CLI default) through the CLI, end to end, as a ratio to the above;
- a bootstrap of 1000 resamples.
Run: `.venv/bin/python bench/fit.py`.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.optimize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bigsparse_lib import fit as F  # noqa: E402
from bigsparse_lib import paper  # noqa: E402

AUTHOR_STARTS = 25  # as in the notebook
REPEATS = 3


def authors_procedure(df, starts: int, seed: int = 0):
    """The notebook's fit (jaxpruner sparsity-scaling.ipynb), rewritten compactly: N in 1e6, D in 1e9."""
    x = np.stack((df.sparsity.to_numpy(), df.nnz.to_numpy() / 1e6, df.data.to_numpy() / 1e9))
    y = df.loss.to_numpy()

    def law(params):
        S, N, D = x
        a, b, c, d, e, f, g = params
        return (a * (1 / (1 - S)) ** -b + c) * N**-d + e * D**-f + g

    def loss(params, delta=1e-3):
        r = np.abs(np.log(law(params)) - np.log(y))
        out = r > delta
        return (np.sum(delta * (r[out] - 0.5 * delta)) + np.sum(0.5 * r[~out] ** 2)) / y.size

    rng = np.random.RandomState(seed)
    best = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(starts):
            res = scipy.optimize.minimize(loss, rng.uniform(size=7))
            if res.success:
                best = min(best, res.fun)
    return best


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> int:
    print("## Fitting\n")
    print("Command: `.venv/bin/python bench/fit.py` (data: released t5-data.csv, 48 points; "
          "Huber delta 1e-3 on log L)\n")
    if not paper.have_released("t5"):
        print(f"Skipped: released t5 data not found (set {paper.ENV_VAR}).")
        return 0
    df = paper.load_released("t5")
    # an empty compilation cache for this process: "first call (incl. compile)" compiles
    os.environ["BIGSPARSE_JAX_CACHE"] = tempfile.mkdtemp(prefix="bigsparse-bench-fit-")
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start\n")

    cold, t_cold = timed(lambda: F.fit(df, starts=1000))  # includes compilation
    # best of REPEATS for both, interleaved, so that a noisy shared machine hurts both alike
    t_theirs, t_ours = [], []
    for _ in range(REPEATS):
        theirs_best, t = timed(lambda: authors_procedure(df, AUTHOR_STARTS))
        t_theirs.append(t)
        ours, t = timed(lambda: F.fit(df, starts=1000))  # compiled
        t_ours.append(t)
    t_theirs, t_ours = min(t_theirs), min(t_ours)
    theirs_rate = AUTHOR_STARTS / t_theirs
    ours_rate = 1000 / t_ours

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "t5.csv"
        df.to_csv(csv, index=False)
        # the package as this checkout has it (python -m, so a worktree without its own .venv works too)
        base = [sys.executable, "-m", "bigsparse_lib", "fit", str(csv), "--json"]
        # each end-to-end run gets an empty compilation cache (a first fit on a fresh machine) ...
        cold_env = lambda: {**os.environ, "PYTHONPATH": str(ROOT), "BIGSPARSE_JAX_CACHE": tempfile.mkdtemp(dir=tmp)}
        run = lambda extra, env: subprocess.run(base + extra, capture_output=True, text=True, env=env)
        t_cli, t_grid = [], []
        for _ in range(2):  # best of 2, interleaved: the machine is shared
            last = cold_env()
            proc, t = timed(lambda: run(["--method", "starts", "--starts", "1000"], last))
            t_cli.append(t)
            gproc, t = timed(lambda: run(["--method", "grid"], cold_env()))
            t_grid.append(t)
        t_cli, t_grid = min(t_cli), min(t_grid)
        # ... and once more with the cache the last 1000-start run filled (a second fit of the same table)
        wproc, t_warm = timed(lambda: run(["--method", "starts", "--starts", "1000"], last))
        warm_ok = wproc.returncode == 0 and wproc.stdout == proc.stdout
        cli_ok = proc.returncode == 0
        grid_ok = gproc.returncode == 0
        grid_out = json.loads(gproc.stdout) if grid_ok else {}

    boot, t_boot = timed(lambda: F.bootstrap(ours, 1000))

    rows = [
        (f"authors' procedure (scipy BFGS loop, 25 starts; best of {REPEATS})", f"{theirs_rate:.1f} starts/s",
         f"best objective {theirs_best:.3g}", ""),
        (f"ours, 1000 starts, compiled (best of {REPEATS})", f"{ours_rate:.0f} starts/s ({t_ours:.2f} s)",
         f"best {ours.objective:.3g}; {ours.converged_to_best}/1000 at best",
         f"{ours_rate / theirs_rate:.1f}x (target >= 50x)"),
        ("ours, 1000 starts, first call (incl. compile)", f"{1000 / t_cold:.0f} starts/s ({t_cold:.2f} s)", "",
         f"{1000 / t_cold / theirs_rate:.1f}x"),
        ("CLI `bigsparse fit t5.csv --method starts --json` (1000 starts), end to end, best of 2", f"{t_cli:.2f} s",
         "ok" if cli_ok else "FAILED", f"target <= 10 s: {'met' if t_cli <= 10 else 'missed'}"),
        ("the same, a second time: warm compilation cache (`compilecache`)", f"{t_warm:.2f} s",
         "same output" if warm_ok else "FAILED or different output", f"{t_cli / t_warm:.2f}x faster than cold"),
        ("CLI `bigsparse fit t5.csv --json` (certified grid fit, the default), end to end, best of 2",
         f"{t_grid:.2f} s",
         (f"best {grid_out['objective']:.3g}; grid {'x'.join(map(str, grid_out['grid']['shape']))}, "
          f"{grid_out['grid']['local_minima']} grid minima, {len(grid_out['optima'])} distinct optima")
         if grid_ok else "FAILED",
         f"{t_grid / t_cli:.2f}x the 1000-start CLI (target <= 3x: {'met' if t_grid <= 3 * t_cli else 'missed'})"),
        ("bootstrap, 1000 resamples x 4 starts (incl. compile)", f"{t_boot:.2f} s",
         f"{np.isfinite(boot.objectives).sum()} finite refits",
         f"target <= 60 s: {'met' if t_boot <= 60 else 'missed'}"),
    ]
    print("| measurement | speed | result | vs target |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print("\nThe authors' loop stops early (scipy's default gradient tolerance 1e-5 on an objective "
          "of ~1e-5), so its starts are cheap but mostly unconverged: compare the best objectives too. "
          "The machine is shared; wall times are noisy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
