"""Does a sweep show the law? The figures of issue 11 §3, measured on one family's tidy table.

Each function takes the tidy table of one family (`sweep.export`: `sparsity, nnz, data,
loss` + metadata, optionally `seed`, `nnz_target`, `irreducible_loss`) and returns a small
frozen record that a chapter prints and glues. `report` runs them all.

    rep = report(sweep.export("results/t5-toy-main"), starts=1000, resamples=200)
    rep.claims()            # one row per claim: the measured figure, the threshold, holds or not

Conventions (the same in every function):
- A run's *size* is its target non-zero count `nnz_target` when the table has one (every
  sparsity of a size shares it, §3.1), else its `nnz` to 4 significant digits. Its *length*
  is its data `data`. A *point* is one (S, size, D).
- *Seeds*: a table without a `seed` column is one seed. Where a point has several seeds,
  the monotone counts, the sparsity comparison and the size gaps use the arithmetic mean
  of the seeds' losses at that point (`seed_means`); the fits use every run.
- A claim has three states: holds (True), does not hold (False), or not measured (None:
  the table cannot measure it, e.g. one seed for the noise claim); `status` says which.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from bigsparse_lib import fit as F
from bigsparse_lib.errors import InputError
from bigsparse_lib.law import SparseLaw, gain as law_gain, predict

# ---- The thresholds of issue 11 §3 ----------------------------------------------------------------
MONOTONE_SHARE = 0.95  # at least this share of adjacent pairs must fall (in N and in D)
FIT_MEAN_REL_ERR = 0.01  # eq. 3 on the whole sweep: mean |relative error| at most this
FLOOR_GAP = 0.01  # c may lie below the irreducible loss by at most this fraction of it
HELDOUT_MEAN_REL_ERR = 0.02  # eq. 3 without the largest size predicts it to this mean |rel. error|
NOISE_RATIO = 1 / 5  # the seed spread must be under this fraction of the gap between adjacent sizes
LEVEL = 0.95  # bootstrap interval of gain(0.5)
GAIN_S = 0.5  # the sparsity whose gain must be above 1 and beat dense at every size
GAIN_GRID = np.linspace(0.0, 0.875, 36)  # where gain(S) is checked for rising (and its curvature reported)
HALVINGS = (0.0, 0.5, 0.75, 0.875)  # S = 1 - 2^-k: each step halves the density

MIN_SIZES = 2  # a fit of eq. 3 needs N, D and S to vary, and at least as many runs as coefficients
MIN_LENGTHS = 2
MIN_SPARSITIES = 2

STATUS = {True: "holds", False: "does not hold", None: "is not measured"}  # read after "the claim ..."


def status(passed: bool | None) -> str:
    """The words a chapter prints for a claim: 'holds', 'does not hold' or 'is not measured'."""
    return STATUS[None if passed is None else bool(passed)]


# ---- The table: sizes, seeds, means -------------------------------------------------------------
def _one_family(table: pd.DataFrame) -> None:
    missing = [c for c in ("sparsity", "nnz", "data", "loss") if c not in table.columns]
    if missing:
        raise InputError(f"table: missing column(s) {', '.join(missing)}")
    if len(table) == 0:
        raise InputError("table: no rows")
    if "family" in table.columns and table["family"].nunique() > 1:
        raise InputError(f"table: one family at a time, got {', '.join(map(str, table['family'].unique()))}")


def sizes(table: pd.DataFrame) -> pd.Series:
    """Each run's size: `nnz_target` where the table has it, else `nnz` to 4 significant digits."""
    if "nnz_target" in table.columns and table["nnz_target"].notna().all():
        return table["nnz_target"].astype(float)
    return table["nnz"].astype(float).map(lambda n: float(f"{n:.4g}"))


def seeds(table: pd.DataFrame) -> list:
    """The seeds of a table, sorted; [0] when it has no `seed` column (one seed)."""
    if "seed" not in table.columns:
        return [0]
    return sorted(table["seed"].fillna(0).unique().tolist())


def _seed_column(table: pd.DataFrame) -> pd.Series:
    return table["seed"].fillna(0) if "seed" in table.columns else pd.Series(0, index=table.index)


def select_seeds(table: pd.DataFrame, which: Iterable | None) -> pd.DataFrame:
    """The runs of the given seeds (all runs when `which` is None)."""
    if which is None:
        return table
    which = list(which)
    known = seeds(table)
    unknown = [s for s in which if s not in known]
    if unknown:
        raise InputError(f"seeds: {unknown} not in the table, which has seeds {known}")
    return table[_seed_column(table).isin(which)]


def seed_means(table: pd.DataFrame) -> pd.DataFrame:
    """One row per point (S, size, D): the mean loss over its seeds, their count and spread (max - min)."""
    _one_family(table)
    df = table.assign(size=sizes(table).to_numpy(), seed=_seed_column(table).to_numpy())
    g = df.groupby(["sparsity", "size", "data"], sort=True)
    out = g.agg(nnz=("nnz", "mean"), loss=("loss", "mean"), seeds=("seed", "nunique"),
                lo=("loss", "min"), hi=("loss", "max")).reset_index()
    out["spread"] = out.pop("hi") - out.pop("lo")
    for col in ("steps", "family"):  # what the plots label panels with
        if col in df.columns:
            out[col] = g[col].first().to_numpy()
    return out


def irreducible_of(table: pd.DataFrame, irreducible: float | None = None) -> float | None:
    """The data's irreducible loss: the argument, else the table's `irreducible_loss` (its mean), else None."""
    if irreducible is not None:
        return float(irreducible)
    if "irreducible_loss" in table.columns:
        v = pd.to_numeric(table["irreducible_loss"], errors="coerce").dropna()
        if len(v):
            return float(v.mean())
    return None


def fit_settings(table: pd.DataFrame) -> dict:
    """The paper's fit setting for the table's family (App. C: T5 on log L, ViT on L), else `fit`'s defaults."""
    from bigsparse_lib import paper

    fam = table["family"].iloc[0] if "family" in table.columns and len(table) else None
    return dict(paper.TABLE7_FIT_SETTINGS.get(fam, {"delta": F.DELTA, "log": F.LOG}))


# ---- Monotone: loss falls with N and with D ------------------------------------------------------
@dataclass(frozen=True)
class Monotone:
    """Adjacent pairs along every line of fixed (S, D) (axis "N") or fixed (S, size) (axis "D")."""

    axis: str
    holds: int
    total: int
    failing: pd.DataFrame = field(repr=False, compare=False)  # sparsity, fixed, from, to, loss_from, loss_to

    @property
    def share(self) -> float:
        return self.holds / self.total if self.total else float("nan")

    @property
    def passed(self) -> bool | None:
        return None if self.total == 0 else self.share >= MONOTONE_SHARE


def monotone(table: pd.DataFrame, axis: str = "N") -> Monotone:
    """Issue 11 §3 "Monotone": does the loss fall at every step up in N (or in D) along every line?

    A pair holds when the larger size (longer run) has the strictly lower loss; seeds are
    averaged first (`seed_means`). The pairs that do not hold are listed in `failing`.
    """
    if axis not in ("N", "D"):
        raise InputError(f"axis must be 'N' or 'D', got {axis!r}")
    m = seed_means(table)
    along, fixed = ("size", "data") if axis == "N" else ("data", "size")
    holds, total, failing = 0, 0, []
    for (S, f), line in m.groupby(["sparsity", fixed]):
        line = line.sort_values(along)
        x, L = line[along].to_numpy(), line["loss"].to_numpy()
        for i in range(len(line) - 1):
            total += 1
            if L[i + 1] < L[i]:
                holds += 1
            else:
                failing.append({"sparsity": S, fixed: f, "from": x[i], "to": x[i + 1],
                                "loss_from": L[i], "loss_to": L[i + 1]})
    cols = ["sparsity", fixed, "from", "to", "loss_from", "loss_to"]
    return Monotone(axis, holds, total, pd.DataFrame(failing, columns=cols))


# ---- Fit of eq. 3 to the whole sweep ----------------------------------------------------------
def can_fit(table: pd.DataFrame) -> str | None:
    """None when eq. 3 can be fitted to the table; else why not (too few sizes, lengths, sparsities or runs)."""
    n_sizes, n_lengths = sizes(table).nunique(), table["data"].nunique()
    n_sparsities = table["sparsity"].nunique()
    if n_sizes < MIN_SIZES or n_lengths < MIN_LENGTHS or n_sparsities < MIN_SPARSITIES:
        return (f"{n_sizes} size(s), {n_lengths} length(s), {n_sparsities} sparsit(ies): eq. 3 needs at least "
                f"{MIN_SIZES}, {MIN_LENGTHS} and {MIN_SPARSITIES}")
    if len(table) < len(SparseLaw.names):
        return f"{len(table)} runs for {len(SparseLaw.names)} coefficients"
    return None


def relative_errors(law, table: pd.DataFrame) -> np.ndarray:
    """|L_law - L| / L for every run."""
    pred = np.asarray(predict(law, table["sparsity"].to_numpy(float), table["nnz"].to_numpy(float),
                              table["data"].to_numpy(float)), float)
    L = table["loss"].to_numpy(float)
    return np.abs(pred - L) / L


@dataclass(frozen=True)
class FitQuality:
    """Eq. 3 fitted to every run: how well it reproduces them, and its floor c against the data's."""

    result: F.FitResult | None = field(repr=False, compare=False)
    n_runs: int
    mean_rel_err: float
    max_rel_err: float
    c: float
    irreducible: float | None
    reason: str | None = None  # why the fit was not made (None: it was)
    noise_floor: float = float("nan")  # `noise_floor(table)`: what seed noise alone costs any fit (NaN: one seed)

    @property
    def floor_gap(self) -> float:
        """How far c lies below the irreducible loss, as a fraction of it (negative: c above it)."""
        if self.irreducible is None:
            return float("nan")
        return (self.irreducible - self.c) / self.irreducible

    @property
    def error_passed(self) -> bool | None:
        return None if self.result is None else bool(self.mean_rel_err <= FIT_MEAN_REL_ERR)

    @property
    def floor_passed(self) -> bool | None:
        return None if self.result is None or self.irreducible is None else bool(self.floor_gap <= FLOOR_GAP)


def fit_quality(table: pd.DataFrame, *, irreducible: float | None = None, starts: int = F.STARTS,
                seed: int = F.SEED, delta: float | None = None, log: bool | None = None,
                fix: Mapping[str, float] | None = None) -> FitQuality:
    """Issue 11 §3 "Fit": eq. 3 (App. C's multi-start Huber fit) on every run of the table.

    `delta`, `log`: the paper's setting for the family by default (`fit_settings`).
    """
    _one_family(table)
    floor = irreducible_of(table, irreducible)
    why = can_fit(table)
    if why is not None:
        return FitQuality(None, len(table), float("nan"), float("nan"), float("nan"), floor, why,
                          noise_floor(table))
    s = fit_settings(table)
    r = F.fit(table, delta=s["delta"] if delta is None else delta, log=s["log"] if log is None else log,
              starts=starts, seed=seed, fix=fix)
    rel = relative_errors(r.law, table)
    return FitQuality(r, len(table), float(rel.mean()), float(rel.max()), float(r.law.c), floor,
                      noise_floor=noise_floor(table))


def _run_noise(table: pd.DataFrame) -> pd.DataFrame:
    """Per point (S, size, D) with k >= 2 runs: k, and the sum over its runs of |L - mean| / mean * sqrt(k / (k - 1))."""
    _one_family(table)
    df = table.assign(size=sizes(table).to_numpy())
    g = df.groupby(["sparsity", "size", "data"])["loss"]
    k = g.transform("size").to_numpy(np.float64)
    mean = g.transform("mean").to_numpy(np.float64)
    L = df["loss"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.abs(L - mean) / mean * np.sqrt(k / (k - 1))
    runs = df[["sparsity", "size", "data"]].assign(k=k, dev=dev)[k >= 2]
    return runs.groupby(["sparsity", "size", "data"]).agg(k=("k", "size"), dev=("dev", "sum")).reset_index()


def noise_floor(table: pd.DataFrame) -> float:
    """The mean |relative error| that run-to-run noise alone puts under any fit of single runs.

    A law exact to every point's expected loss mu still misses each run by that run's own noise
    e, so over single runs no law scores better than about E|e| / mu on average (a fit with 7
    free coefficients absorbs a little of it, about 7 / n of the variance of n runs). Estimated
    from the points (S, size, D) run with k >= 2 seeds: each run's |L - mean| / mean, times
    sqrt(k / (k - 1)) (with normal noise, E|L - mean| = E|e| sqrt((k - 1) / k)), averaged over
    those runs. It reads the "eq. 3 fits the sweep" figure: a fit error near it is as good as
    the runs allow, and a bar below it cannot be expected to be met without less noisy runs.
    NaN when no point has several seeds; `noise_floor_interval` says how well the seeds pin it.
    """
    pts = _run_noise(table)
    return float(pts["dev"].sum() / pts["k"].sum()) if len(pts) else float("nan")


def noise_floor_interval(table: pd.DataFrame, resamples: int = 1000, level: float = LEVEL,
                         seed: int = F.SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of `noise_floor`, resampling the points with several seeds
    (as `Noise.interval` does for the spread / gap ratio). (NaN, NaN) when there are none."""
    pts = _run_noise(table)
    return _resampled_ratio(pts["dev"], pts["k"], resamples, level, seed)


def _resampled_ratio(num, den, resamples: int, level: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of sum(num) / sum(den), resampling the points (rows) with
    replacement; a resample whose den sums to 0 is NaN. (NaN, NaN) when there are no points."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    n = len(num)
    if n == 0 or resamples < 1:
        return (float("nan"), float("nan"))
    idx = np.random.default_rng(seed).integers(0, n, size=(int(resamples), n))
    top, bottom = num[idx].sum(axis=1), den[idx].sum(axis=1)
    return F.percentile_interval(np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.nan), level)


# ---- Extrapolation: hold out the largest size (Fig. 1, left) -------------------------------------
@dataclass(frozen=True)
class Extrapolation:
    """Eq. 3 fitted without the largest size, and its error on the held-out runs of that size."""

    held_size: float
    n_fit: int
    n_held: int
    mean_rel_err: float  # on the held-out runs
    max_rel_err: float
    fit_mean_rel_err: float  # on the runs it was fitted to
    law: SparseLaw | None
    held_out: np.ndarray = field(repr=False, compare=False)  # boolean, one per row of the table
    reason: str | None = None

    @property
    def passed(self) -> bool | None:
        return None if self.law is None else bool(self.mean_rel_err <= HELDOUT_MEAN_REL_ERR)


def extrapolation(table: pd.DataFrame, *, starts: int = F.STARTS, seed: int = F.SEED, delta: float | None = None,
                  log: bool | None = None, fix: Mapping[str, float] | None = None) -> Extrapolation:
    """Issue 11 §3 "Extrapolation": fit on every size but the largest, predict the runs of the largest.

    The largest size is the largest of the whole table (as the paper's Fig. 1, left, holds out
    its largest model); every sparsity's run at that size is held out.
    """
    _one_family(table)
    size = sizes(table).to_numpy()
    held = size == size.max()
    train = table[~held]
    why = can_fit(train)
    if why is not None:
        return Extrapolation(float(size.max()), int((~held).sum()), int(held.sum()), float("nan"), float("nan"),
                             float("nan"), None, held, f"without the largest size: {why}")
    s = fit_settings(table)
    r = F.fit(train, delta=s["delta"] if delta is None else delta, log=s["log"] if log is None else log,
              starts=starts, seed=seed, fix=fix)
    rel = relative_errors(r.law, table)
    return Extrapolation(float(size.max()), int((~held).sum()), int(held.sum()), float(rel[held].mean()),
                         float(rel[held].max()), float(rel[~held].mean()), r.law, held)


# ---- Sparsity helps, with diminishing returns -----------------------------------------------------
@dataclass(frozen=True)
class SparsityGain:
    """L(S=0.5) against dense at the longest runs; the fitted gain(S) (eq. 7); the gain per halving of density."""

    longest: float  # D of the longest runs
    pairs: pd.DataFrame = field(repr=False, compare=False)  # size, dense, sparse (seed means), holds
    halvings: pd.DataFrame = field(repr=False, compare=False)  # from_S, to_S, mean loss drop at the longest D
    gain_grid: np.ndarray = field(repr=False, compare=False)  # gain(GAIN_GRID) of the fitted law (empty: no law)
    gain_half: float  # gain(0.5) of the fitted law
    interval: tuple[float, float]  # bootstrap LEVEL interval of gain(0.5) (NaN: not measured)
    resamples: int
    boot: F.Bootstrap | None = field(default=None, repr=False, compare=False)  # the refits (for other intervals)

    @property
    def beats_dense(self) -> tuple[int, int]:
        """(sizes where L(S=0.5) < L(S=0) at the longest D, sizes compared)."""
        return int(self.pairs["holds"].sum()), len(self.pairs)

    @property
    def beats_dense_passed(self) -> bool | None:
        held, total = self.beats_dense
        return None if total == 0 else held == total

    @property
    def rising(self) -> bool | None:
        """gain(S) strictly increasing on GAIN_GRID."""
        return None if self.gain_grid.size == 0 else bool(np.all(np.diff(self.gain_grid) > 0))

    @property
    def concave_in_S(self) -> bool | None:
        """gain(S) concave on GAIN_GRID (second differences <= 0). Reported only: Table 7's own laws are
        convex in S over [0, 0.875] (T5 and ViT), so this is not part of the claim; see `diminishing`."""
        return None if self.gain_grid.size == 0 else bool(np.all(np.diff(self.gain_grid, 2) <= 1e-12))

    @property
    def diminishing(self) -> bool | None:
        """§3.2 observation 2, as eq. 3 writes it: each halving of density (S = 0 -> .5 -> .75 -> .875)
        lowers the loss by less than the previous one (measured at the longest D, mean over sizes)."""
        drops = self.halvings["drop"].dropna().to_numpy()
        return None if drops.size < 2 else bool(np.all(drops > 0) and np.all(np.diff(drops) < 0))

    @property
    def interval_passed(self) -> bool | None:
        lo = self.interval[0]
        return None if not np.isfinite(lo) else bool(lo > 1.0)

    @property
    def passed(self) -> bool | None:
        """Sparsity helps with diminishing returns: every measured part holds (None if none is measured)."""
        parts = [self.beats_dense_passed, self.rising, self.diminishing, self.interval_passed]
        measured = [p for p in parts if p is not None]
        return None if not measured else all(measured)


def sparsity_gain(table: pd.DataFrame, law: SparseLaw | None = None, *, result: F.FitResult | None = None,
                  resamples: int = 0, seed: int = F.SEED) -> SparsityGain:
    """Issue 11 §3 "Sparsity helps, with diminishing returns".

    - the longest runs: L(S=0.5) < L(S=0) at every size (seed means);
    - the fitted gain(S) of eq. 7 rises on [0, 0.875] (`law`, or `result.law`);
    - each halving of density lowers the loss by less than the one before (the data, longest D);
    - the bootstrap interval of gain(0.5) (`resamples` refits of `result`, `fit.bootstrap`) lies above 1.
    """
    m = seed_means(table)
    longest = float(m["data"].max())
    last = m[m["data"] == longest].set_index(["sparsity", "size"])["loss"]
    pairs = []
    by_S = {S: last.xs(S, level="sparsity") for S in last.index.get_level_values("sparsity").unique()}
    if 0.0 in by_S and GAIN_S in by_S:
        both = by_S[0.0].to_frame("dense").join(by_S[GAIN_S].rename("sparse"), how="inner")
        pairs = [{"size": n, "dense": r["dense"], "sparse": r["sparse"], "holds": bool(r["sparse"] < r["dense"])}
                 for n, r in both.iterrows()]
    pairs = pd.DataFrame(pairs, columns=["size", "dense", "sparse", "holds"])
    rows = []
    for a, b in zip(HALVINGS[:-1], HALVINGS[1:]):
        if a in by_S and b in by_S:
            d = (by_S[a] - by_S[b]).dropna()
            rows.append({"from_S": a, "to_S": b, "drop": float(d.mean()) if len(d) else np.nan, "sizes": len(d)})
        else:
            rows.append({"from_S": a, "to_S": b, "drop": np.nan, "sizes": 0})
    law = law if law is not None else (result.law if result is not None else None)
    grid = np.asarray(law_gain(law, GAIN_GRID), float) if law is not None else np.array([])
    half = float(law_gain(law, GAIN_S)) if law is not None else float("nan")
    interval, boot = (float("nan"), float("nan")), None
    if resamples > 0 and result is not None:
        boot = F.bootstrap(result, resamples, seed=seed)
        interval = F.percentile_interval(boot.samples(lambda l: law_gain(l, GAIN_S)), LEVEL)
    return SparsityGain(longest, pairs, pd.DataFrame(rows), grid, half, interval, resamples, boot)


# ---- Noise against signal ------------------------------------------------------------------------
@dataclass(frozen=True)
class Noise:
    """The spread between seeds at a point against the loss gap to its adjacent sizes."""

    points: pd.DataFrame = field(repr=False, compare=False)  # sparsity, size, data, seeds, spread, gap, ratio
    mean_spread: float
    mean_gap: float

    @property
    def ratio(self) -> float:
        """Mean seed spread / mean gap between adjacent sizes, over the points with several seeds."""
        return self.mean_spread / self.mean_gap if self.mean_gap > 0 else float("nan")

    @property
    def worst_ratio(self) -> float:
        return float(self.points["ratio"].max()) if len(self.points) else float("nan")

    @property
    def by_size(self) -> pd.DataFrame:
        """Per size with several seeds: its points, mean spread, mean gap and their ratio.

        Where the noise lives: in the toy T5 sweep the smallest model's seeds differ by 0.020 on average,
        the next size's by 0.013 (2026-12-02, one layer per stack; 0.031 and 0.018 with the two layers
        of 2026-12-01). On the two-layer toy T5 the difference came from the initialisation, not the
        data order: four seeds of the 14K model at 200 steps spread by 0.082 with their own batches
        and by 0.078 with one shared batch order (2026-11-30). Seeds at the two largest sizes too
        (2026-12-03, a probe recorded at `train.RECIPE_VERSIONS`) differ by about as much (S = 0 and
        0.5: 0.022 at 56K, 0.019 at 112K) while their gaps are smaller, so the smallest sizes are not
        where the noise is.
        Nor is it the held-out set's: the 36 seed pairs of that probe, re-evaluated from their
        checkpoints on 512 batches instead of 64, differed by 0.0171 on average instead of 0.0180.
        """
        return self._by("size")

    @property
    def by_data(self) -> pd.DataFrame:
        """`by_size`, per length D instead: in the toy sweeps the shortest runs are the noisiest."""
        return self._by("data")

    def _by(self, column: str) -> pd.DataFrame:
        g = self.points.groupby(column)
        out = pd.DataFrame({"points": g.size(), "mean spread": g["spread"].mean(), "mean gap": g["gap"].mean()})
        out["ratio"] = out["mean spread"] / out["mean gap"]
        return out

    def interval(self, resamples: int = 1000, level: float = LEVEL, seed: int = F.SEED) -> tuple[float, float]:
        """Percentile bootstrap interval of `ratio` over the points: how far two seeds per point pin it.

        Each resample draws len(points) points with replacement and takes mean spread / mean gap.
        With two seeds a point's spread is one |difference|, so the ratio of a toy sweep rests on a
        few dozen such differences; an interval that straddles NOISE_RATIO says the seeds run do not
        decide the claim either way. (NaN, NaN) when no point has several seeds.
        """
        return _resampled_ratio(self.points["spread"], self.points["gap"], resamples, level, seed)

    @property
    def passed(self) -> bool | None:
        if len(self.points) == 0:
            return None
        return bool(self.mean_gap > 0 and self.ratio < NOISE_RATIO)


def noise(table: pd.DataFrame) -> Noise:
    """Issue 11 §3 "Noise is small against signal".

    At every point (S, size, D) run with several seeds, the spread is max - min of their
    losses; the gap is the mean |difference| of the seed-mean loss to the adjacent size(s) on
    the same (S, D) line. The claim compares the mean spread with the mean gap over those
    points (`ratio`); `worst_ratio` is the largest pointwise spread / gap.
    """
    m = seed_means(table)
    rows = []
    for (S, D), line in m.groupby(["sparsity", "data"]):
        line = line.sort_values("size").reset_index(drop=True)
        L = line["loss"].to_numpy()
        for i, r in line.iterrows():
            if r["seeds"] < 2:
                continue
            gaps = [abs(L[j] - L[i]) for j in (i - 1, i + 1) if 0 <= j < len(line)]
            gap = float(np.mean(gaps)) if gaps else np.nan
            rows.append({"sparsity": S, "size": r["size"], "data": D, "seeds": int(r["seeds"]),
                         "spread": float(r["spread"]), "gap": gap,
                         "ratio": float(r["spread"] / gap) if gap and np.isfinite(gap) else np.nan})
    pts = pd.DataFrame(rows, columns=["sparsity", "size", "data", "seeds", "spread", "gap", "ratio"])
    with_gap = pts.dropna(subset=["gap"])
    return Noise(with_gap, float(with_gap["spread"].mean()) if len(with_gap) else float("nan"),
                 float(with_gap["gap"].mean()) if len(with_gap) else float("nan"))


# ---- Everything at once ------------------------------------------------------------------------
@dataclass(frozen=True)
class Report:
    """Every figure of issue 11 §3 for one family's table (restricted to `seeds`)."""

    seeds: tuple
    n_runs: int
    irreducible: float | None
    monotone_N: Monotone
    monotone_D: Monotone
    fit: FitQuality
    extrapolation: Extrapolation
    gain: SparsityGain
    noise: Noise
    robust: Mapping = field(default_factory=dict, compare=False)  # other seed -> its own Report

    @property
    def robust_passed(self) -> bool | None:
        """Every measured claim holds on each other seed's runs alone (None: no other seed, or nothing measured)."""
        verdicts = [r.passed for r in self.robust.values()]
        measured = [v for v in verdicts if v is not None]
        return None if not measured else all(measured)

    def claims(self) -> pd.DataFrame:
        """One row per claim: what was measured, the threshold, and `status` ('holds', 'does not hold', ...)."""
        g = self.gain
        held, compared = g.beats_dense
        rows = [
            ("loss falls with N", f"{self.monotone_N.holds}/{self.monotone_N.total} pairs",
             f">= {MONOTONE_SHARE:.0%} of pairs", self.monotone_N.passed),
            ("loss falls with D", f"{self.monotone_D.holds}/{self.monotone_D.total} pairs",
             f">= {MONOTONE_SHARE:.0%} of pairs", self.monotone_D.passed),
            ("eq. 3 fits the sweep", f"mean |rel. error| {self.fit.mean_rel_err:.2%}" + (
                f" (seed noise alone: {self.fit.noise_floor:.2%})" if np.isfinite(self.fit.noise_floor) else ""),
             f"<= {FIT_MEAN_REL_ERR:.0%}", self.fit.error_passed),
            ("c not below the irreducible loss", f"c below it by {self.fit.floor_gap:.1%}",
             f"<= {FLOOR_GAP:.0%}", self.fit.floor_passed),
            ("predicts the largest size", f"mean |rel. error| {self.extrapolation.mean_rel_err:.2%}",
             f"<= {HELDOUT_MEAN_REL_ERR:.0%}", self.extrapolation.passed),
            (f"L(S={GAIN_S:g}) < L(S=0), longest runs", f"{held}/{compared} sizes", "every size",
             g.beats_dense_passed),
            ("gain(S) rises", f"gain({GAIN_S:g}) = {g.gain_half:.3g}", "on [0, 0.875]", g.rising),
            ("diminishing returns per halving", _drops(g.halvings), "each drop smaller", g.diminishing),
            (f"bootstrap {LEVEL:.0%} interval of gain({GAIN_S:g}) above 1",
             f"[{g.interval[0]:.3g}, {g.interval[1]:.3g}]", "> 1", g.interval_passed),
            ("seed spread small against size gap",
             "ratio {:.3g} (points resampled: [{:.3g}, {:.3g}])".format(self.noise.ratio, *self.noise.interval()),
             f"< {NOISE_RATIO:.2g}",
             self.noise.passed),
            ("the same on another seed", ", ".join(f"seed {s}: {status(r.passed)}" for s, r in self.robust.items())
             or "no other seed", "every claim", self.robust_passed),
        ]
        return pd.DataFrame([{"claim": c, "measured": m, "threshold": t, "status": status(p)} for c, m, t, p in rows]
                            ).set_index("claim")

    @property
    def verdicts(self) -> dict[str, bool | None]:
        """Claim -> True / False / None (not measured)."""
        g = self.gain
        return {"monotone_N": self.monotone_N.passed, "monotone_D": self.monotone_D.passed,
                "fit_error": self.fit.error_passed, "floor": self.fit.floor_passed,
                "extrapolation": self.extrapolation.passed, "beats_dense": g.beats_dense_passed,
                "gain_rising": g.rising, "diminishing": g.diminishing, "gain_interval": g.interval_passed,
                "noise": self.noise.passed, "robust": self.robust_passed}

    @property
    def passed(self) -> bool | None:
        """Every measured claim holds (None when nothing could be measured)."""
        measured = [v for v in self.verdicts.values() if v is not None]
        return None if not measured else all(measured)


def _drops(halvings: pd.DataFrame) -> str:
    d = halvings.dropna(subset=["drop"])
    return ", ".join(f"{r.from_S:g}->{r.to_S:g}: {r.drop:.3g}" for r in d.itertuples()) or "-"


def report(table: pd.DataFrame, *, irreducible: float | None = None, seeds: Iterable | None = None,
           starts: int = F.STARTS, resamples: int = 200, seed: int = F.SEED, robust: bool = True,
           delta: float | None = None, log: bool | None = None) -> Report:
    """All of issue 11 §3 on one family's table: monotone counts, fit, extrapolation, gains, noise, robustness.

    `seeds`: use only the runs of these seeds (default all; several seeds at a point are averaged
    for the counts, and every run enters the fits). `robust`: also report, for every seed but the
    first, on that seed's runs alone (its own fits, no bootstrap). `starts`, `resamples`: of the
    fits (`fit.fit`) and of the bootstrap of gain(0.5) (`fit.bootstrap`); `delta`, `log`: the
    fit's loss (the family's Table 7 setting by default).
    """
    _one_family(table)
    table = select_seeds(table, seeds).reset_index(drop=True)
    floor = irreducible_of(table, irreducible)
    kw = dict(starts=starts, seed=seed, delta=delta, log=log)
    quality = fit_quality(table, irreducible=floor, **kw)
    sg = sparsity_gain(table, result=quality.result, resamples=resamples, seed=seed)
    others = {}
    if robust:
        for s in seeds_(table)[1:]:
            others[s] = report(table, irreducible=floor, seeds=[s], starts=starts, resamples=0, seed=seed,
                               robust=False, delta=delta, log=log)
    return Report(tuple(seeds_(table)), len(table), floor, monotone(table, "N"), monotone(table, "D"), quality,
                  extrapolation(table, **kw), sg, noise(table), others)


seeds_ = seeds  # `report` has an argument of that name


# ---- §3.2's observations and Table 1 (moved from the chapters) ------------------------------------
def observations(table: pd.DataFrame, c: float) -> pd.DataFrame:
    """The three observations of §3.2 measured on a sweep, one row per sparsity.

    1. parallel lines: the slope of log(L - c) against log N on each (S, D) line (mean, and
       spread max - min over lengths); 2. diminishing returns: L / L_dense at equal size and D
       (mean over the grid); 3. more data shifts every curve down: L(longest) - L(shortest)
       at each size (mean, and on how many sizes it fell). Seeds are averaged first.
    """
    m = seed_means(table)
    m = m.assign(logN=np.log(m["nnz"]), logL=np.log(np.maximum(m["loss"] - c, 1e-9)))
    slope = {}
    for key, g in m.groupby(["sparsity", "data"]):
        if g["size"].nunique() >= 2:
            slope[key] = np.polyfit(g["logN"], g["logL"], 1)[0]
    slope = pd.Series(slope, dtype=float)
    slope.index = pd.MultiIndex.from_tuples(slope.index, names=["sparsity", "data"]) if len(slope) else slope.index
    by = m.set_index(["sparsity", "size", "data"])["loss"]
    dense = m[m["sparsity"] == 0].set_index(["size", "data"])["loss"]
    ratio = m["loss"].to_numpy() / dense.reindex(pd.MultiIndex.from_frame(m[["size", "data"]])).to_numpy()
    shortest, longest = m["data"].min(), m["data"].max()
    shift = (by.xs(longest, level="data") - by.xs(shortest, level="data")).dropna().groupby(level="sparsity")
    out = pd.DataFrame({
        "slope d log(L-c)/d log N (mean over lengths)": slope.groupby(level="sparsity").mean() if len(slope) else np.nan,
        "slope spread (max - min over lengths)": slope.groupby(level="sparsity").agg(np.ptp) if len(slope) else np.nan,
        "L / L_dense at equal N, D": pd.Series(ratio, index=m.index).groupby(m["sparsity"]).mean(),
        "L(longest) - L(shortest)": shift.mean(),
        "sizes where it fell": shift.apply(lambda s: f"{int((s < 0).sum())}/{len(s)}"),
    })
    out.index.name = "sparsity"
    return out


@dataclass(frozen=True)
class SizeGaps:
    """The loss drop from each size to the next along one (S, D) line (seed means first)."""

    sparsity: float
    data: float
    gaps: pd.Series  # indexed by the smaller size of each adjacent pair

    @property
    def ratios(self) -> np.ndarray:
        """Each gap over the one before. Eq. 3 at fixed S and D makes it (N_k / N_k+1)^b_N:
        2^-b_N < 1 for sizes in 2x steps, whatever c is."""
        g = self.gaps.to_numpy()
        return g[1:] / g[:-1]

    @property
    def shrinking(self) -> bool | None:
        """Whether every gap is smaller than the one before, as eq. 3 has it (None: < 2 gaps)."""
        r = self.ratios
        return None if len(r) == 0 else bool(np.all((r > 0) & (r < 1)))


def size_gaps(table: pd.DataFrame, sparsity: float = 0.0, data: float | None = None) -> SizeGaps:
    """`SizeGaps` of the line at `sparsity` and length `data` (default: the longest).

    Why it is worth a look: a loss that falls faster than a power law in N (gaps growing with
    size) cannot be fitted by eq. 3 with any c, and the fit then puts c at its lower bound.
    """
    m = seed_means(table)
    m = m[np.isclose(m["sparsity"], sparsity)]
    if m.empty:
        raise InputError(f"no runs at sparsity {sparsity:g}")
    D = float(m["data"].max()) if data is None else float(data)
    line = m[np.isclose(m["data"], D)].sort_values("size")
    loss = line.set_index("size")["loss"]
    gaps = pd.Series(-np.diff(loss.to_numpy()), index=loss.index[:-1], name="gap")
    return SizeGaps(float(sparsity), D, gaps)


def dense_widths(table: pd.DataFrame) -> pd.Series:
    """Each run's dense model size: `dense_params` (the sparsified layers' count at the run's
    width, `sweep.export`) where the table has it, else nnz / (1 - S) to 4 significant digits.
    Runs that share it share a model shape and differ only in how many of its weights are zero."""
    if "dense_params" in table.columns and table["dense_params"].notna().all():
        return table["dense_params"].astype(float)
    return (table["nnz"].astype(float) / (1.0 - table["sparsity"].astype(float))).map(lambda n: float(f"{n:.4g}"))


@dataclass(frozen=True)
class EqualWidth:
    """The runs that share a dense width (one model shape at several S), at one length D."""

    data: float
    losses: pd.DataFrame  # index: dense size (`dense_widths`), columns: S; the mean loss over seeds

    @property
    def spreads(self) -> pd.Series:
        """Per width run at 2 sparsities or more: max - min of the loss over them."""
        rows = self.losses[self.losses.notna().sum(axis=1) >= 2]
        return (rows.max(axis=1) - rows.min(axis=1)).rename("spread")

    @property
    def gaps(self) -> pd.Series:
        """Per pair of adjacent widths (indexed by the narrower): the loss drop to the wider one,
        mean over the sparsities run at both."""
        L = self.losses
        drops = {a: (L.loc[a] - L.loc[b]).dropna() for a, b in zip(L.index[:-1], L.index[1:])}
        return pd.Series({a: float(d.mean()) for a, d in drops.items() if len(d)}, dtype=float, name="gap")

    @property
    def ratio(self) -> float:
        """Mean spread over S at equal width / mean gap between adjacent widths. Near 0: the
        loss is set by the width, whatever the share of its weights that are zero."""
        gap = float(self.gaps.mean())
        return float(self.spreads.mean()) / gap if gap > 0 else float("nan")


def equal_width(table: pd.DataFrame, data: float | None = None) -> EqualWidth:
    """`EqualWidth` at length `data` (default: the longest).

    Why it is worth a look: at equal N, a sparse model is wider than a dense one (§3.1), so a
    sweep in which the width alone set the loss, and pruning most of a model's weights cost
    nothing, would show large "gains" from sparsity that say little about sparsity. Eq. 3 at
    equal width W has the loss rise with S: L(S, (1 - S) W, D) grows as (1 - S)^-b_N.
    """
    _one_family(table)
    df = table.assign(width=dense_widths(table).to_numpy())
    D = float(df["data"].max()) if data is None else float(data)
    df = df[np.isclose(df["data"].astype(float), D)]
    if df.empty:
        raise InputError(f"no runs of length {D:g}")
    losses = df.groupby(["width", "sparsity"])["loss"].mean().unstack("sparsity").sort_index()
    return EqualWidth(D, losses)


def uncounted_weights(family: str, preset: str, N: float, sparsities: Iterable[float] = HALVINGS) -> pd.DataFrame:
    """The non-zeros that ride along uncounted at N counted non-zeros: one row per S with the
    model's dense backbone count N / (1 - S) (its width's), its non-zeros outside the backbone
    kernels (`models.uncounted_nonzeros`: embeddings, head or output layer, norms, biases) and
    those as a multiple of N.

    Why: N counts only the backbone kernels (§3.1). At equal N a sparse ViT is wider, so it also
    carries more of these, and "sparse beats dense at equal N" partly measures them; T5 prunes its
    embeddings to the dense model's count (App. A), so for T5 they stay about level.
    """
    from bigsparse_lib import models

    fam = models.get_family(family)
    rows = []
    for S in sparsities:
        config = models.config_for_nnz(fam, preset, N, S)
        extra = models.uncounted_nonzeros(fam, config, S)
        rows.append({"S": float(S), "backbone weights": fam.dense_count(config), "uncounted non-zeros": extra,
                     "uncounted / N": extra / float(N)})
    return pd.DataFrame(rows)


def describe_grid(grid) -> dict:
    """One row of Table 1 for a grid of TrainConfigs: dense sizes, steps, sparsities, seeds, runs."""
    runs = list(grid)
    dense = sorted({c.nnz for c in runs if c.sparsity == 0})
    return {"N (dense sizes)": ", ".join(f"{n / 1e6:.3g}M" if n >= 1e5 else f"{n:,}" for n in dense),
            "steps": ", ".join(f"{s:,}" for s in sorted({c.steps for c in runs})),
            "sparsities": ", ".join(f"{s:g}" for s in sorted({c.sparsity for c in runs})),
            "seeds": ", ".join(str(s) for s in sorted({getattr(c, "seed", 0) for c in runs})),
            "runs": len(runs)}
