"""App. B: the pruning ablations -- Table 5 (GMP schedule) and Table 6 (GMP vs AC/DC) -- as sweeps.

Both are small grids (`sweep.Grid`) run through the sweep store, so a built book keeps
their results (`results/<family>-<preset>-table5`, `...-table6`) like any other sweep:

    grid = table5_grid("t5", "toy")
    sweep.run_sweep(grid, "results/t5-toy-table5")
    df = table5(sweep.export("results/t5-toy-table5"))

Table 5 (paper: ViT-B/16, 900M images, S = 0.9375): seven (start, end, frequency)
variants of the cubic schedule at one high sparsity. The frequency is the paper's mask
update interval relative to its default of 100 steps; at a preset with short runs it is
the same ratio of that preset's default interval (`base_every`).

Table 6 (paper: T5 at 1.3M and 42M non-zeros, 250K steps = the shortest T5 runs): GMP
against AC/DC at S = 0.5, 0.75, 0.875. AC/DC alternates sparse and dense phases of 10K
steps inside the GMP pruning window (25%-75%) of a 250K-step run, i.e. phases of 4% of
training; the engine keeps that proportion at every run length
(`pruning.ACDC_PHASE_FRACTION`, `PruningConfig.phase_steps`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bigsparse_lib import paper
from bigsparse_lib.pruning import ACDC_PHASE_FRACTION, PruningConfig
from bigsparse_lib.schedule import GradualSchedule

PAPER_EVERY = 100  # the paper's default mask update interval (App. A); Table 5's frequencies are relative to it


@dataclass(frozen=True)
class Table5Spec:
    """One model, one length, one high sparsity; `base_every` stands for the paper's 100 steps."""

    nnz: int
    sparsity: float
    steps: int
    base_every: int


@dataclass(frozen=True)
class Table6Spec:
    """Sizes x sparsities at the family's shortest main-grid length, GMP and AC/DC each."""

    sizes: tuple[int, ...]
    sparsities: tuple[float, ...]
    steps: int


# toy: the main grid's smallest T5/ViT size; 200 steps with a base interval of 2, so that halving the
# update interval (Table 5's frequency 50) stays >= 1 step.
TABLE5_SPECS = {
    "full": Table5Spec(nnz=None, sparsity=0.9375, steps=900_000_000 // 4096, base_every=PAPER_EVERY),
    "toy": Table5Spec(nnz=6_000, sparsity=0.9375, steps=200, base_every=2),
    "smoke": Table5Spec(nnz=3_000, sparsity=0.75, steps=16, base_every=2),
}
TABLE6_SPECS = {
    "full": Table6Spec(sizes=(None, None), sparsities=(0.5, 0.75, 0.875), steps=250_000),
    "toy": Table6Spec(sizes=(6_000,), sparsities=(0.5, 0.75, 0.875), steps=100),
    "smoke": Table6Spec(sizes=(3_000,), sparsities=(0.5, 0.875), steps=8),
}


def _full_nnz(family: str, scale: float) -> int:
    """N of the base model (ViT-B/16, t5-base) times `scale`, in our exact count (`grids.to_exact`)."""
    from bigsparse_lib.sweep.grids import BASE_NNZ, to_exact

    return to_exact(family, BASE_NNZ[family] * scale)


def schedule_for(start: float, end: float, frequency: int, base_every: int) -> GradualSchedule:
    """The cubic schedule of one Table 5 row; `frequency` in the paper's steps (100 = default)."""
    every = max(1, int(round(base_every * frequency / PAPER_EVERY)))
    return GradualSchedule(start=float(start), end=float(end), power=3.0, every=every)


def table5_grid(family: str, preset: str, *, seed: int = 0):
    """Table 5's seven schedules (paper.TABLE5's rows, in order) as a sweep grid named "table5"."""
    from bigsparse_lib.sweep.grids import Grid
    from bigsparse_lib.train import TrainConfig

    spec = TABLE5_SPECS[preset]
    nnz = spec.nnz if spec.nnz is not None else _full_nnz(family, 1 - spec.sparsity)  # B/16 at S
    runs = tuple(TrainConfig(family=family, preset=preset, nnz=nnz, sparsity=spec.sparsity, steps=spec.steps,
                             seed=seed, method="gmp", schedule=schedule_for(s, e, f, spec.base_every))
                 for (s, e, f) in paper.TABLE5)
    return Grid(family, preset, "table5", runs)


def table6_grid(family: str, preset: str, *, seed: int = 0):
    """Table 6: GMP and AC/DC at each (size, S), the paper's pruning window; a grid named "table6"."""
    from bigsparse_lib.sweep.grids import Grid
    from bigsparse_lib.train import TrainConfig

    spec = TABLE6_SPECS[preset]
    # full: Table 6's 1.3M and 42M, i.e. 1/128 and 1/2 of t5-base's nominal N
    sizes = (_full_nnz(family, 1 / 128), _full_nnz(family, 1 / 2)) if preset == "full" else spec.sizes
    runs = tuple(TrainConfig(family=family, preset=preset, nnz=N, sparsity=S, steps=spec.steps, seed=seed,
                             method=method)
                 for N in sizes for S in spec.sparsities for method in ("gmp", "acdc"))
    # the phase proportion is part of what the results mean: it names the results' grid
    return Grid(family, preset, f"table6-acdc{ACDC_PHASE_FRACTION:g}", runs)


def acdc_phase_steps(steps: int) -> int:
    """AC/DC phase length the engine uses for a run of `steps`: 4% of training (10K of 250K, App. B)."""
    return PruningConfig(method="acdc").phase_steps(steps)


# ---- the tables from the sweeps' exports -----------------------------------------------------------------
def table5(results: str | Path) -> pd.DataFrame:
    """Table 5 from a table5 sweep's results: one row per schedule, the paper's accuracy beside our loss.

    Rows in the paper's order; `frequency` is in the paper's steps (our interval, scaled by
    PAPER_EVERY / base_every of the sweep's preset).
    """
    from bigsparse_lib import sweep

    runs = sweep.export(results)
    store = sweep.Store(results)
    base_every = TABLE5_SPECS[store.manifest()["preset"]].base_every
    rows = []
    for _, r in runs.iterrows():
        sched = store.config(r["run_id"])["schedule"]
        freq = int(round(sched["every"] * PAPER_EVERY / base_every))
        key = (float(sched["start"]), float(sched["end"]), freq)
        rows.append({"start": key[0], "end": key[1], "frequency": freq, "every (our steps)": int(sched["every"]),
                     "paper: accuracy (%)": paper.TABLE5.get(key, np.nan), "ours: loss": float(r["loss"]),
                     "_order": list(paper.TABLE5).index(key) if key in paper.TABLE5 else len(paper.TABLE5)})
    return pd.DataFrame(rows).sort_values("_order").drop(columns="_order").reset_index(drop=True)


def table6(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 6 from the export of a table6 sweep: one row per (size, S), GMP and AC/DC side by side.

    Our losses and perplexities exp(L), and the paper's perplexities for the size of the same
    rank (our smaller size beside its 1.3M, the larger beside its 42M; a single size, as at
    toy scale, beside its 1.3M). Beyond two sizes there is no paper column to match.
    """
    sizes = sorted(runs["nnz_target"].unique())
    paper_rows = list(paper.TABLE6)
    rows = []
    for (N, S), grp in runs.groupby(["nnz_target", "sparsity"]):
        loss = grp.set_index("method")["loss"]
        label = paper_rows[sizes.index(N)] if len(sizes) <= len(paper_rows) else None
        published = paper.TABLE6[label].get(S, (np.nan, np.nan)) if label else (np.nan, np.nan)
        rows.append({"N": int(N), "S": float(S), "paper size": label or "",
                     "paper: GMP ppl": published[0], "paper: AC/DC ppl": published[1],
                     "ours: GMP loss": float(loss.get("gmp", np.nan)), "ours: AC/DC loss": float(loss.get("acdc", np.nan)),
                     "ours: GMP ppl": float(np.exp(loss.get("gmp", np.nan))),
                     "ours: AC/DC ppl": float(np.exp(loss.get("acdc", np.nan)))})
    return pd.DataFrame(rows)
