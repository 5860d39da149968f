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

import numpy as np
import pandas as pd

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
