"""Extrapolation error of a fitted law, measured on the data, and intervals that admit it.

The bootstrap (`fit.bootstrap`) says how well the data pin down the coefficients of eq. 3.
It says nothing about how wrong eq. 3 itself is outside the data, which is what a
prediction for a larger model or a longer run needs. This module measures that error on
the data themselves and widens the bootstrap interval by it.

1. **Held-out refits** (`held_out`). Refit with each size (distinct N) held out in turn,
   then with each length (distinct D) held out, and predict the held-out runs. Each held-out
   run gets its error r = log(pred / L), its distance outside the remaining data in log N
   and in log D (`outside`), and a bootstrap interval of the held-out refit (the same
   procedure as `fit.bootstrap`). Holding out an interior size or length measures
   interpolation (distance 0); the smallest/largest size and the shortest/longest length
   measure extrapolation by one grid step. Every refit is a fit of the full problem with
   weight 0 on the held-out rows, so all folds, their starts and their resamples run in one
   vmapped call each.

2. **Error model** (`error_model`). Model error grows with distance outside the data:
   its `level` quantile is  q(d_N, d_D) = k_N d_N + k_D d_D  (d in natural-log units).
   Each extrapolated held-out run j gives a score, the slope it needs to be covered:

       k_j = sqrt(max(0, r_j^2 - b_j^2 - (z sigma)^2)) / d_j

   where b_j is the held-out refit's bootstrap half-width (log units, on the side where the
   run lies), sigma the refit's robust in-sample scatter (1.4826 x median |residual|,
   corrected for the free coefficients) and z the normal quantile of `level`: the part
   of the error that neither the coefficients' spread nor the run's own scatter explains.
   k for an axis is the `level` quantile of its scores (`quantile`).

3. **Interval** (`interval`). In log units, each half of the bootstrap interval is
   combined in quadrature with q:  log(hi / pred) -> sqrt(log(hi / pred)^2 + q^2), and the same for lo.
   Inside the data's range (d = 0) the interval is the bootstrap interval; outside it
   widens in proportion to distance.

   For the loss one run will measure, add the full fit's scatter z sigma in quadrature too
   (`predictions` gives both): a single run scatters around the curve, inside the data too.

Assumptions, stated because the data cannot check them all:
- The extrapolation interval is for the expected loss at (S, N, D), the curve the law
  describes; run-to-run scatter is taken out of the scores and only the run interval adds it.
- The error of a fit at distance d beyond its data does not depend on where the data end:
  a refit on fewer sizes, extrapolating one grid step, stands for the full fit
  extrapolating d. (Refits see a narrower range, so this errs on the wide side.)
- Error grows linearly in log-distance, separately along N and D, and adds up when a
  point lies outside in both. A misspecification that bends (curvature in log N) makes
  error grow faster than linearly; far beyond the held-out distances the interval
  is then too narrow. `coverage` checks this on the data, tests/test_extrapolation.py on
  synthetic laws.
- Held-out runs of one fold share its refit, so their errors are correlated: the
  effective sample is the number of extrapolating folds (two per axis at most), not the
  number of runs. With so few, k is a calibration, not a guarantee.
- Errors are relative (log L), whatever the fit's own loss (log L or L).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bigsparse_lib import fit as F
from bigsparse_lib.law import predict

LEVEL = 0.95
AXES = ("N", "D")
FOLD_STARTS = 63  # random starts per held-out refit; with the full-data optimum, 64 per fold
RESAMPLES = 100  # bootstrap resamples per held-out refit


# --------------------------------------------------------------------------------------
# Distance outside the data
# --------------------------------------------------------------------------------------
def outside(N, D, data_N, data_D) -> tuple[np.ndarray, np.ndarray]:
    """How far (N, D) lie outside the data's range, in natural-log units (0 inside).

    d_N = max(0, log N - log max N_data, log min N_data - log N), over the data's N of every
    sparsity (eq. 3 shares b_N across S); the same for D. Both directions count: predicting a
    smaller model than any measured is extrapolation too.
    """
    out = []
    for x, data in ((N, data_N), (D, data_D)):
        lx = np.log(np.asarray(x, np.float64))
        ld = np.log(np.asarray(data, np.float64))
        out.append(np.maximum(0.0, np.maximum(lx - ld.max(), ld.min() - lx)))
    return out[0], out[1]


def refit_from(result: F.FitResult, law, *, maxiter: int = F.MAXITER) -> F.FitResult:
    """The local optimum of `result`'s problem reached from `law` (one start): to follow another basin.

    On T5 the paper's rounded Table 7 law lies in another basin than our best fit (b_S ~0.72
    against ~1.3); refitting from it finds that basin's own optimum on the same data.
    `fit.bootstrap(..., extra_starts=0)` and `held_out(..., starts=0)` then stay in it.
    """
    problem = result.problem
    x, f, _, _ = F.minimise(problem, problem.model.theta_of(law)[None, :], maxiter=maxiter)
    law = problem.model.law(x[0])
    S, N, D, L = columns(problem)
    return dataclasses.replace(result, law=law, objective=F.objective(law, S, N, D, L, result.delta, result.log),
                               starts=1, converged_to_best=1, start_objectives=f, theta=x[0])


# --------------------------------------------------------------------------------------
# Held-out refits
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeldOut:
    """Leave-one-size-out and leave-one-length-out refits of a fit, one row per held-out run.

    `runs` columns: axis ("N" or "D": what was held out), held (the held-out value), fold
    (its index in `laws`), sparsity, nnz, data, loss, pred (the refit's prediction),
    r = log(pred / loss), d_N, d_D (distance outside the remaining data), b_lo, b_hi
    (bootstrap half-widths of the refit's prediction, log units), sigma (the refit's
    in-sample scatter).
    """

    runs: pd.DataFrame = field(repr=False)
    laws: tuple  # the refit law of every fold
    level: float
    resamples: int

    @property
    def folds(self) -> pd.DataFrame:
        """One row per fold: axis, held value, runs, distance, mean and largest |r|."""
        g = self.runs.assign(abs_r=self.runs.r.abs(), d=self.runs.d_N + self.runs.d_D).groupby("fold")
        return pd.DataFrame({"axis": g.axis.first(), "held": g.held.first(), "runs": g.size(), "distance": g.d.max(),
                             "mean |r|": g.abs_r.mean(), "max |r|": g.abs_r.max(), "mean r": g.r.mean()})


def columns(problem: F.Problem):
    """The (S, N, D, L) columns of a fit's problem, in table units."""
    x0 = dict(problem.model.log_x0)
    S = -np.expm1(problem.log1m_S)
    return S, np.exp(problem.log_n + x0["N"]), np.exp(problem.log_d + x0["D"]), problem.L


def _minimise(problem: F.Problem, theta0: np.ndarray, weights: np.ndarray, maxiter: int):
    """`fit.minimise`, with the rows padded to a power of two (at least 64).

    The jitted solver compiles once per batch shape, and a compile costs more than the
    fits here; padding makes the refits and the resamples of any data set share a few shapes.
    """
    k = theta0.shape[0]
    size = max(64, 1 << (k - 1).bit_length())
    pad = np.arange(size) % k
    x, f, _, _ = F.minimise(problem, theta0[pad], weights[pad], maxiter=maxiter)
    return x[:k], f[:k]


def _laws(model: F.Model, thetas: np.ndarray, column: bool = False):
    """Free internal vectors (B, p) -> one law whose coefficients are (B,) arrays ((B, 1) with `column`)."""
    import jax
    import jax.numpy as jnp

    B = thetas.shape[0]
    with jax.enable_x64(True):
        t = model.full(jnp.asarray(thetas, jnp.float64))
        full = np.array([np.broadcast_to(np.asarray(t[n], float), (B,)) for n in model.law_cls.names])
    coefs = F._to_table(model.law_cls, full, dict(model.log_x0))
    return model.law_cls(**{k: (v[:, None] if column else v) for k, v in coefs.items()})


def _scatter(r: np.ndarray, n_free: int) -> float:
    """Robust scale of in-sample residuals: 1.4826 median |r| (the sd for normal errors), x sqrt(n / (n - p))."""
    n = r.size
    return float(1.4826 * np.median(np.abs(r)) * math.sqrt(n / max(n - n_free, 1)))


def held_out(result: F.FitResult, *, axes=AXES, starts: int = FOLD_STARTS, resamples: int = RESAMPLES,
             seed: int = F.SEED, level: float = LEVEL, extra_starts: int = 1, spread: float = 0.1,
             min_values: int = 3, maxiter: int = F.MAXITER) -> HeldOut:
    """Refit `result`'s problem with each distinct N (then D) held out; predict and bootstrap the held-out runs.

    Each refit starts from the full-data optimum and from `starts` seeded random starts
    (`starts=0` keeps every refit in the full fit's basin, e.g. to follow the paper's
    Table 7 basin). Its bootstrap follows `fit.bootstrap`: `resamples` resamples of the
    remaining points, each refit from the fold's optimum and `extra_starts` perturbed starts.
    A fold is skipped when fewer points remain than free coefficients, or fewer than
    `min_values` distinct values of the held-out axis: with two lengths left, c and the
    D-term of eq. 3 are not separately identified (two levels, three coefficients a_D,
    b_D, c), so the refit's extrapolation is arbitrary, not a measurement.
    """
    problem, model = result.problem, result.problem.model
    S, N, D, L = columns(problem)
    n, p = problem.n_points, model.n_free
    masks, meta = [], []
    for axis in axes:
        values = {"N": N, "D": D}[axis]
        keys = np.round(np.log(values), 9)
        for u in np.unique(keys):
            held = keys == u
            if (~held).sum() > p and np.unique(keys[~held]).size >= min_values:
                masks.append(held)
                meta.append((axis, float(values[held][0])))
    if not masks:
        return HeldOut(pd.DataFrame(), (), level, resamples)
    keep = ~np.array(masks)  # (folds, n): the rows each refit sees
    nf = len(masks)
    rng = np.random.default_rng(seed)

    # 1. refits: the full optimum plus random starts, for every fold at once
    theta0 = np.concatenate([result.theta[None, :], F.random_starts(problem, starts, seed)]) if starts else result.theta[None, :]
    r0 = theta0.shape[0]
    x, f = _minimise(problem, np.tile(theta0, (nf, 1)), np.repeat(keep.astype(float), r0, axis=0), maxiter)
    best = np.argmin(f.reshape(nf, r0), axis=1)
    thetas = x.reshape(nf, r0, -1)[np.arange(nf), best]
    laws = tuple(model.law(th) for th in thetas)

    # 2. bootstrap of every refit: multinomial counts over its remaining rows
    B, r1 = resamples, 1 + extra_starts
    counts = np.zeros((nf, B, n))
    for i in range(nf):
        rows = np.flatnonzero(keep[i])
        counts[i][:, rows] = rng.multinomial(rows.size, np.full(rows.size, 1.0 / rows.size), size=B)
    start = np.repeat(thetas[:, None, None, :], B, axis=1).repeat(r1, axis=2)  # (nf, B, r1, p)
    start[:, :, 1:, :] += spread * rng.standard_normal((nf, B, extra_starts, p))
    xb, fb = _minimise(problem, start.reshape(-1, p), np.repeat(counts.reshape(nf * B, n), r1, axis=0), maxiter)
    xb, fb = xb.reshape(nf * B, r1, p), fb.reshape(nf * B, r1)
    xb = xb[np.arange(nf * B), np.argmin(fb, axis=1)].reshape(nf, B, p)

    rows = []
    for i, (axis, value) in enumerate(meta):
        held = masks[i]
        S_h, N_h, D_h, L_h = S[held], N[held], D[held], L[held]
        pred = np.asarray(predict(laws[i], S_h, N_h, D_h), float)
        boot = np.asarray(predict(_laws(model, xb[i], column=True), S_h, N_h, D_h), float)  # (B, held-out runs)
        lo, hi = np.nanpercentile(boot, [50 * (1 - level), 50 * (1 + level)], axis=0)
        d_N, d_D = outside(N_h, D_h, N[~held], D[~held])
        res_in = F.residuals(laws[i], S[~held], N[~held], D[~held], L[~held], log=True)
        rows.append(pd.DataFrame({
            "axis": axis, "held": value, "fold": i, "sparsity": S_h, "nnz": N_h, "data": D_h, "loss": L_h,
            "pred": pred, "r": np.log(pred / L_h), "d_N": d_N, "d_D": d_D,
            "b_lo": np.maximum(0.0, np.log(pred / lo)), "b_hi": np.maximum(0.0, np.log(hi / pred)),
            "sigma": _scatter(res_in, p)}))
    return HeldOut(pd.concat(rows, ignore_index=True), laws, level, resamples)


# --------------------------------------------------------------------------------------
# Error model
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ErrorModel:
    """q(d_N, d_D) = k_N d_N + k_D d_D: the `level` quantile of model error (log units) at a distance.

    k is NaN for an axis without an extrapolating held-out fold (e.g. two sizes only): the
    data cannot say how error grows along it, and intervals outside along it are undefined.
    """

    k_N: float
    k_D: float
    level: float
    runs: tuple[int, int]  # extrapolated held-out runs behind k_N, k_D
    folds: tuple[int, int]  # and the folds they come from

    def q(self, d_N, d_D):
        d_N, d_D = np.asarray(d_N, float), np.asarray(d_D, float)
        # a zero distance needs no slope (0 * NaN would be NaN)
        term = lambda k, d: np.where(d > 0, k * d, 0.0)
        return term(self.k_N, d_N) + term(self.k_D, d_D)


def scores(runs: pd.DataFrame, level: float = LEVEL) -> np.ndarray:
    """Each held-out run's slope k_j (NaN where it is not outside the remaining data); see the module docstring."""
    z = _z(level)
    b = np.where(runs.r > 0, runs.b_lo, runs.b_hi)  # r > 0: the run lies below the prediction
    excess = np.sqrt(np.maximum(0.0, runs.r**2 - b**2 - (z * runs.sigma) ** 2))
    d = (runs.d_N + runs.d_D).to_numpy()
    return np.where(d > 0, excess / np.where(d > 0, d, 1.0), np.nan)


def _z(level: float) -> float:
    """The two-sided normal quantile of `level` (1.96 for 0.95)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


def quantile(s, level: float = LEVEL) -> float:
    """The `level` quantile of the finite scores, rounded up to a score (numpy's "higher"); NaN if none.

    Not split conformal's ceil((n+1) level)-th smallest: that finite-sample correction
    assumes exchangeable scores, and the runs of one fold share its refit, so it would not
    make the level exact; it would only make k the largest score for n < 39, letting one
    run's scatter set the slope.
    """
    s = np.asarray(s, float)
    s = s[np.isfinite(s)]
    return float(np.quantile(s, level, method="higher")) if s.size else float("nan")


def error_model(held: HeldOut, level: float = LEVEL, exclude_fold: int | None = None) -> ErrorModel:
    """Fit q = k_N d_N + k_D d_D to the held-out runs (all folds, or all but `exclude_fold`)."""
    runs = held.runs if exclude_fold is None else held.runs[held.runs.fold != exclude_fold]
    s = scores(runs, level) if len(runs) else np.array([])
    k, nruns, nfolds = {}, {}, {}
    for axis in AXES:
        sel = np.isfinite(s) & (runs.axis == axis).to_numpy() if len(runs) else np.array([], bool)
        k[axis] = quantile(s[sel], level)
        nruns[axis] = int(sel.sum())
        nfolds[axis] = int(runs.fold[sel].nunique()) if len(runs) else 0
    return ErrorModel(k["N"], k["D"], level, (nruns["N"], nruns["D"]), (nfolds["N"], nfolds["D"]))


# --------------------------------------------------------------------------------------
# Intervals
# --------------------------------------------------------------------------------------
def interval(pred, lo, hi, d_N, d_D, model: ErrorModel, scatter: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The extrapolation interval: each half of [lo, hi] around pred, in log units, in quadrature with q(d).

    `scatter` (log units, e.g. z sigma) is added in quadrature too: the interval for one
    run's measured loss rather than for the law's curve. It contains [lo, hi] exactly: with
    q = 0 the round trip through log and exp can land an ulp inside it (seen on one CPU).
    """
    pred, lo, hi = (np.asarray(v, float) for v in (pred, lo, hi))
    q = np.hypot(model.q(d_N, d_D), scatter)
    b_lo = np.maximum(0.0, np.log(pred / lo))
    b_hi = np.maximum(0.0, np.log(hi / pred))
    return np.minimum(lo, pred * np.exp(-np.hypot(b_lo, q))), np.maximum(hi, pred * np.exp(np.hypot(b_hi, q)))


def bootstrap_interval(boot: F.Bootstrap, S, N, D, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of the bootstrap laws' predictions at points (S, N, D) (arrays)."""
    S, N, D = (np.atleast_1d(np.asarray(v, float)) for v in (S, N, D))
    laws = boot.law_cls(*boot.coefs.T[:, :, None])  # fields (B, 1) broadcast against the points
    preds = np.asarray(predict(laws, S, N, D), float)
    return tuple(np.nanpercentile(preds, [50 * (1 - level), 50 * (1 + level)], axis=0))


@dataclass(frozen=True)
class Prediction:
    """Predicted loss at points, with the parameter-only and the extrapolation interval."""

    frame: pd.DataFrame  # sparsity, nnz, data, loss, lo, hi, ext_lo, ext_hi, run_lo, run_hi, d_N, d_D
    model: ErrorModel
    sigma: float  # the full fit's in-sample scatter (log units), behind run_lo, run_hi


def predictions(result: F.FitResult, boot: F.Bootstrap, model: ErrorModel, S, N, D,
                level: float = LEVEL) -> Prediction:
    """The full-data fit's predictions at (S, N, D): the bootstrap interval (lo, hi), the
    extrapolation interval for the law's curve (ext_lo, ext_hi), and the same for one run's
    measured loss (run_lo, run_hi: plus the fit's in-sample scatter z sigma in quadrature,
    which a single run shows around the curve, inside the data as well as outside).
    """
    S, N, D = (np.atleast_1d(np.asarray(v, float)) for v in (S, N, D))
    data_S, data_N, data_D, data_L = columns(result.problem)
    pred = np.asarray(predict(result.law, S, N, D), float)
    lo, hi = bootstrap_interval(boot, S, N, D, level)
    d_N, d_D = outside(N, D, data_N, data_D)
    ext_lo, ext_hi = interval(pred, lo, hi, d_N, d_D, model)
    sigma = _scatter(F.residuals(result.law, data_S, data_N, data_D, data_L, log=True), result.problem.model.n_free)
    run_lo, run_hi = interval(pred, lo, hi, d_N, d_D, model, scatter=_z(level) * sigma)
    return Prediction(pd.DataFrame({"sparsity": S, "nnz": N, "data": D, "loss": pred, "lo": lo, "hi": hi,
                                    "ext_lo": ext_lo, "ext_hi": ext_hi, "run_lo": run_lo, "run_hi": run_hi,
                                    "d_N": d_N, "d_D": d_D}), model, sigma)


def extrapolate(result: F.FitResult, S, N, D, *, resamples: int = RESAMPLES, starts: int = FOLD_STARTS,
                seed: int = F.SEED, level: float = LEVEL, boot: F.Bootstrap | None = None) -> Prediction:
    """All of it in one call: bootstrap (unless given), held-out refits, error model, intervals at (S, N, D)."""
    boot = boot if boot is not None else F.bootstrap(result, resamples, seed=seed)
    held = held_out(result, starts=starts, resamples=resamples, seed=seed, level=level)
    return predictions(result, boot, error_model(held, level), S, N, D, level)


# --------------------------------------------------------------------------------------
# Coverage on the data's own held-out tests
# --------------------------------------------------------------------------------------
COVER_TOL = 16 * np.finfo(float).eps  # log units: rounding, not a miss (`coverage`)


def coverage(held: HeldOut, level: float = LEVEL) -> pd.DataFrame:
    """Did the intervals of each held-out refit cover its held-out runs? One row per run.

    For fold f the error model is fitted to the *other* folds (leave-one-fold-out), so no
    run is judged by a slope it set. The runs are measured losses, so here both intervals
    include the refit's scatter (z sigma) in quadrature; "param" is the bootstrap alone
    (with scatter), "extrap" adds q(d). Columns: fold, axis, held, d (= d_N + d_D),
    r, param, extrap (booleans), k (the slope used).
    """
    runs = held.runs
    z = _z(level)
    # A residual at rounding level is a hit: on data that the law fits exactly, every band has
    # width 0 and the residuals are a few float64 eps of either sign, depending on the CPU.
    out = []
    for fold, g in runs.groupby("fold"):
        m = error_model(held, level, exclude_fold=fold)
        q = m.q(g.d_N, g.d_D)
        b = np.where(g.r > 0, g.b_lo, g.b_hi)
        noise = z * g.sigma.to_numpy()
        param = np.abs(g.r) <= np.hypot(b, noise) + COVER_TOL
        extrap = np.abs(g.r) <= np.sqrt(b**2 + noise**2 + q**2) + COVER_TOL
        k = m.k_N if g.axis.iloc[0] == "N" else m.k_D
        out.append(pd.DataFrame({"fold": fold, "axis": g.axis, "held": g.held, "d": g.d_N + g.d_D, "r": g.r,
                                 "param": param, "extrap": extrap, "k": k}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()
