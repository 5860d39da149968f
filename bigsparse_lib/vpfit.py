"""The certified fit: variable projection over the exponents, an exhaustive grid, then local refinement.

How it relates to the random-start fit (`fit.fit`). Both minimise the same objective, the
mean Huber loss of the residuals (on log L or on L; App. C). `fit.fit` runs BFGS from many
random starts in all seven coefficients of eq. 3 and reports how many starts agree: evidence,
not proof, that the best one is global. Here the problem is cut down first. For fixed
exponents, every law this module knows is *linear* in its non-negative coefficients; eq. 3,
with n = N/N0 and d = D/D0 centred (as in `fit.py`), is

    L = A (1-S)^b_S n^-b_N + C_S n^-b_N + B d^-b_D + c,   A, C_S, B, c >= 0,

so at each exponent vector theta = (b_S, b_N, b_D) the best coefficients can be computed
(the "inner" problem), leaving a 3-dimensional profile phi(theta) = min_w objective(theta, w)
(variable projection; Golub & Pereyra 1973). With Huber on L the inner problem is a convex,
non-negative Huber regression; with Huber on log L it is solved by Gauss-Newton from the
linear least-squares solution (relative residuals), as the issue asks. Then:

1. phi is evaluated on a full grid of exponents over a box (`Form.box`); every cell is
   computed, so every basin wider than a cell shows up as a local minimum of the grid;
2. the lowest grid minima are refined by BFGS on phi (gradient by the envelope theorem:
   d phi / d theta = d objective / d theta at the inner optimum);
3. refined optima that coincide are merged; the distinct ones within `within` times the best
   objective are reported: the landscape, not just its lowest point.

The result is global *to the grid's resolution in the box*: a basin narrower than a grid
cell, or outside the box, can be missed. The box is the random-start box of `fit.py`
(b_S in [0, 3], the other exponents in [0.05, 1.5]), and the tests check that the grid
finds what 10,000 random starts find.

Inner solver (vectorised over grid cells with `jax.vmap`, float64): projected Newton on the
non-negative coefficients (columns scaled to unit RMS), with Gauss-Newton curvature, a tiny
curvature for points in the Huber tails (so the Newton system stays positive definite) and
the batched Armijo line search of `bfgs.batched` (all trial steps at once).
"""
from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from bigsparse_lib.compilecache import enable_compilation_cache
from bigsparse_lib.errors import InputError
from bigsparse_lib.fit import DELTA, LOG

TRIAL_STEPS = 4.0 ** -np.arange(6)  # Newton steps: the full step is usually taken
ARMIJO = 1e-4
LS_ITERS = 6  # projected Newton on the linear least-squares start (exact in one step per active set)
HUBER_ITERS = 20  # projected (Gauss-)Newton on the Huber objective from the linear start
WARM_ITERS = 12  # inner iterations when warm-started during refinement
TAIL_CURVATURE = 1e-3  # curvature given to a point in the Huber tail, relative to delta / |r|
PAD = 64  # points are padded (with weight 0) to a multiple of this: one compiled shape per form
BATCH = 256  # exponent vectors per vmapped call: every call has this shape, so the solver compiles once
RESOLUTION = 21  # grid points per exponent axis (default of `bigsparse fit --method grid`)
REFINE = 24  # grid minima refined
WITHIN = 2.0  # report distinct optima with objective <= WITHIN * best
REFINE_ITERS = 100
REFINE_STEPS = 3.0 ** -np.arange(10)  # BFGS line search on the profile, as bfgs.batched
REFINE_GTOL = 1e-9  # on the gradient of objective / delta^2 in the exponents


# --------------------------------------------------------------------------------------
# Forms: a law that is linear in its coefficients for fixed exponents
# --------------------------------------------------------------------------------------
class Form:
    """A law L = X(theta) @ w with w >= 0 (`columns`), its exponent box and its table-unit coefficients.

    Subclasses define `features(table)` (numpy arrays, centred logs), `columns(theta, feats)`
    (JAX, (n, m)), `coefs(theta, w, feats)` (table units) and `predict(coefs, table)`.
    Instances are module-level singletons, so they key the compiled-solver cache.
    """

    name: str = ""
    exponents: tuple[str, ...] = ()
    box: tuple[tuple[float, float], ...] = ()
    description: str = ""

    def check(self, table) -> None:
        """Raise InputError when the table lacks what the form needs (default: nothing)."""

    def n_params(self, feats) -> int:
        return len(self.exponents) + self.n_linear(feats)

    def n_linear(self, feats) -> int:
        raise NotImplementedError

    def features(self, table) -> dict:
        raise NotImplementedError

    def columns(self, theta, feats):
        raise NotImplementedError

    def coefs(self, theta, w, feats) -> dict:
        raise NotImplementedError

    def predict(self, coefs: Mapping[str, float], table) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self):
        return f"<form {self.name}>"


def tidy(table) -> tuple[np.ndarray, ...]:
    """(S, N, D, L) as float64 arrays from a tidy table."""
    return tuple(np.asarray(table[c], dtype=np.float64) for c in ("sparsity", "nnz", "data", "loss"))


def centred_log(x: np.ndarray) -> tuple[np.ndarray, float]:
    """log x minus its mean, and the mean (the log of the geometric-mean normaliser N0 or D0)."""
    lx = np.log(x)
    return lx - lx.mean(), float(lx.mean())


class Eq3(Form):
    """Eq. 3 (§3.2): L = (a_S (1-S)^b_S + c_S) N^-b_N + (a_D / D)^b_D + c, N = non-zeros."""

    name = "eq3"
    exponents = ("b_S", "b_N", "b_D")
    box = ((0.0, 3.0), (0.05, 1.5), (0.05, 1.5))
    description = "eq. 3 (Frantar et al., 2024)"

    def check(self, table):
        lv = np.unique(np.asarray(table["sparsity"], dtype=np.float64))
        if lv.size < 2:
            raise InputError(f"form 'eq3' needs at least two sparsity levels (b_S is not identified by one); the "
                             f"table has only sparsity {lv[0]:g} (use --form dense, or --dense for S = 0 runs)")

    def n_linear(self, feats):
        return 4

    def features(self, table):
        S, N, D, _ = tidy(table)
        log_n, log_N0 = centred_log(N)
        log_d, log_D0 = centred_log(D)
        return {"log_u": np.log1p(-S), "log_n": log_n, "log_d": log_d, "log_N0": log_N0, "log_D0": log_D0}

    def columns(self, theta, f):
        b_S, b_N, b_D = theta[0], theta[1], theta[2]
        n_pow = jnp.exp(-b_N * f["log_n"])
        return jnp.stack([jnp.exp(b_S * f["log_u"]) * n_pow, n_pow, jnp.exp(-b_D * f["log_d"]),
                          jnp.ones_like(n_pow)], axis=-1)

    def coefs(self, theta, w, f):
        b_S, b_N, b_D = (float(t) for t in theta)
        A, C, B, c = (float(x) for x in w)
        return {"a_S": A * math.exp(b_N * f["log_N0"]), "b_S": b_S, "c_S": C * math.exp(b_N * f["log_N0"]),
                "b_N": b_N, "a_D": _inside(B, b_D, f["log_D0"]), "b_D": b_D, "c": c}

    def predict(self, coefs, table):
        from bigsparse_lib.law import SparseLaw

        S, N, D, _ = tidy(table)
        return np.asarray(SparseLaw.from_dict(coefs).loss(S, N, D), float)


def _inside(B: float, b: float, log_x0: float) -> float:
    """B d^-b = (a / D)^b with d = D / D0: a = B^(1/b) D0 (0 when the term is absent)."""
    return math.exp(math.log(B) / b + log_x0) if B > 0 else 0.0


class Eq2(Form):
    """Eq. 2, the dense law L = (a_N / N)^b_N + (a_D / D)^b_D + c, on a parameter count `n_of(table)`.

    With the non-zeros as N this is the null model "ignore S" (it needs no S = 0 rows).
    """

    name = "dense"
    exponents = ("b_N", "b_D")
    box = ((0.05, 1.5), (0.05, 1.5))
    description = "eq. 2 on the non-zeros N, ignoring S"

    def n_of(self, table) -> np.ndarray:
        return np.asarray(table["nnz"], dtype=np.float64)

    def n_linear(self, feats):
        return 3

    def features(self, table):
        _, _, D, _ = tidy(table)
        log_n, log_N0 = centred_log(self.n_of(table))
        log_d, log_D0 = centred_log(D)
        return {"log_n": log_n, "log_d": log_d, "log_N0": log_N0, "log_D0": log_D0}

    def columns(self, theta, f):
        b_N, b_D = theta[0], theta[1]
        n_pow = jnp.exp(-b_N * f["log_n"])
        return jnp.stack([n_pow, jnp.exp(-b_D * f["log_d"]), jnp.ones_like(n_pow)], axis=-1)

    def coefs(self, theta, w, f):
        b_N, b_D = (float(t) for t in theta)
        A, B, c = (float(x) for x in w)
        return {"a_N": _inside(A, b_N, f["log_N0"]), "b_N": b_N, "a_D": _inside(B, b_D, f["log_D0"]),
                "b_D": b_D, "c": c}

    def predict(self, coefs, table):
        from bigsparse_lib.law import DenseLaw

        _, _, D, _ = tidy(table)
        return np.asarray(DenseLaw.from_dict(coefs).loss(self.n_of(table), D), float)


EQ3, EQ2 = Eq3(), Eq2()


# --------------------------------------------------------------------------------------
# The inner problem: non-negative Huber regression at fixed exponents
# --------------------------------------------------------------------------------------
def _loss_parts(Xs, w, L, weights, delta, log, ls):
    """Objective, gradient and (Gauss-Newton) curvature in w for pred = Xs @ w.

    ls (traced bool): least squares on (pred - L) / L for log fits, on pred - L otherwise (the
    linear start); else the Huber objective on log L (log) or L.
    """
    pred = Xs @ w
    safe = jnp.maximum(pred, 1e-300)
    if log:
        rel = ls  # the linear start of a log fit: relative residuals
        r = jnp.where(rel, (pred - L) / L, jnp.log(safe) - jnp.log(L))
        J = Xs / jnp.where(rel, L, safe)[:, None]
    else:
        r, J = pred - L, Xs
    a = jnp.abs(r)
    inside = ls | (a <= delta)
    h = jnp.where(inside, 0.5 * r * r, delta * (a - 0.5 * delta))
    psi = jnp.where(ls, r, jnp.clip(r, -delta, delta))
    q = jnp.where(inside, 1.0, TAIL_CURVATURE * delta / jnp.maximum(a, delta))
    W = jnp.sum(weights)
    f = jnp.where(jnp.all((pred > 0) | (weights == 0)) | ls, jnp.sum(weights * h) / W, jnp.inf)
    g = J.T @ (weights * psi) / W
    H = (J * (weights * q)[:, None]).T @ J / W
    return f, g, H


def _value(Xs, w, L, weights, delta, log, ls):
    return _loss_parts(Xs, w, L, weights, delta, log, ls)[0]


def _projected_newton(Xs, w, L, weights, delta, log, n_ls, iters):
    """`iters` steps of projected Newton for min f(w) s.t. w >= 0 (Bertsekas, 1982), the first n_ls on the linear start.

    One loop body for both phases (the phase is a traced flag): half the program to compile.
    """
    m = w.shape[0]
    eye = jnp.eye(m)
    steps = jnp.asarray(TRIAL_STEPS)

    def body(i, w):
        ls = i < n_ls
        f, g, H = _loss_parts(Xs, w, L, weights, delta, log, ls)
        binding = (w <= 0.0) & (g > 0.0)  # at the bound and pushed into it: held at 0 this step
        free = ~binding
        Hf = jnp.where(free[:, None] & free[None, :], H, 0.0) + jnp.where(binding, 1.0, 0.0) * eye
        Hf = Hf + 1e-12 * (jnp.trace(H) / m + 1e-300) * eye
        d = -jnp.linalg.solve(Hf, jnp.where(free, g, 0.0))
        ws = jnp.maximum(w[None, :] + steps[:, None] * d[None, :], 0.0)
        fs = jax.vmap(lambda v: _value(Xs, v, L, weights, delta, log, ls))(ws)
        ok = jnp.isfinite(fs) & (fs <= f + ARMIJO * ((ws - w[None, :]) @ g))
        j = jnp.argmax(ok)
        w_new = jnp.where(ok[j] & (fs[j] < f), ws[j], w)
        # leaving the linear start: if it ended at w = 0 (no positive fit), restart from the entry point
        return jnp.where((i == n_ls - 1) & jnp.all(w_new == 0), w, w_new)

    return jax.lax.fori_loop(0, iters, body, w)


def _inner(form: Form, log: bool, theta, w0, feats, L, weights, delta, warm):
    """Best non-negative coefficients w (unscaled) at exponents theta, the objective there, and its gradient in theta.

    Cold (warm = False): from equal shares, LS_ITERS steps on the linear least-squares problem,
    then HUBER_ITERS on the Huber objective. Warm: WARM_ITERS Huber steps from w0. The
    gradient in theta is the envelope theorem's: the partial derivative at the inner optimum.
    """
    X = form.columns(theta, feats)
    scale = jnp.sqrt(jnp.mean(X * X, axis=0)) + 1e-300
    Xs = X / scale
    equal = jnp.full(X.shape[1], jnp.mean(L) / X.shape[1])
    w = jnp.where(warm, w0 * scale, equal)
    n_ls = jnp.where(warm, 0, LS_ITERS)
    w = _projected_newton(Xs, w, L, weights, delta, log, n_ls, n_ls + jnp.where(warm, WARM_ITERS, HUBER_ITERS))
    w = w / scale
    f, g = jax.value_and_grad(
        lambda t: _value(form.columns(t, feats), jax.lax.stop_gradient(w), L, weights, delta, log, False))(theta)
    return f, g, w


@functools.lru_cache(maxsize=32)
def _solver(form: Form, log: bool):
    """jit(vmap) of the inner solve: (thetas (G, k), w0 (G, m), warm, feats, L, weights, delta) -> (f, grad, w).

    One compiled program serves the grid (cold) and the refinement (warm).
    """
    one = lambda th, w0, warm, feats, L, wts, delta: _inner(form, log, th, w0, feats, L, wts, delta, warm)
    enable_compilation_cache()  # as bfgs.batched: the compile is most of a small fit's time
    return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None, None, None)))


def _padded(form: Form, table, weights):
    """Features, L and weights padded to a multiple of PAD points with weight 0.

    Tables of 32, 36 or 48 points (a sweep, its held-out refits) then share one compiled
    solver; a padded point has no weight, so it changes neither objective nor gradient.
    """
    feats = form.features(table)
    L = tidy(table)[3]
    weights = np.ones_like(L) if weights is None else np.asarray(weights, np.float64)
    n = L.size
    extra = -n % PAD
    pad = lambda v: np.concatenate([v, np.zeros((extra,) + v.shape[1:])]) if extra else v
    feats = {k: (pad(v) if isinstance(v, np.ndarray) else v) for k, v in feats.items()}
    return feats, np.concatenate([L, np.ones(extra)]), pad(weights)


def _jnp_feats(feats: Mapping) -> dict:
    return {k: jnp.asarray(v, jnp.float64) for k, v in feats.items() if isinstance(v, np.ndarray)}


def _batched(form: Form, log: bool, thetas, w0, warm: bool, table, delta, weights):
    """The inner solve at every row of thetas, in batches of BATCH rows (padded): one compiled shape for all calls.

    Batches run in threads: XLA runs one vmapped call on one core (as `fit.minimise`).
    """
    feats, L, weights = _padded(form, table, weights)
    solver = _solver(form, bool(log))
    G, k = thetas.shape
    n_batches = -(-G // BATCH)
    rows = np.resize(np.arange(G), n_batches * BATCH).reshape(n_batches, BATCH)

    def run(idx):
        with jax.enable_x64(True):
            out = solver(jnp.asarray(thetas[idx]), jnp.asarray(w0[idx]), warm, _jnp_feats(feats), jnp.asarray(L),
                         jnp.asarray(weights), jnp.float64(delta))
            return [np.array(v) for v in out]

    if n_batches == 1:
        parts = [run(rows[0])]
    else:
        with ThreadPoolExecutor(min(n_batches, 4)) as pool:
            parts = list(pool.map(run, rows))
    f, g, w = (np.concatenate([p[i] for p in parts])[:G] for i in range(3))
    return np.where(np.isfinite(f), f, np.inf), g, w


def profile(form: Form, thetas, table, *, delta: float = DELTA, log: bool = LOG, weights=None):
    """phi(theta) = min over w >= 0 of the objective, at every row of thetas (G, k): (objectives (G,), w (G, m))."""
    thetas = np.atleast_2d(np.asarray(thetas, np.float64))
    w0 = np.zeros((thetas.shape[0], form.n_linear(form.features(table))))
    f, _, w = _batched(form, log, thetas, w0, False, table, delta, weights)
    return f, w


# --------------------------------------------------------------------------------------
# Refinement: BFGS on the profile, vectorised over basins (numpy outer loop, JAX inner solves)
# --------------------------------------------------------------------------------------
def refine(form: Form, theta0, w0, table, *, delta: float = DELTA, log: bool = LOG, weights=None,
           maxiter: int = REFINE_ITERS, gtol: float = REFINE_GTOL):
    """BFGS on phi from each row of theta0 (K, k), inner solves warm-started: (theta (K, k), f (K,), w (K, m))."""
    scale = 1.0 / delta**2  # gradient tolerance on objective / delta^2, as in fit.py

    def evaluate(th, w):
        f, g, w = _batched(form, log, th, w, True, table, delta, weights)
        return f * scale, g * scale, w

    theta = np.atleast_2d(np.asarray(theta0, np.float64)).copy()
    K, k = theta.shape
    f, g, w = evaluate(theta, np.asarray(w0, np.float64))
    H = np.repeat(np.eye(k)[None], K, axis=0) * 1e-3  # first steps: short steepest descent
    done = np.linalg.norm(g, axis=1) < gtol
    steps = REFINE_STEPS
    T = steps.size
    for _ in range(maxiter):
        if done.all():
            break
        d = -np.einsum("kij,kj->ki", H, g)
        bad = np.einsum("ki,ki->k", d, g) >= 0
        d[bad] = -1e-3 * g[bad]
        trial = theta[:, None, :] + steps[None, :, None] * d[:, None, :]  # (K, T, k)
        ft, gt, wt = evaluate(trial.reshape(K * T, k), np.repeat(w, T, axis=0))
        ft, gt, wt = ft.reshape(K, T), gt.reshape(K, T, k), wt.reshape(K, T, -1)
        ok = ft <= f[:, None] + ARMIJO * steps[None, :] * np.einsum("ki,ki->k", g, d)[:, None]
        ok &= ~done[:, None]
        j = np.argmax(ok, axis=1)
        take = ok[np.arange(K), j]
        for i in np.flatnonzero(take):
            s = trial[i, j[i]] - theta[i]
            y = gt[i, j[i]] - g[i]
            sy = s @ y
            if sy > 1e-12 * np.sqrt((s @ s) * (y @ y)):
                if np.allclose(H[i], 1e-3 * np.eye(k)):
                    H[i] = sy / (y @ y) * np.eye(k)
                rho = 1.0 / sy
                V = np.eye(k) - rho * np.outer(s, y)
                H[i] = V @ H[i] @ V.T + rho * np.outer(s, s)
            theta[i], f[i], g[i], w[i] = trial[i, j[i]], ft[i, j[i]], gt[i, j[i]], wt[i, j[i]]
        stuck = ~take & ~done
        reset = stuck & ~np.all(np.isclose(H, 1e-3 * np.eye(k)), axis=(1, 2))
        H[reset] = 1e-3 * np.eye(k)  # a failed step with a learned H: retry as steepest descent
        done |= (np.linalg.norm(g, axis=1) < gtol) | (stuck & ~reset)
    return theta, f / scale, w


# --------------------------------------------------------------------------------------
# The certified fit
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Optimum:
    """One refined local optimum: its objective, exponents, coefficients (table units)."""

    objective: float
    theta: tuple[float, ...]
    coefs: dict
    cells: int  # grid minima whose refinement ended here

    def to_dict(self) -> dict:
        return {"objective": self.objective, "coefs": self.coefs, "cells": self.cells}


@dataclass(frozen=True)
class GridFit:
    """The result of `certified_fit`: the best optimum, the distinct optima, and the grid."""

    form: Form
    coefs: dict  # table units, of the best optimum
    objective: float
    n_points: int
    n_params: int
    optima: tuple[Optimum, ...]  # distinct refined optima within `within` x best, best first
    axes: tuple[np.ndarray, ...] = field(repr=False)  # grid values of each exponent
    grid: np.ndarray = field(repr=False)  # profile objective on the grid, shape (len(ax) for ax in axes)
    grid_minima: int  # local minima of the grid (cells lower than or equal to every neighbour)
    delta: float
    log: bool
    within: float

    @property
    def grid_best(self) -> float:
        return float(np.min(self.grid))

    def to_dict(self) -> dict:
        return {"form": self.form.name, "coefs": self.coefs, "objective": self.objective,
                "n_points": self.n_points, "n_params": self.n_params,
                "grid": {"exponents": list(self.form.exponents), "shape": list(self.grid.shape),
                         "box": [[float(a[0]), float(a[-1])] for a in self.axes], "best_cell": self.grid_best,
                         "local_minima": self.grid_minima},
                "optima": [o.to_dict() for o in self.optima], "within": self.within}


def grid_minima(grid: np.ndarray) -> np.ndarray:
    """Flat indices of the cells <= every neighbour (3^k - 1 of them, fewer at the edges), lowest first."""
    g = np.where(np.isfinite(grid), grid, np.inf)
    padded = np.pad(g, 1, constant_values=np.inf)
    is_min = np.isfinite(g)
    k = g.ndim
    for shift in np.ndindex(*(3,) * k):
        if all(s == 1 for s in shift):
            continue
        view = padded[tuple(slice(s, s + n) for s, n in zip(shift, g.shape))]
        is_min &= g <= view
    idx = np.flatnonzero(is_min)
    return idx[np.argsort(g.ravel()[idx])]


def certified_fit(table, form: Form = EQ3, *, delta: float = DELTA, log: bool = LOG,
                  resolution: int | tuple[int, ...] = RESOLUTION, refine_top: int = REFINE,
                  within: float = WITHIN, weights=None) -> GridFit:
    """Fit `form` to a tidy table by an exhaustive grid over its exponents, then BFGS from the grid's minima.

    `resolution`: grid points per exponent axis (one number or one per axis). `refine_top`:
    how many of the lowest grid minima (and, to fill up, the lowest other cells) are refined.
    Returns the best optimum and every distinct refined optimum with objective <= within x best.
    """
    if not (np.isfinite(delta) and delta > 0):
        raise InputError(f"{{arg}} must be a positive number, got {delta}", arg="delta")
    form.check(table)
    feats = form.features(table)
    n = len(tidy(table)[3])
    p = form.n_params(feats)
    from bigsparse_lib.table import require_points

    require_points(n, p)
    res = (resolution,) * len(form.exponents) if np.ndim(resolution) == 0 else tuple(resolution)
    if len(res) != len(form.exponents) or min(res) < 2:
        raise InputError(f"need at least 2 grid points on each of {', '.join(form.exponents)}", arg="resolution")
    axes = tuple(np.linspace(lo, hi, r) for (lo, hi), r in zip(form.box, res))
    thetas = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))
    f, w = profile(form, thetas, table, delta=delta, log=log, weights=weights)
    grid = f.reshape(res)
    minima = grid_minima(grid)
    chosen = list(minima[:refine_top])
    if not chosen:
        raise RuntimeError("the profile is not finite anywhere on the grid; check the data")
    theta_r, f_r, w_r = refine(form, thetas[chosen], w[chosen], table, delta=delta, log=log, weights=weights)
    spacing = np.array([(hi - lo) / (r - 1) for (lo, hi), r in zip(form.box, res)])
    optima = _distinct(form, theta_r, f_r, w_r, feats, spacing)
    best = optima[0]
    kept = tuple(o for o in optima if o.objective <= within * best.objective)
    objective = _check_objective(form, best.coefs, table, delta, log, weights)
    return GridFit(form=form, coefs=best.coefs, objective=objective, n_points=n, n_params=p, optima=kept,
                   axes=axes, grid=grid, grid_minima=int(minima.size), delta=delta, log=log, within=within)


def _distinct(form, theta, f, w, feats, spacing) -> list[Optimum]:
    """Merge refined optima closer than a quarter grid cell in every exponent; best first."""
    order = np.argsort(f)
    groups: list[list[int]] = []
    for i in order:
        if not np.isfinite(f[i]):
            continue
        for grp in groups:
            if np.all(np.abs(theta[i] - theta[grp[0]]) <= 0.25 * spacing):
                grp.append(i)
                break
        else:
            groups.append([i])
    return [Optimum(objective=float(f[g[0]]), theta=tuple(float(t) for t in theta[g[0]]),
                    coefs=form.coefs(theta[g[0]], w[g[0]], feats), cells=len(g)) for g in groups]


def _check_objective(form, coefs, table, delta, log, weights) -> float:
    """The objective recomputed from the table-unit coefficients (numpy): what a reader would get."""
    L = tidy(table)[3]
    pred = form.predict(coefs, table)
    r = np.log(pred) - np.log(L) if log else pred - L
    a = np.abs(r)
    h = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
    wts = np.ones_like(L) if weights is None else np.asarray(weights, float)
    return float(np.sum(wts * h) / np.sum(wts))


def to_fit_result(gf: GridFit, table, *, maxiter: int = 200):
    """A `fit.FitResult` at the grid optimum of eq. 3 (or eq. 2 on S = 0 data), polished by `fit.minimise`.

    It lets `fit.bootstrap`, `fit.intervals` and `fit.predictions` work on a certified fit.
    Coefficients at the bound 0 are nudged to a tiny positive value (the random-start fit
    works with their logarithms); the polish keeps whichever of the two is lower.
    """
    from bigsparse_lib import fit as F
    from bigsparse_lib.law import DenseLaw, SparseLaw

    if gf.form is not EQ3 and gf.form is not EQ2:
        raise ValueError(f"to_fit_result needs eq. 3 or eq. 2, got {gf.form.name}")
    dense = gf.form is EQ2
    S, N, D, L = tidy(table)
    problem = F.Problem.make(S, N, D, L, dense=dense, delta=gf.delta, log=gf.log)
    coefs = dict(gf.coefs)
    # a zero coefficient has no logarithm: a value far below every other term instead
    tiny = {k: (1e-30 if k in ("a_S", "c_S", "c") else 1e-30 * np.exp(np.log(D).mean()) if k == "a_D" else 1e-30)
            for k in coefs}
    coefs = {k: (v if v > 0 or k.startswith("b_") else tiny[k]) for k, v in coefs.items()}
    law = (DenseLaw if dense else SparseLaw).from_dict(coefs)
    theta0 = problem.model.theta_of(law)
    x, f, _, _ = F.minimise(problem, theta0[None, :], maxiter=maxiter)
    polished = problem.model.law(x[0]) if np.isfinite(f[0]) else law
    obj = F.objective(polished, S, N, D, L, gf.delta, gf.log)
    if not obj <= gf.objective * (1 + 1e-12):
        polished, obj, x = law, F.objective(law, S, N, D, L, gf.delta, gf.log), theta0[None, :]
    return F.FitResult(law=polished, objective=obj, n_points=problem.n_points, starts=1, converged_to_best=1,
                       fixed={}, delta=gf.delta, log=gf.log, rtol=F.BEST_RTOL, start_objectives=np.array([obj]),
                       problem=problem, theta=np.asarray(x[0]))


def near_optimal(gf: GridFit, table, factor: float = 1.05) -> list[dict]:
    """Coefficients (table units) of every grid cell whose profile objective is within `factor` of the best optimum.

    The cells of nearly equal fit: how far a derived quantity (a gain, an onset) can move
    without the data objecting, to the grid's resolution. The refined optima are included.
    """
    thetas = np.stack(np.meshgrid(*gf.axes, indexing="ij"), axis=-1).reshape(-1, len(gf.axes))
    keep = gf.grid.ravel() <= factor * gf.objective
    f, w = profile(gf.form, thetas[keep], table, delta=gf.delta, log=gf.log) if keep.any() else ([], [])
    feats = gf.form.features(table)
    out = [{"objective": float(fi), **gf.form.coefs(th, wi, feats)} for th, fi, wi in zip(thetas[keep], f, w)]
    return out + [{"objective": o.objective, **o.coefs} for o in gf.optima if o.objective <= factor * gf.objective]
