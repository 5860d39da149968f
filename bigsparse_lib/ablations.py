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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bigsparse_lib import paper
from bigsparse_lib.errors import InputError
from bigsparse_lib.evidence import status
from bigsparse_lib.pruning import ACDC_PHASE_FRACTION, PruningConfig
from bigsparse_lib.schedule import GradualSchedule

PAPER_EVERY = 100  # the paper's default mask update interval (App. A); Table 5's frequencies are relative to it


@dataclass(frozen=True)
class Table5Spec:
    """One model, one length, one high sparsity; `base_every` stands for the paper's 100 steps.

    `seeds`: the default schedule is also run with seeds 1 .. seeds-1, so that the spread of the
    seven schedules can be set against the seed noise at the same point (`schedule_ablation`).
    """

    nnz: int
    sparsity: float
    steps: int
    base_every: int
    seeds: int = 1


@dataclass(frozen=True)
class Table6Spec:
    """Sizes x sparsities, GMP and AC/DC each (AC/DC phases: 4% of the run, `acdc_phase_steps`)."""

    sizes: tuple[int, ...]
    sparsities: tuple[float, ...]
    steps: int
    seeds: int = 1  # GMP at the smaller size and S = 0.5 with seeds 1 .. seeds-1: the noise Table 6 is read against


# toy: the highest toy sparsity (0.875); 800 steps with a base interval of 4 (Table 5's frequency 50 -> 2 steps,
# 200 -> 8), i.e. 100 mask updates in the default window as in the paper's runs of ~2K windows of 100 steps;
# 3 seeds of the default schedule for the noise.
TABLE5_SPECS = {
    "full": Table5Spec(nnz=None, sparsity=0.9375, steps=900_000_000 // 4096, base_every=PAPER_EVERY),
    "toy": Table5Spec(nnz=6_000, sparsity=0.875, steps=800, base_every=4, seeds=3),
    "smoke": Table5Spec(nnz=3_000, sparsity=0.75, steps=16, base_every=2, seeds=2),
}
# toy: two sizes 4x apart, 800 steps, so that AC/DC's phases (4% of the run) last 32 steps, 8x the 4 of the
# earlier 100-step runs; the chapter measures how many steps a pruned weight needs to regrow past the mask's
# threshold (`regrow_from_params`, off the GMP runs) and gives AC/DC phases of max(4%, regrow) steps
# (`acdc_phase`, `TrainConfig.acdc_phase`).
TABLE6_SPECS = {
    "full": Table6Spec(sizes=(None, None), sparsities=(0.5, 0.75, 0.875), steps=250_000),
    "toy": Table6Spec(sizes=(6_000, 24_000), sparsities=(0.5, 0.75, 0.875), steps=800, seeds=3),
    "smoke": Table6Spec(sizes=(3_000,), sparsities=(0.5, 0.875), steps=8, seeds=2),
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
    start, end, freq = DEFAULT
    runs += tuple(TrainConfig(family=family, preset=preset, nnz=nnz, sparsity=spec.sparsity, steps=spec.steps,
                              seed=seed + k, method="gmp", schedule=schedule_for(start, end, freq, spec.base_every))
                  for k in range(1, spec.seeds))
    return Grid(family, preset, "table5", runs)


def table6_grid(family: str, preset: str, *, seed: int = 0, acdc_phase: int | None = None,
                methods: tuple[str, ...] = ("gmp", "acdc")):
    """Table 6: GMP and AC/DC at each (size, S), the paper's pruning window; a grid named "table6".

    `acdc_phase`: AC/DC's phase in steps (None: 4% of the run, `acdc_phase_steps`); the chapter
    passes `acdc_phase(T, regrow)`, measured off the grid's GMP runs (`methods=("gmp",)` first)."""
    from bigsparse_lib.sweep.grids import Grid
    from bigsparse_lib.train import TrainConfig

    spec = TABLE6_SPECS[preset]
    # full: Table 6's 1.3M and 42M, i.e. 1/128 and 1/2 of t5-base's nominal N
    sizes = (_full_nnz(family, 1 / 128), _full_nnz(family, 1 / 2)) if preset == "full" else spec.sizes
    bad = sorted(set(methods) - {"gmp", "acdc"})
    if bad or not methods:
        raise InputError(f"{{arg}} must be a non-empty subset of gmp, acdc, got {list(methods)}", arg="methods")
    runs = tuple(TrainConfig(family=family, preset=preset, nnz=N, sparsity=S, steps=spec.steps, seed=seed,
                             method=method, acdc_phase=acdc_phase if method == "acdc" else None)
                 for N in sizes for S in spec.sparsities for method in methods)
    runs += tuple(TrainConfig(family=family, preset=preset, nnz=sizes[0], sparsity=spec.sparsities[0],
                              steps=spec.steps, seed=seed + k, method="gmp") for k in range(1, spec.seeds))
    # the phase proportion is part of what the results mean: it names the results' grid
    return Grid(family, preset, f"table6-acdc{ACDC_PHASE_FRACTION:g}", runs)


def acdc_phase_steps(steps: int) -> int:
    """AC/DC phase length the engine uses for a run of `steps`: 4% of training (10K of 250K, App. B)."""
    return PruningConfig(method="acdc").phase_steps(steps)


# ---- the tables from the sweeps' exports -----------------------------------------------------------------
def _schedules(results: str | Path) -> pd.DataFrame:
    """The runs of a table5 sweep with their schedule's (start, end, frequency in the paper's steps)."""
    from bigsparse_lib import sweep

    runs = sweep.export(results)
    store = sweep.Store(results)
    base_every = TABLE5_SPECS[store.manifest()["preset"]].base_every
    keys = []
    for rid in runs["run_id"]:
        sched = store.config(rid)["schedule"]
        keys.append((float(sched["start"]), float(sched["end"]), int(round(sched["every"] * PAPER_EVERY / base_every)),
                     int(sched["every"])))
    k = pd.DataFrame(keys, columns=["start", "end", "frequency", "every"], index=runs.index)
    out = pd.concat([runs, k], axis=1)
    out["seed"] = out["seed"].fillna(0).astype(int) if "seed" in out.columns else 0
    return out


def table5(results: str | Path) -> pd.DataFrame:
    """Table 5 from a table5 sweep's results: one row per schedule, the paper's accuracy beside our loss.

    Rows in the paper's order; `frequency` is in the paper's steps (our interval, scaled by
    PAPER_EVERY / base_every of the sweep's preset). One seed per row (the sweep's first), as in the
    paper; the default's other seeds are `table5_seed_losses`.
    """
    runs = _schedules(results)
    runs = runs[runs["seed"] == runs["seed"].min()]
    rows = []
    for _, r in runs.iterrows():
        key = (r["start"], r["end"], int(r["frequency"]))
        rows.append({"start": key[0], "end": key[1], "frequency": key[2], "every (our steps)": int(r["every"]),
                     "paper: accuracy (%)": paper.TABLE5.get(key, np.nan), "ours: loss": float(r["loss"]),
                     "_order": list(paper.TABLE5).index(key) if key in paper.TABLE5 else len(paper.TABLE5)})
    return pd.DataFrame(rows).sort_values("_order").drop(columns="_order").reset_index(drop=True)


def table5_seed_losses(results: str | Path) -> np.ndarray:
    """The default schedule's loss under every seed of a table5 sweep (the seed noise of Table 5's point)."""
    runs = _schedules(results)
    start, end, freq = DEFAULT
    sel = np.isclose(runs["start"], start) & np.isclose(runs["end"], end) & (runs["frequency"] == freq)
    return runs[sel].sort_values("seed")["loss"].to_numpy(dtype=np.float64)


def table6_seed_losses(runs: pd.DataFrame) -> np.ndarray:
    """GMP losses over seeds at the (size, S) of a table6 sweep's export that has several seeds."""
    seeds = runs["seed"].fillna(0) if "seed" in runs.columns else pd.Series(0, index=runs.index)
    gmp = runs[runs["method"] == "gmp"].assign(seed=seeds)
    counts = gmp.groupby(["nnz_target", "sparsity"])["seed"].nunique()
    if counts.max() < 2:
        return np.array([], dtype=np.float64)
    N, S = counts.idxmax()
    return gmp[(gmp["nnz_target"] == N) & (gmp["sparsity"] == S)]["loss"].to_numpy(dtype=np.float64)


def table6(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 6 from the export of a table6 sweep: one row per (size, S), GMP and AC/DC side by side.

    Our losses and perplexities exp(L), and the paper's perplexities for the size of the same
    rank (our smaller size beside its 1.3M, the larger beside its 42M; a single size, as at
    toy scale, beside its 1.3M). Beyond two sizes there is no paper column to match.
    """
    if "seed" in runs.columns:  # one seed per row, as in the paper; the others are `table6_seed_losses`
        runs = runs[runs["seed"].fillna(0) == runs["seed"].fillna(0).min()]
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


# ---- The claims of App. B (issue 12) --------------------------------------------------------------------
DEFAULT = (0.25, 0.75, PAPER_EVERY)  # Table 5's default schedule (App. A)
SHORTEST = (0.475, 0.625, PAPER_EVERY)  # the shortest pruning window, the one row the paper finds worse


def _key(r) -> tuple[float, float, int]:
    return (round(float(r["start"]), 6), round(float(r["end"]), 6), int(r["frequency"]))


@dataclass(frozen=True)
class ScheduleAblation:
    """Table 5: the spread of the seven schedules' losses against the seed noise at the same point.

    A schedule is *clearly worse* when its loss exceeds the default schedule's by more than the
    seed noise (max - min of the default schedule's loss over seeds). The claim: the shortest
    window (0.475-0.625) is clearly worse and no other schedule is.
    """

    losses: dict = field(repr=False)  # (start, end, frequency) -> loss (seed 0, the table's)
    noise: float  # max - min over seeds of the default schedule (NaN: one seed, not measured)
    seeds: int

    @property
    def spread(self) -> float:
        v = np.array(list(self.losses.values()), dtype=np.float64)
        return float(v.max() - v.min()) if v.size else float("nan")

    @property
    def spread_over_noise(self) -> float:
        return self.spread / self.noise if self.noise > 0 else float("nan")

    @property
    def worse(self) -> list:
        """The schedules clearly worse than the default, in Table 5's order."""
        if not np.isfinite(self.noise) or DEFAULT not in self.losses:
            return []
        base = self.losses[DEFAULT]
        return [k for k, v in self.losses.items() if v - base > self.noise]

    @property
    def passed(self) -> bool | None:
        if not np.isfinite(self.noise) or DEFAULT not in self.losses or SHORTEST not in self.losses:
            return None
        return self.worse == [SHORTEST]

    @property
    def status(self) -> str:
        return status(self.passed)


def schedule_ablation(t5: pd.DataFrame, seed_losses) -> ScheduleAblation:
    """`t5`: `table5(...)` (columns start, end, frequency, "ours: loss"); `seed_losses`: the default schedule's
    loss under every seed run at the same point (fewer than 2: the noise is not measured)."""
    losses = {_key(r): float(r["ours: loss"]) for _, r in t5.iterrows()}
    s = np.asarray(seed_losses, dtype=np.float64)
    s = s[np.isfinite(s)]
    noise = float(s.max() - s.min()) if s.size >= 2 else float("nan")
    return ScheduleAblation(losses, noise, int(s.size))


@dataclass(frozen=True)
class GmpVsAcdc:
    """Table 6: AC/DC minus GMP loss at each (size, S), against a tolerance `tol` (the seed noise).

    The claim: at S = 0.5 the two are equal (|diff| <= tol at every size); at every higher S AC/DC is
    no better (diff >= -tol) and at the largest size worse (diff > tol). With one size the last part is
    not measured, and the claim is judged on the other two.
    """

    rows: pd.DataFrame = field(repr=False, compare=False)  # N, S, diff (AC/DC - GMP loss)
    tol: float

    def _at(self, S=None, higher=False) -> pd.Series:
        r = self.rows
        sel = r["S"] > 0.5 if higher else np.isclose(r["S"], S)
        return r[sel]

    @property
    def equal_at_half(self) -> bool | None:
        d = self._at(0.5)["diff"]
        return None if d.empty or not np.isfinite(self.tol) else bool((d.abs() <= self.tol).all())

    @property
    def no_better_higher(self) -> bool | None:
        d = self._at(higher=True)["diff"]
        return None if d.empty or not np.isfinite(self.tol) else bool((d >= -self.tol).all())

    @property
    def worse_at_larger(self) -> bool | None:
        if self.rows["N"].nunique() < 2 or not np.isfinite(self.tol):
            return None
        big = self._at(higher=True)
        big = big[big["N"] == self.rows["N"].max()]["diff"]
        return None if big.empty else bool((big > self.tol).all())

    @property
    def passed(self) -> bool | None:
        parts = [p for p in (self.equal_at_half, self.no_better_higher, self.worse_at_larger) if p is not None]
        return None if not parts else all(parts)

    @property
    def status(self) -> str:
        return status(self.passed)


def gmp_vs_acdc(t6: pd.DataFrame, tol: float) -> GmpVsAcdc:
    """`t6`: `table6(...)` (columns N, S, "ours: GMP loss", "ours: AC/DC loss"); `tol`: the seed noise."""
    rows = pd.DataFrame({"N": t6["N"].astype(float), "S": t6["S"].astype(float),
                         "diff": t6["ours: AC/DC loss"].astype(float) - t6["ours: GMP loss"].astype(float)})
    return GmpVsAcdc(rows.reset_index(drop=True), float(tol))


def regrow_steps(weights, S: float, step_size: float) -> int:
    """Steps an AC/DC dense phase needs before a weight pruned in the sparse phase can return to the mask.

    A pruned weight restarts the dense phase at 0; it can only enter the next sparse phase's mask if it
    has grown past the mask's magnitude threshold, the S-quantile of |w| (`weights`: a trained model's
    prunable weights). An optimizer moves a weight by about `step_size` a step at most (Adam: the
    learning rate; Adafactor with parameter scaling: lr x RMS(w)), so a dense phase shorter than
    threshold / step_size steps cannot change the mask: AC/DC reduces to a fixed mask.
    """
    w = np.abs(np.asarray(weights, dtype=np.float64).ravel())
    if w.size == 0 or not step_size > 0:
        raise InputError("regrow_steps: needs weights and a positive step_size")
    return int(np.ceil(np.quantile(w, float(S)) / float(step_size)))


def regrow_from_params(params, step_size: float) -> float:
    """`regrow_steps` read off a pruned model: for each pruned kernel (one with exact zeros), its mask
    threshold is its smallest kept |w|, and an Adafactor step with parameter scaling (T5, App. A) moves a
    weight by about `step_size` (the learning rate) x RMS of the kernel's kept weights. Returns the median
    over kernels of threshold / (step_size x RMS): the dense-phase steps a pruned weight needs to return."""
    import jax

    steps = []
    for w in jax.tree_util.tree_leaves(params):
        w = np.abs(np.asarray(w, dtype=np.float64))
        if w.ndim < 2 or not (w == 0).any() or not (w > 0).any():
            continue
        kept = w[w > 0]
        steps.append(kept.min() / (float(step_size) * np.sqrt(np.mean(kept ** 2))))
    if not steps or not step_size > 0:
        raise InputError("regrow_from_params: no pruned kernel in params, or step_size not positive")
    return float(np.median(steps))


def acdc_phase(steps: int, regrow: int) -> int:
    """The AC/DC phase for a run of `steps`: App. B's 10K of 250K, never shorter than `regrow` steps."""
    return max(acdc_phase_steps(steps), int(regrow))
