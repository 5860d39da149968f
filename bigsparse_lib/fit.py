"""Robust multi-start fits of the scaling laws (§3.2, App. C), fixed-coefficient refits (§4.1), bootstrap.

The objective is the paper's (following Hoffmann et al., 2022): the *mean over points* of
the Huber loss of the residual r, with r = log(pred) - log(L) ("on log L") or r = pred - L.

How the fit differs from the authors' notebook (jaxpruner `sparsity-scaling.ipynb`):
- Units stay in the table (nnz, data); the data are centred internally (N / N0, D / D0 with
  N0, D0 the geometric means) so the optimiser sees coefficients of order one. No magic
  constants leak out: coefficients come back in the table's own units, as in Table 7.
- Positive coefficients (a_S, c_S, a_D, c; a_N for eq. 2) are fitted as logarithms, so BFGS
  is unconstrained and never visits a negative loss. Exponents are fitted as they are.
- 1000 random starts (not 25), run together: one `jax.vmap` of BFGS under one `jit`, in
  float64. We report how many starts reached the best optimum, a direct check that the
  optimum found is not a lucky local one.
- Bootstrap intervals for coefficients and for anything derived from them.

Internal parameterisation (theta), with n = N / N0, d = D / D0:
  eq. 3: L = exp(t_aS + b_S log(1-S) - b_N log n) + exp(t_cS - b_N log n) + exp(t_aD - b_D log d) + exp(t_c)
  eq. 2: L = exp(t_aN - b_N log n) + exp(t_aD - b_D log d) + exp(t_c)
with t_aS = log a_S - b_N log N0 ("prefactor" of N^-b_N), t_aN = b_N (log a_N - log N0) and
t_aD = b_D (log a_D - log D0) ("inside" the power), t_c = log c.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import dataclasses
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bigsparse_lib import bfgs
from bigsparse_lib.errors import InputError
from bigsparse_lib.law import DenseLaw, Law, SparseLaw
from bigsparse_lib.vocab import TIDY_COLUMNS

# Defaults of `bigsparse fit`: the paper's T5 setting (Huber delta 1e-3 on log L, as Hoffmann et al.).
DELTA = 1e-3
LOG = True
STARTS = 1000
SEED = 0
# A start "reached the best optimum" when its final objective is within this relative tolerance
# of the best start's. BFGS stops at a gradient tolerance, so equal optima agree to ~1e-9 here;
# 1e-6 leaves room for that and still separates distinct local optima.
BEST_RTOL = 1e-6
MAXITER = 200
MAX_THREADS = 4  # minimise() splits many starts over up to this many threads
MIN_CHUNK = 64
GTOL = 1e-8  # on the objective scaled by 1 / delta^2 (see `Model.scaled_objective`)


# --------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------
def huber(r, delta):
    """Standard Huber loss: 0.5 r^2 if |r| <= delta else delta (|r| - delta/2) (= scipy.special.huber).

    numpy in (float64, as `objective` reports it), numpy out; JAX in (the solver), JAX out."""
    xp = np if isinstance(r, (np.ndarray, np.generic, float)) else jnp
    a = xp.abs(r)
    return xp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def residuals(law: Law, S, N, D, L, log: bool = LOG):
    """r = log pred - log L (log=True) or pred - L, in numpy float64."""
    from bigsparse_lib.law import predict

    pred = np.asarray(predict(law, np.asarray(S, float), np.asarray(N, float), np.asarray(D, float)), float)
    L = np.asarray(L, float)
    return np.log(pred) - np.log(L) if log else pred - L


def objective(law: Law, S, N, D, L, delta: float = DELTA, log: bool = LOG) -> float:
    """The fit objective of a given law: mean over points of Huber(r, delta) (App. C's "error")."""
    return float(np.mean(huber(residuals(law, S, N, D, L, log), delta)))


# --------------------------------------------------------------------------------------
# Parameterisation: which coefficients are logs, and how they couple to the normalisers
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Coef:
    exponent: str | None = None  # the exponent it couples with through the normaliser (None: plain)
    axis: str | None = None  # "N" or "D": whose normaliser
    inside: bool = False  # (a / X)^b (inside) or a * X^-b (prefactor)
    is_exponent: bool = False


_SPARSE = {
    "a_S": _Coef("b_N", "N"), "b_S": _Coef(is_exponent=True), "c_S": _Coef("b_N", "N"),
    "b_N": _Coef(is_exponent=True), "a_D": _Coef("b_D", "D", inside=True), "b_D": _Coef(is_exponent=True),
    "c": _Coef(),
}
_DENSE = {
    "a_N": _Coef("b_N", "N", inside=True), "b_N": _Coef(is_exponent=True),
    "a_D": _Coef("b_D", "D", inside=True), "b_D": _Coef(is_exponent=True), "c": _Coef(),
}


def _spec(law_cls) -> dict[str, _Coef]:
    return _SPARSE if law_cls is SparseLaw else _DENSE


def _to_internal(law_cls, values: Mapping[str, object], exps: Mapping[str, object], log_x0: Mapping[str, float]):
    """Table-unit coefficients -> internal entries (works on floats or traced JAX values)."""
    out = {}
    for name, v in values.items():
        c = _spec(law_cls)[name]
        if c.is_exponent:
            out[name] = v
        elif c.exponent is None:
            out[name] = jnp.log(v)
        elif c.inside:
            out[name] = exps[c.exponent] * (jnp.log(v) - log_x0[c.axis])
        else:
            out[name] = jnp.log(v) - exps[c.exponent] * log_x0[c.axis]
    return out


def _to_table(law_cls, theta: np.ndarray, log_x0: Mapping[str, float]) -> dict[str, float]:
    """Internal vector (full, numpy) -> table-unit coefficients (arrays if theta is (n_coefs, B))."""
    t = dict(zip(law_cls.names, np.asarray(theta, float)))
    out = {}
    for name, c in _spec(law_cls).items():
        if c.is_exponent:
            out[name] = t[name]
        elif c.exponent is None:
            out[name] = np.exp(t[name])
        elif c.inside:
            out[name] = np.exp(t[name] / t[c.exponent] + log_x0[c.axis])
        else:
            out[name] = np.exp(t[name] + t[c.exponent] * log_x0[c.axis])
    return {k: float(v) if np.ndim(v) == 0 else np.asarray(v, float) for k, v in out.items()}


class Axis(NamedTuple):
    """One input of the law at the fit's points: its distinct values and a one-hot matrix
    (distinct, points) that spreads them to the points, or the values per point (at=None)."""

    values: np.ndarray
    at: np.ndarray | None


class FitData(NamedTuple):
    """What the compiled solver reads (`Problem.data`): the inputs in internal units, the losses,
    and the normalisers (log N0, log D0), which travel with the data so that one compiled solver
    serves every data set."""

    log1m_S: Axis
    log_n: Axis
    log_d: Axis
    L: np.ndarray
    log_x0: np.ndarray


def _pred(law_cls, t: Mapping[str, jnp.ndarray], data: "FitData"):
    """L of eq. 3 / eq. 2 in internal units.

    Sweeps are grids: few distinct S, N and D (T5: 4, 4 and 3 over 48 runs), so each power
    is computed once per distinct value and gathered; exp() is what the fit spends its time on.
    """
    spread = lambda values, axis: values if axis.at is None else values @ axis.at  # noqa: E731
    n_pow = spread(jnp.exp(-t["b_N"] * data.log_n.values), data.log_n)
    data_term = spread(jnp.exp(t["a_D"] - t["b_D"] * data.log_d.values), data.log_d) + jnp.exp(t["c"])
    if law_cls is SparseLaw:
        s_pow = spread(jnp.exp(t["a_S"] + t["b_S"] * data.log1m_S.values), data.log1m_S)
        return (s_pow + jnp.exp(t["c_S"])) * n_pow + data_term
    return jnp.exp(t["a_N"]) * n_pow + data_term


# --------------------------------------------------------------------------------------
# The problem: what is fitted (hashable, so its compiled solver is cached) and the data
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Model:
    """What is fitted: the law, which coefficients are free, the loss, the normalisers N0, D0."""

    law_cls: type
    free: tuple[str, ...]
    fixed: tuple[tuple[str, float], ...]
    delta: float
    log: bool
    log_x0: tuple[tuple[str, float], ...]

    @property
    def n_free(self) -> int:
        return len(self.free)

    def full(self, theta_free, log_x0: Mapping | None = None) -> dict:
        """Free internal vector (..., p) -> all internal entries, fixed ones resolved in internal units."""
        t = {n: theta_free[..., i] for i, n in enumerate(self.free)}
        fixed = dict(self.fixed)
        exps = {n: (t[n] if n in t else fixed[n]) for n, c in _spec(self.law_cls).items() if c.is_exponent}
        t.update(_to_internal(self.law_cls, fixed, exps, dict(self.log_x0) if log_x0 is None else log_x0))
        return t

    def huber_losses(self, theta_free, data):
        """Per-point Huber losses at one free internal vector (data: `Problem.data`)."""
        log_x0 = {"N": data.log_x0[0], "D": data.log_x0[1]}
        pred = _pred(self.law_cls, self.full(theta_free, log_x0), data)
        r = jnp.log(pred) - jnp.log(data.L) if self.log else pred - data.L
        return huber(r, self.delta)

    def scaled_objective(self, theta_free, weights, data):
        """Weighted mean Huber loss / delta^2: of order one near a fit, so one gradient tolerance fits every delta."""
        h = self.huber_losses(theta_free, data)
        return jnp.sum(weights * h) / jnp.sum(weights) / self.delta**2

    def law(self, theta_free) -> Law:
        """Free internal vector (p,) -> the law in table units."""
        with jax.enable_x64(True):
            t = self.full(jnp.asarray(theta_free, jnp.float64))
            full = np.array([float(t[n]) for n in self.law_cls.names])
        return self.law_cls.from_dict(_to_table(self.law_cls, full, dict(self.log_x0)))

    def theta_of(self, law: Law) -> np.ndarray:
        """A law's free internal vector (to start from it)."""
        vals = law.to_dict()
        with jax.enable_x64(True):
            t = _to_internal(self.law_cls, vals, vals, dict(self.log_x0))
            return np.array([float(t[n]) for n in self.free])


@dataclass(frozen=True)
class Problem:
    """A model and its points (S, N, D, L) in internal units. Build with `Problem.make`."""

    model: Model
    log1m_S: np.ndarray = field(repr=False)
    log_n: np.ndarray = field(repr=False)
    log_d: np.ndarray = field(repr=False)
    L: np.ndarray = field(repr=False)

    @staticmethod
    def make(S, N, D, L, *, dense: bool = False, delta: float = DELTA, log: bool = LOG,
             fix: Mapping[str, float] | None = None) -> "Problem":
        law_cls = DenseLaw if dense else SparseLaw
        kind = "dense law (eq. 2)" if dense else "sparse law (eq. 3)"
        fix = dict(fix or {})
        for name, v in fix.items():
            if name not in law_cls.names:
                raise InputError(f"unknown coefficient {name!r}; the {kind} has {', '.join(law_cls.names)}", arg="fix")
            if not np.isfinite(v):
                raise InputError(f"{name} must be a finite number, got {v}", arg="fix")
            if not _spec(law_cls)[name].is_exponent and v <= 0:
                raise InputError(f"{name} must be positive, got {v}", arg="fix")
        if not (np.isfinite(delta) and delta > 0):
            raise InputError(f"{{arg}} must be a positive number, got {delta}", arg="delta")
        S, N, D, L = (np.asarray(x, dtype=np.float64) for x in (S, N, D, L))
        if dense and np.any(S != 0):
            raise InputError("every sparsity must be 0 (eq. 2 has no S)", arg="dense")
        log_N, log_D = np.log(N), np.log(D)
        log_x0 = {"N": float(log_N.mean()), "D": float(log_D.mean())}
        model = Model(law_cls=law_cls, free=tuple(n for n in law_cls.names if n not in fix),
                      fixed=tuple((n, float(fix[n])) for n in law_cls.names if n in fix),
                      delta=float(delta), log=bool(log), log_x0=tuple(log_x0.items()))
        return Problem(model, np.log1p(-S), log_N - log_x0["N"], log_D - log_x0["D"], L)

    @property
    def n_points(self) -> int:
        return int(self.L.shape[0])

    @property
    def data(self) -> FitData:
        """The points as `FitData`: each input as distinct values and a one-hot spread (`Axis`).

        The one-hot matrices (distinct values, points) spread per-value powers to the points
        with a matrix product, which XLA runs faster than a gather when vmapped over starts.
        """
        out = []
        for v in (self.log1m_S, self.log_n, self.log_d):
            u, i = np.unique(v, return_inverse=True)
            if 2 * u.size > v.size:  # mostly distinct values: compute per point
                out.append(Axis(v, None))
            else:
                out.append(Axis(u, (i[None, :] == np.arange(u.size)[:, None]).astype(np.float64)))
        log_x0 = np.array([dict(self.model.log_x0)[a] for a in ("N", "D")])
        return FitData(*out, self.L, log_x0)


def random_starts(problem: Problem, k: int, seed: int = SEED) -> np.ndarray:
    """k starting points (k, p), uniform in a box of internal units.

    The data are centred, so each additive term at the centre of the data is of the order
    of the loss: we draw them log-uniformly between e^-6 and e^1 times the smallest loss,
    c between 5% and 100% of it, b_N and b_D in [0.05, 1.5] and b_S in [0, 3].
    """
    model = problem.model
    rng = np.random.default_rng(seed)
    log_Lmin = float(np.log(problem.L.min()))
    box = {}
    for name, c in _spec(model.law_cls).items():
        if name == "b_S":
            box[name] = (0.0, 3.0)
        elif c.is_exponent:
            box[name] = (0.05, 1.5)
        elif name == "c":
            box[name] = (log_Lmin + np.log(0.05), log_Lmin)
        else:
            box[name] = (log_Lmin - 6.0, log_Lmin + 1.0)
    lo = np.array([box[n][0] for n in model.free])
    hi = np.array([box[n][1] for n in model.free])
    return lo + (hi - lo) * rng.uniform(size=(k, model.n_free))


@functools.lru_cache(maxsize=16)
def _solver(model: Model, maxiter: int, gtol: float):
    """`bfgs.batched` on one model's scaled objective; cached, so a model compiles once."""
    return bfgs.batched(model.scaled_objective, maxiter, gtol)


def minimise(problem: Problem, theta0: np.ndarray, weights: np.ndarray | None = None, *,
             maxiter: int = MAXITER, gtol: float = GTOL):
    """Minimise from every row of theta0 (k, p), point weights per row (k, n) (default 1).

    Returns numpy arrays: final free vectors (k, p), objectives (k,) (weighted mean Huber
    loss; not finite ones become inf), converged flags (gradient below gtol), iterations.
    """
    theta0 = np.atleast_2d(np.asarray(theta0, np.float64))
    k = theta0.shape[0]
    if weights is None:
        weights = np.ones((k, problem.n_points))
    solver = _solver(dataclasses.replace(problem.model, log_x0=()), int(maxiter), float(gtol))

    def run(rows):
        with jax.enable_x64(True):
            out = solver(jnp.asarray(theta0[rows], jnp.float64), jnp.asarray(weights[rows], jnp.float64),
                         jax.tree.map(jnp.asarray, problem.data))
            # the solver minimises the objective scaled by 1/delta^2 (`Model.scaled_objective`)
            return [np.asarray(v) for v in out._replace(f=out.f * problem.model.delta**2)]

    # XLA runs the vmapped solver on one core; equal chunks in threads (JAX releases the GIL)
    # use the others (two per core measured faster than one: bench/fit.py). A start's path does not depend on the other starts (up to rounding in
    # the batched program).
    chunks = max(1, min(2 * (os.cpu_count() or 1), MAX_THREADS, k // MIN_CHUNK))
    if chunks == 1:
        x, f, ok, nit = run(np.arange(k))
    else:
        size = -(-k // chunks)
        rows = np.resize(np.arange(k), size * chunks).reshape(chunks, size)  # pad by repeating: one compile
        with ThreadPoolExecutor(chunks) as pool:
            parts = list(pool.map(run, rows))
        x, f, ok, nit = (np.concatenate([p[i] for p in parts])[:k] for i in range(4))
    f = np.where(np.isfinite(f) & np.all(np.isfinite(x), axis=-1), f, np.inf)
    return x, f, ok, nit


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FitResult:
    """The best optimum of a multi-start fit and how often the starts reached it."""

    law: Law
    objective: float  # mean Huber loss over points at `law`
    n_points: int
    starts: int
    converged_to_best: int  # starts whose final objective is within `rtol` (relative) of the best
    fixed: dict[str, float]
    delta: float
    log: bool
    rtol: float
    start_objectives: np.ndarray = field(repr=False)  # final objective of every start
    problem: Problem = field(repr=False)
    theta: np.ndarray = field(repr=False)  # best free internal vector

    def to_dict(self) -> dict:
        return {"coefs": self.law.to_dict(), "objective": self.objective, "n_points": self.n_points,
                "starts": self.starts, "converged_to_best": self.converged_to_best}


def _columns(table) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(table[c], dtype=np.float64) for c in TIDY_COLUMNS)


def fit(table, *, dense: bool = False, delta: float = DELTA, log: bool = LOG, starts: int = STARTS,
        seed: int = SEED, fix: Mapping[str, float] | None = None, maxiter: int = MAXITER,
        rtol: float = BEST_RTOL) -> FitResult:
    """Fit eq. 3 (or eq. 2 with dense=True) to a tidy table by multi-start BFGS on the mean Huber loss.

    `table`: anything indexable by the tidy columns sparsity, nnz, data, loss (a DataFrame).
    `fix`: coefficients kept at given values in table units, e.g. the dense base of §4.1 to
    refit only a_S, b_S, c_S. Returns the best optimum over `starts` seeded random starts.
    """
    S, N, D, L = _columns(table)
    problem = Problem.make(S, N, D, L, dense=dense, delta=delta, log=log, fix=fix)
    from bigsparse_lib.table import require_points

    require_points(problem.n_points, problem.model.n_free)
    if starts < 1:
        raise InputError(f"{{arg}} must be at least 1, got {starts}", arg="starts")
    x, f, _, _ = minimise(problem, random_starts(problem, starts, seed), maxiter=maxiter)
    if not np.isfinite(f).any():
        raise RuntimeError("every start diverged; check the data (or try --no-log / another --delta)")
    best = int(np.argmin(f))
    law = problem.model.law(x[best])
    n_best = int(np.sum(np.abs(f - f[best]) <= rtol * abs(f[best])))
    return FitResult(law=law, objective=objective(law, S, N, D, L, delta, log), n_points=problem.n_points,
                     starts=starts, converged_to_best=n_best, fixed=dict(problem.model.fixed), delta=delta,
                     log=log, rtol=rtol, start_objectives=f, problem=problem, theta=x[best])


# --------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------
GAIN_SPARSITIES = (0.5, 0.75, 0.875)  # Table 2


@dataclass(frozen=True)
class Bootstrap:
    """Coefficients refit on B resamples of the points (rows: resamples, in the law's `names` order)."""

    law_cls: type
    coefs: np.ndarray  # (B, n_coefs), table units
    objectives: np.ndarray  # (B,) weighted mean Huber loss on each resample
    seed: int

    @property
    def laws(self) -> list[Law]:
        return [self.law_cls(*row) for row in self.coefs]

    def samples(self, fn) -> np.ndarray:
        """fn(law) evaluated on every resample's law (vectorised: the law fields are (B,) arrays)."""
        return np.asarray(fn(self.law_cls(*self.coefs.T)), dtype=np.float64)


def bootstrap(result: FitResult, B: int, *, seed: int = SEED, extra_starts: int = 3, spread: float = 0.1,
              maxiter: int = MAXITER) -> Bootstrap:
    """Nonparametric bootstrap: refit on B resamples (points drawn with replacement, seeded).

    Each resample is refit from the full-data optimum and from `extra_starts` starts perturbed
    from it (Gaussian, `spread` in internal units); the best of them is kept. A resample is
    the multiplicity of each point, so all B x (1 + extra_starts) fits run in one vmapped call.
    """
    if B < 1:
        raise InputError(f"{{arg}} must be at least 1, got {B}", arg="bootstrap")
    problem, model = result.problem, result.problem.model
    rng = np.random.default_rng(seed)
    n = problem.n_points
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=B).astype(np.float64)  # (B, n)
    r = 1 + extra_starts
    theta0 = np.repeat(result.theta[None, :], B * r, axis=0)
    theta0 = theta0.reshape(B, r, -1)
    theta0[:, 1:, :] += spread * rng.standard_normal((B, extra_starts, model.n_free))
    x, f, _, _ = minimise(problem, theta0.reshape(B * r, -1), np.repeat(counts, r, axis=0), maxiter=maxiter)
    x, f = x.reshape(B, r, -1), f.reshape(B, r)
    best = np.argmin(f, axis=1)
    xb, fb = x[np.arange(B), best], f[np.arange(B), best]
    coefs = np.array([list(model.law(th).to_dict().values()) for th in xb])
    return Bootstrap(law_cls=model.law_cls, coefs=coefs, objectives=fb, seed=seed)


def percentile_interval(samples, level: float = 0.95) -> tuple[float, float]:
    """The (1-level)/2 and (1+level)/2 percentiles of finite samples (percentile bootstrap interval)."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(s, [50 * (1 - level), 50 * (1 + level)])
    return (float(lo), float(hi))


def derived(law: Law) -> dict[str, object]:
    """Quantities derived from a sparse law, as functions of the law (for point values and intervals).

    gain(S) at Table 2's sparsities (eq. 7), and the onset (`optimal.chinchilla_multiple`,
    compute multiple of the Chinchilla budget beyond which S is optimal, sparse costs).
    """
    from bigsparse_lib.law import gain
    from bigsparse_lib.optimal import chinchilla_multiple

    if not isinstance(law, SparseLaw):
        return {}
    out = {f"gain@{S:g}": (lambda l, S=S: gain(l, S)) for S in GAIN_SPARSITIES}
    for S in GAIN_SPARSITIES:
        out[f"onset@{S:g}"] = (lambda l, S=S: _onset(chinchilla_multiple, l, S))
    return out


def _onset(chinchilla_multiple, law, S):
    """Onset for one law or a vectorised law (fields are arrays): NaN where the closed form does not apply."""
    fields = {k: np.atleast_1d(np.asarray(getattr(law, k), float)) for k in law.names}
    B = max(v.size for v in fields.values())
    out = np.full(B, np.nan)
    for i in range(B):
        one = SparseLaw(**{k: float(v[i] if v.size > 1 else v[0]) for k, v in fields.items()})
        try:
            out[i] = float(chinchilla_multiple(one, S))
        except (ValueError, ArithmeticError):
            pass
    return out if np.ndim(law.a_S) else float(out[0])


def intervals(boot: Bootstrap, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every coefficient and every derived quantity."""
    out = {name: percentile_interval(boot.coefs[:, i], level) for i, name in enumerate(boot.law_cls.names)}
    for name, fn in derived(boot.law_cls(*boot.coefs[0])).items():
        out[name] = percentile_interval(boot.samples(fn), level)
    return out


def predictions(law: Law, points: Sequence[tuple[float, float, float]], boot: Bootstrap | None = None,
                level: float = 0.95) -> list[dict[str, float | None]]:
    """Predicted loss at user points (S, N, D), with bootstrap intervals when `boot` is given."""
    from bigsparse_lib.law import predict

    out = []
    for S, N, D in points:
        row = {"sparsity": float(S), "nnz": float(N), "data": float(D),
               "loss": float(predict(law, np.float64(S), np.float64(N), np.float64(D))), "lo": None, "hi": None}
        if boot is not None:
            row["lo"], row["hi"] = percentile_interval(boot.samples(lambda l: predict(l, S, N, D)), level)
        out.append(row)
    return out
