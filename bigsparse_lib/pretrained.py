"""§4.2 / Table 4: how much data sparsifying from scratch needs to match pruning a pretrained model.

A dense model is pretrained on D_pre; it is then pruned to sparsity S, sparsifying from the
first step, on D_prune = 5.6% of D_pre. That gives a loss L*. The question of Table 4: how
much data D_scratch does a run that sparsifies the same (N, S) *from scratch*, with the
usual schedule, need to reach L*? The table reports two ratios:

    exc. = D_scratch / D_prune               (the dense checkpoint exists already: pretraining is free)
    inc. = D_scratch / (D_pre + D_prune)     (pretraining is paid for too)

so inc. = exc. * f / (1 + f) with f = D_prune / D_pre (`inclusive_multiple`).

D_scratch is found in two ways:

* with a law (the paper's way, "we use our scaling laws from Section 3.2"): eq. 3 solved
  for D at the pruned model's S and N, `data_to_match` -- closed form, because eq. 3 is
  a sum of a D-free part and (a_D / D)^b_D;
* from measured from-scratch runs at the same (N, S): the loss-vs-data curve interpolated
  linearly in (log D, log L) between the two runs that bracket L* (`interpolate_data`);
  outside the measured range there is no answer (NaN), rather than an extrapolation.

`table4(runs, law)` does both for the tidy table of a `pretrained` sweep (`sweep.export`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bigsparse_lib.errors import InputError
from bigsparse_lib.evidence import status
from bigsparse_lib.law import SparseLaw


def data_to_match(law: SparseLaw, S, N, loss):
    """D at which eq. 3 predicts `loss` for sparsity S and N non-zeros.

    L = cap(S, N) + (a_D/D)^b_D + c  =>  D = a_D * (L - cap(S, N) - c)^(-1/b_D).
    Where `loss` is at or below the law's limit cap(S, N) + c (no amount of data reaches
    it), the answer is +inf. Elementwise; floats or numpy arrays.
    """
    S, N, loss = (np.asarray(x, dtype=np.float64) for x in (S, N, loss))
    cap = (law.a_S * (1.0 - S) ** law.b_S + law.c_S) * N ** (-law.b_N)
    gap = loss - cap - law.c
    with np.errstate(divide="ignore", invalid="ignore"):
        D = np.where(gap > 0, law.a_D * np.abs(gap) ** (-1.0 / law.b_D), np.inf)
    return D if D.ndim else float(D)


def interpolate_data(data, losses, target: float) -> float:
    """D at which a measured loss-vs-data curve reaches `target`, by interpolation in (log D, log L).

    `data`, `losses`: the runs of one (N, S) at different lengths. Takes the first pair of
    consecutive runs (in D) whose losses bracket `target`; NaN when no pair does (the target
    lies outside what was measured), so nothing is extrapolated.
    """
    data, losses = np.asarray(data, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    if data.shape != losses.shape or data.ndim != 1:
        raise ValueError("data and losses must be 1-D arrays of the same length")
    order = np.argsort(data)
    x, y, t = np.log(data[order]), np.log(losses[order]), np.log(target)
    for i in range(len(x) - 1):
        lo, hi = sorted((y[i], y[i + 1]))
        if lo <= t <= hi:
            if y[i + 1] == y[i]:
                return float(np.exp(x[i]))
            return float(np.exp(x[i] + (t - y[i]) * (x[i + 1] - x[i]) / (y[i + 1] - y[i])))
    return float("nan")


def inclusive_multiple(exc, pruning_fraction: float):
    """Table 4's inc. from exc.: D_scratch / (D_pre + D_prune) = exc * f / (1 + f), f = D_prune / D_pre."""
    f = float(pruning_fraction)
    return np.asarray(exc, dtype=np.float64) * f / (1.0 + f)


def split_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(dense pretraining, pruned-from-pretrained, from-scratch) rows of a `pretrained` sweep export.

    Pruned runs are those with an `init` (an '@<run id>' of their dense parent); dense runs
    have S = 0 and no init; the rest sparsify from scratch.
    """
    init = runs["init"] if "init" in runs.columns else pd.Series([None] * len(runs), index=runs.index)
    has_init = init.notna() & (init.astype(str) != "None")
    dense = runs[~has_init & (runs["sparsity"] == 0)]
    pruned = runs[has_init]
    scratch = runs[~has_init & (runs["sparsity"] > 0)]
    return dense, pruned, scratch


def table4(runs: pd.DataFrame, law: SparseLaw | None = None) -> pd.DataFrame:
    """Table 4 for the tidy export of a `pretrained` sweep: one row per (dense model, S).

    Columns: dense_nnz (N of the pretrained dense model), sparsity, nnz (of the pruned
    model), D_pre, D_prune, loss_dense (pretrained model), loss_pruned (L*), and
      exc_law, inc_law:        D_scratch from `law` (eq. 3 solved for D), if a law is given;
      exc_runs, inc_runs:      D_scratch interpolated from the from-scratch runs at the same
                               (N, S) (NaN where they do not bracket L*);
      scratch_max_multiple:    the longest from-scratch run, as a multiple of D_prune.
    """
    dense, pruned, scratch = split_runs(runs)
    parents = dense.set_index("run_id")
    rows = []
    for _, p in pruned.iterrows():
        parent = parents.loc[str(p["init"]).lstrip("@")]
        D_pre, D_prune = float(parent["data"]), float(p["data"])
        row = {"dense_nnz": float(parent["nnz"]), "sparsity": float(p["sparsity"]), "nnz": float(p["nnz"]),
               "D_pre": D_pre, "D_prune": D_prune, "loss_dense": float(parent["loss"]),
               "loss_pruned": float(p["loss"])}
        f = D_prune / D_pre
        if law is not None:
            D = data_to_match(law, row["sparsity"], row["nnz"], row["loss_pruned"])
            row["exc_law"] = D / D_prune
            row["inc_law"] = float(inclusive_multiple(row["exc_law"], f))
        same = scratch[(scratch["nnz_target"] == p["nnz_target"]) & np.isclose(scratch["sparsity"], p["sparsity"])]
        if len(same):
            D = interpolate_data(same["data"], same["loss"], row["loss_pruned"])
            row["exc_runs"] = D / D_prune
            row["inc_runs"] = float(inclusive_multiple(row["exc_runs"], f))
            row["scratch_max_multiple"] = float(same["data"].max()) / D_prune
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["dense_nnz", "sparsity"]).reset_index(drop=True)


# ---- The claims of §4.2 (issue 12) ----------------------------------------------------------------------

TAIL = 0.1  # "very well trained": what the last 10% of pretraining still gains ...
WELL_TRAINED = 0.01  # ... is under 1% of what the whole pretraining gained (our threshold; the paper says
# only "very well trained"). On eq. 3 a run whose D-term has flattened this far is far past the knee.
MIN_MASK_UPDATES = 50  # the pruning schedule must move the mask at least this often
FRACTION_TOLERANCE = 0.1  # D_prune / D_pre within 10% of the paper's 5.6% (step rounding at toy lengths)


@dataclass(frozen=True)
class WellTrained:
    """Loss gained by the last TAIL of pretraining against the loss gained by the whole of it."""

    first: float  # loss at the first logged step
    at_tail: float  # loss at (1 - TAIL) of the run (interpolated between logged steps)
    last: float  # loss at the end
    threshold: float = WELL_TRAINED

    @property
    def share(self) -> float:
        whole = self.first - self.last
        return (self.at_tail - self.last) / whole if whole > 0 else float("nan")

    @property
    def passed(self) -> bool | None:
        return None if not np.isfinite(self.share) else bool(self.share < self.threshold)

    @property
    def status(self) -> str:
        return status(self.passed)


def well_trained(steps, losses, *, tail: float = TAIL) -> WellTrained:
    """`steps`, `losses`: a pretraining run's logged curve (`train.read_log`). The loss at (1 - tail) T is
    interpolated linearly between the logged steps that bracket it; a curve that never improved has no
    share (NaN, not measured)."""
    steps, losses = np.asarray(steps, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    if steps.ndim != 1 or steps.shape != losses.shape or steps.size < 2:
        raise InputError("well_trained: steps and losses must be 1-D of the same length, at least 2 points")
    order = np.argsort(steps)
    steps, losses = steps[order], losses[order]
    t = steps[0] + (1.0 - tail) * (steps[-1] - steps[0])
    return WellTrained(float(losses[0]), float(np.interp(t, steps, losses)), float(losses[-1]))


def mask_updates(schedule, steps: int, S: float) -> int:
    """How many times a GMP schedule raises the sparsity over a run of `steps` (`GradualSchedule`)."""
    s = np.asarray(schedule.sparsity_at_step(np.arange(int(steps) + 1), int(steps), float(S)), dtype=np.float64)
    return int(np.count_nonzero(np.diff(s) > 1e-12) + (s[0] > 0))


@dataclass(frozen=True)
class PruningBudget:
    """§4.2's pruning: 5.6% of pretraining (FRACTION_TOLERANCE), with at least MIN_MASK_UPDATES updates."""

    fraction: float  # D_prune / D_pre
    updates: int

    @property
    def passed(self) -> bool:
        from bigsparse_lib.paper import TABLE4_PRUNING_FRACTION as f

        return bool(abs(self.fraction - f) <= FRACTION_TOLERANCE * f and self.updates >= MIN_MASK_UPDATES)

    @property
    def status(self) -> str:
        return status(self.passed)


def pruning_budget(D_pre: float, D_prune: float, updates: int) -> PruningBudget:
    return PruningBudget(float(D_prune) / float(D_pre), int(updates))


def table4_interval(t4: pd.DataFrame, boot, level: float = 0.95) -> pd.DataFrame:
    """Table 4 with the bootstrap interval of exc./inc. from the law: eq. 3 solved for D with every
    resample's law (`fit.Bootstrap`), columns exc_lo, exc_hi, inc_lo, inc_hi."""
    from bigsparse_lib.fit import percentile_interval

    out = t4.copy()
    for col in ("exc_lo", "exc_hi", "inc_lo", "inc_hi"):
        out[col] = np.nan
    for i, r in t4.iterrows():
        D = boot.samples(lambda l: data_to_match(l, r["sparsity"], r["nnz"], r["loss_pruned"]))
        exc = np.asarray(D, dtype=np.float64) / r["D_prune"]
        inc = inclusive_multiple(exc, r["D_prune"] / r["D_pre"])
        out.loc[i, ["exc_lo", "exc_hi"]] = percentile_interval(exc, level)
        out.loc[i, ["inc_lo", "inc_hi"]] = percentile_interval(inc, level)
    return out


@dataclass(frozen=True)
class Table4Claims:
    """Table 4's claims on one column pair (`exc_law`/`inc_law` or `exc_runs`/`inc_runs`):
    exc. > 1 at every (dense size, S); exc. falls with S for every dense size; inc. < 1 everywhere."""

    rows: pd.DataFrame = field(repr=False, compare=False)  # dense_nnz, sparsity, exc, inc

    def _measured(self) -> pd.DataFrame:
        # +inf is a measurement (the pruned loss is below the law's limit: no amount of data from scratch
        # reaches it, exc. = inc. = inf); NaN is not (no law, or no bracketing runs)
        return self.rows[~np.isnan(self.rows["exc"])]

    @property
    def exc_above_one(self) -> bool | None:
        m = self._measured()
        return None if m.empty else bool((m["exc"] > 1).all())

    @property
    def exc_falling(self) -> bool | None:
        m = self._measured()
        lines = [g.sort_values("sparsity")["exc"].to_numpy() for _, g in m.groupby("dense_nnz")]
        lines = [x for x in lines if x.size >= 2]
        return None if not lines else all(bool(np.all(np.diff(x) < 0)) for x in lines)

    @property
    def inc_below_one(self) -> bool | None:
        m = self._measured()
        return None if m.empty else bool((m["inc"] < 1).all())

    @property
    def passed(self) -> bool | None:
        parts = [p for p in (self.exc_above_one, self.exc_falling, self.inc_below_one) if p is not None]
        return None if not parts else all(parts)

    @property
    def status(self) -> str:
        return status(self.passed)


def table4_claims(t4: pd.DataFrame, source: str = "law") -> Table4Claims:
    """`t4`: `table4(...)`; `source`: "law" (the paper's way) or "runs" (interpolated from-scratch runs)."""
    exc, inc = f"exc_{source}", f"inc_{source}"
    if exc not in t4.columns:
        return Table4Claims(pd.DataFrame(columns=["dense_nnz", "sparsity", "exc", "inc"], dtype=float))
    return Table4Claims(t4[["dense_nnz", "sparsity", exc, inc]].set_axis(["dense_nnz", "sparsity", "exc", "inc"], axis=1)
                        .astype(float).reset_index(drop=True))
