r"""Optimal sparsity S_opt(N, C) (§3.3, App. D): eq. 5 and eq. 6 derived, checked and corrected.

Definitions (§3.3). N = non-zero parameters, C = training FLOPs, S = sparsity in [0, 1).
A model with final sparsity S costs C = 6 N D c_mul(S), so a budget C buys it
D_S = (C / 6N) / c_mul(S) of data (`law.data_for_compute`). Write D_0 = C / 6N (the data
the budget buys a dense model of size N) and u = 1 - S. S_opt(N, C) minimises
L(S, N, D_S) over S in [0, 1).

Cost models. Every pruning schedule of `schedule.py` has S_t = S * g(t), so the mean
density of the trained model is 1 - kS with k = ∫ g dt, and

    c_mul(S) = (1 - kS) / (1 - S) = k + (1 - k) / u,      c'_mul(S) = (1 - k) / u^2.

Dense costs (§3.3 (a), c_mul = 1/(1-S)) are k = 0. The paper's cubic 25%->75% schedule
has k = 0.5 * 0.75 + 0.25 = 0.625, and eq. 4 is the same function written differently:
(0.25 + 0.5 (1 - 0.75 S)) / (1 - S) + 0.25 = 0.625 + 0.375 / (1 - S).

Derivation of eq. 5. With A = a_S N^(-b_N) and B = (a_D / D_0)^b_D, the part of
L(S, N, D_S) that depends on S is

    f(S) = A u^b_S + B c_mul(S)^b_D          (c_S N^-b_N and c do not depend on S)

    f'(S) = -a_S b_S u^(b_S-1) N^(-b_N) + b_D a_D^b_D (c'_mul / c_mul) (D_0 / c_mul)^(-b_D),

so the stationary points satisfy (eq. 5, corrected)

    b_D * a_D^b_D * (c'_mul(S) / c_mul(S)) * D_S^(-b_D) = a_S b_S (1 - S)^(b_S - 1) N^(-b_N),   D_S = D_0 / c_mul(S).

Erratum in eq. 5 as printed, "a_D b_D (c'_mul/c_mul) (D_S/c_mul(S))^(-b_D)":
  (1) the factor a_D must be a_D^b_D, because the data term of eq. 1 is (a_D/D)^b_D. It
      matters: a_D^b_D / a_D is 1/8.4 for ViT and 1/1.2e7 for T5 (Table 7).
  (2) (D_S / c_mul(S))^(-b_D) is right only if "D_S" there means C/6N (our D_0); with the
      paper's own definition D_S = (C/6N)/c_mul(S), two lines above, the factor is D_S^(-b_D).
The paper's onset numbers (§3.3, "<2x, <3x, ≈5x, ≈70x") follow from the corrected form
(see `chinchilla_multiple`), so (1)-(2) are typos in the printed equation, not in the
authors' computation.

Minimum, uniqueness and the boundary S = 0. Multiply f'(u) (derivative in u) by
u^2 / c_mul^(b_D-1) > 0:

    sign f'(u) = sign( A b_S g(u) - B b_D (1 - k) ),   g(u) = u^(b_S+b_D) (k u + 1 - k)^(1-b_D).

For a_S, b_S, a_D, b_D > 0 and 0 <= k < 1, g is strictly increasing on (0, 1]
(d log g / du = (b_S+b_D)/u + (1-b_D) k/(ku+1-k) >= (b_S+1)/u > 0, using k/(ku+1-k) <= 1/u),
and g -> 0 as u -> 0. So f falls and then rises: the stationary point is the unique
minimum, never a maximum, and f -> infinity as S -> 1 when k < 1. As g(1) = 1,

    S_opt = 0   exactly when   a_S b_S N^(-b_N) <= b_D (1 - k) (a_D / D_0)^b_D,

i.e. when C is at or below the S = 0 contour (`contour_compute(law, 0, N)`): too little
compute per parameter makes dense training optimal. (With k = 1, sparsity is free
during training and f decreases all the way to S -> 1; there is no optimum.)

Eq. 6, dense costs (k = 0). Then g(u) = u^(b_S+b_D) and eq. 5 solves in closed form:

    S_opt(N, C) = max{ 1 - exp([log(b_D a_D^b_D / (a_S b_S)) + b_N log N] / (b_D + b_S)) * (C/6N)^(-b_D/(b_D+b_S)), 0 }.

Erratum in eq. 6 as printed, "max{1 - exp([log(b_N a_D b_D/(a_S b_S)) + b_N log N]/(b_D+b_S)), (C/6N)^(-b_D/(b_D+b_S)), 0}":
  (3) the factor b_N inside the log does not belong there (no b_N arises from d/dS);
  (4) a_D must be a_D^b_D, as in (1);
  (5) the comma before (C/6N)^(...) must be a product inside "1 - exp(...) * (...)": a
      maximum of three terms would make S_opt >= (C/6N)^(-b_D/(b_D+b_S)) > 0 always;
  (6) the text says eq. 6 comes from "solving (4) for S"; it is eq. (5).
`s_opt_eq6_as_printed` evaluates the printed form (comma read as a product) for comparison.

Sparse costs (k > 0). Eq. 5 has no closed form in S; in x = log u it reads
phi(x) = (b_S+b_D) x + (1-b_D) log(k e^x + 1 - k) - R = 0 with
R = log(b_D (1-k) / (a_S b_S)) + b_D log(a_D / D_0) + b_N log N. phi is increasing, and
since log(k e^x + 1 - k) lies in [log(1-k), 0] for x <= 0 the root lies between
R/(b_S+b_D) and (R - (1-b_D) log(1-k))/(b_S+b_D): a guaranteed bracket for a vectorised
root finder (`s_opt_eq5`). It is, however, explicit in D: solving eq. 5 for D_S gives the
contour on which S is optimal (`contour_data`, `contour_compute`):

    D_S = a_D [ b_D (c'_mul/c_mul) N^b_N / (a_S b_S (1-S)^(b_S-1)) ]^(1/b_D),   C = 6 N D_S c_mul(S).

Chinchilla line and the onset. The dense compute-optimal model minimises L(0, N, C/6N):
N_opt(C) = (b_N (a_S+c_S) / (b_D a_D^b_D))^(1/(b_N+b_D)) (C/6)^(b_D/(b_N+b_D)), or, at fixed
N, D_chin(N) = (b_D a_D^b_D / (b_N (a_S+c_S)))^(1/b_D) N^(b_N/b_D). Contours and the
Chinchilla line both have D ∝ N^(b_N/b_D) (the paper's "D_S = O(N^(b_N/b_D))"), so they
are parallel in the log (N, C) plane and the ratio

    C_S(N) / C_chin(N) = c_mul(S) [ (c'_mul/c_mul) b_N (a_S + c_S) / (a_S b_S (1-S)^(b_S-1)) ]^(1/b_D)

does not depend on N. This *compute multiple at fixed N* (same cost model for the
contour and the budget) is the definition that reproduces all four §3.3 statements with
Table 7: 50% sparsity becomes optimal at 1.68x (ViT) and 2.44x (T5) the Chinchilla
compute for sparse FLOPs ("<2x", "<3x"), and at 4.82x and 70.2x for dense FLOPs ("≈5x",
"≈70x"). The token multiple D_S/D_chin(N) gives 1.22x, 1.77x, 2.41x, 35.1x: it fits the
two sparse-FLOP statements but not the dense ones; mixing cost models (dense-cost contour,
budget counted with eq. 4) gives 3.31x and 48.2x, which fits neither. The match is robust:
moving every Table 7 coefficient by half a unit of its last printed digit (all 32 corner
combinations of a_S, b_S, c_S, b_N, b_D; a_D cancels, c does not enter) keeps the four
multiples within 1.669-1.682, 2.369-2.505, 4.796-4.836 and 67.7-72.7. The multiple is a
ratio, so it does not care that "C" for ViT counts images rather than tokens.

Two consequences the chapter can quote: with sparse FLOPs a sparse model is optimal even
on the Chinchilla line (S_opt > 0 from 0.42x (ViT) and 0.024x (T5) the Chinchilla budget;
on the line itself S_opt = 0.35 and 0.43), as §3.3 remarks; with dense FLOPs the dense
model stays optimal up to 1.27x (ViT) and 2.98x (T5) the Chinchilla budget.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import elementwise

from bigsparse_lib.law import (
    FLOPS_PER_PARAM_TOKEN,
    DenseLaw,
    SparseLaw,
    cost_multiplier,
    data_for_compute,
    sparse_loss,
)
from bigsparse_lib.schedule import PAPER_SCHEDULE, GradualSchedule

COSTS = ("dense", "sparse")

# Search grid of the numerical minimiser, in x = log(1 - S). x > 0 (S < 0) is the smooth
# continuation of the loss past the boundary; it gives the refinement a valid bracket
# when the optimum is S = 0 or just above it. x = -35 is S = 1 - 6e-16.
_X_GRID = np.arange(-35.0, 0.5 + 1e-9, 0.25)
_CHUNK = 8192  # points per block of the grid search, to bound memory on large (N, C) grids


# --------------------------------------------------------------------------------------
# Cost model helpers
# --------------------------------------------------------------------------------------
def mean_sparsity_fraction(cost: str = "sparse", schedule: GradualSchedule = PAPER_SCHEDULE) -> float:
    """k with c_mul(S) = k + (1 - k)/(1 - S): 0 for dense costs, ∫ S_t/S dt for a schedule (0.625 for eq. 4)."""
    if cost == "dense":
        return 0.0
    if cost == "sparse":
        return float(1.0 - schedule.density_integral(1.0))
    cost_multiplier(0.0, cost)  # raises the standard error for an unknown cost
    raise AssertionError("unreachable")


def c_mul_slope(S, cost: str = "sparse", schedule: GradualSchedule = PAPER_SCHEDULE):
    """c'_mul(S) = (1 - k) / (1 - S)^2, the derivative of `law.cost_multiplier` in S."""
    k = mean_sparsity_fraction(cost, schedule)
    return (1.0 - k) / (1.0 - np.asarray(S, dtype=float)) ** 2


def _log_cmul_ratio(u, k):
    """log(c'_mul / c_mul) = log((1 - k) / (u (k u + 1 - k)))."""
    return np.log1p(-k) - np.log(u) - np.log(k * u + 1.0 - k)


def _sparse_law(law) -> SparseLaw:
    if not isinstance(law, SparseLaw):
        raise TypeError(f"optimal sparsity needs a SparseLaw (eq. 1), got {type(law).__name__}")
    return law


def _check_closed_form(law: SparseLaw, k: float) -> None:
    bad = [n for n in ("a_S", "b_S", "a_D", "b_D") if not getattr(law, n) > 0]
    if bad:
        raise ValueError(f"the closed forms of eq. 5/6 need positive {', '.join(bad)}; use s_opt (numerical)")
    if not 0.0 <= k < 1.0:
        raise ValueError(f"the cost model has k = {k}; eq. 5 has a root only for 0 <= k < 1")


def _positive_arrays(N, C):
    N, C = np.broadcast_arrays(np.asarray(N, dtype=float), np.asarray(C, dtype=float))
    if not (np.all(N > 0) and np.all(C > 0)):  # also rejects NaN
        raise ValueError("N and C must be positive numbers")
    return N, C


def _scalar_or_array(x: np.ndarray):
    return x[()] if x.ndim == 0 else x


# --------------------------------------------------------------------------------------
# S_opt
# --------------------------------------------------------------------------------------
def loss_for_compute(law: SparseLaw, S, N, C, cost: str = "sparse", schedule: GradualSchedule = PAPER_SCHEDULE,
                     flops_per_token: float = FLOPS_PER_PARAM_TOKEN):
    """L(S, N, D_S) with D_S = (C / (flops_per_token N)) / c_mul(S): the loss a budget C buys an S-sparse model (§3.3, Fig. 5)."""
    return sparse_loss(law, S, N, data_for_compute(C, N, S, cost, schedule, flops_per_token))


def _s_dependent_loss(x, N, C, law, cost, schedule, flops_per_token):
    """L(S, N, D_S) minus the terms free of S (c_S N^-b_N and c), at S = 1 - e^x.

    Dropping the constants keeps the objective well conditioned: near the minimum L is
    flat, and a large constant c would swamp its variation in float64.
    """
    S = -np.expm1(x)
    return sparse_loss(law.replace(c_S=0.0, c=0.0), S, N, data_for_compute(C, N, S, cost, schedule, flops_per_token))


def s_opt(law: SparseLaw, N, C, cost: str = "sparse", schedule: GradualSchedule = PAPER_SCHEDULE,
          flops_per_token: float = FLOPS_PER_PARAM_TOKEN):
    """S_opt(N, C) by direct numerical minimisation of L(S, N, D_S) over S in [0, 1) (§3.3).

    Vectorised over any broadcastable N and C. For each point a grid search over
    x = log(1 - S) (145 points, S up to 1 - 6e-16) finds the best bracket, then
    Chandrupatla's method (`scipy.optimize.elementwise.find_minimum`) refines it to
    ~1e-12 in x. It uses no derivative and no closed form, only `law.sparse_loss` and
    `law.data_for_compute` (so any schedule's c_mul), which makes it the reference
    the closed forms are tested against. Returns a float for scalar inputs.
    """
    law = _sparse_law(law)
    mean_sparsity_fraction(cost, schedule)  # validates `cost`
    N, C = _positive_arrays(N, C)
    n, c = N.ravel(), C.ravel()
    x_best = np.empty(n.size)
    G = _X_GRID.size
    for lo in range(0, n.size, _CHUNK):
        nb, cb = n[lo:lo + _CHUNK], c[lo:lo + _CHUNK]
        f = _s_dependent_loss(_X_GRID[None, :], nb[:, None], cb[:, None], law, cost, schedule, flops_per_token)
        i = np.argmin(f, axis=1)
        j = np.clip(i, 1, G - 2)
        res = elementwise.find_minimum(
            lambda x, nn, cc: _s_dependent_loss(x, nn, cc, law, cost, schedule, flops_per_token),
            (_X_GRID[j - 1], _X_GRID[j], _X_GRID[j + 1]), args=(nb, cb),
            tolerances=dict(xatol=1e-13, xrtol=1e-13), maxiter=200,
        )
        # The grid's end points have no bracket: x = -35 means S_opt -> 1 (reported as
        # 1 - 6e-16); the S < 0 end means the optimum is the boundary S = 0.
        interior = (i > 0) & (i < G - 1) & res.success
        x_best[lo:lo + _CHUNK] = np.where(interior, res.x, _X_GRID[i])
    S = np.maximum(0.0, -np.expm1(x_best))  # minimum at S < 0 on the continuation -> boundary S = 0
    return _scalar_or_array(S.reshape(N.shape))


def s_opt_eq6(law: SparseLaw, N, C, flops_per_token: float = FLOPS_PER_PARAM_TOKEN):
    """Eq. 6 (corrected; see the module docstring): S_opt for dense costs c_mul = 1/(1-S).

    S_opt = max{1 - exp([log(b_D a_D^b_D / (a_S b_S)) + b_N log N] / (b_D+b_S)) (C/6N)^(-b_D/(b_D+b_S)), 0}.
    """
    law = _sparse_law(law)
    _check_closed_form(law, 0.0)
    N, C = _positive_arrays(N, C)
    log_u = (np.log(law.b_D / (law.a_S * law.b_S)) + law.b_D * np.log(law.a_D) + law.b_N * np.log(N)
             - law.b_D * np.log(C / (flops_per_token * N))) / (law.b_D + law.b_S)
    return _scalar_or_array(np.maximum(0.0, -np.expm1(log_u)))


def s_opt_eq6_as_printed(law: SparseLaw, N, C, flops_per_token: float = FLOPS_PER_PARAM_TOKEN):
    """Eq. 6 exactly as printed, reading its comma as a product (the only reading that gives a sparsity).

    Kept to show the erratum beside the corrected `s_opt_eq6`; do not use.
    """
    law = _sparse_law(law)
    N, C = _positive_arrays(N, C)
    inner = (np.log(law.b_N * law.a_D * law.b_D / (law.a_S * law.b_S)) + law.b_N * np.log(N)) / (law.b_D + law.b_S)
    value = 1.0 - np.exp(inner) * (C / (flops_per_token * N)) ** (-law.b_D / (law.b_D + law.b_S))
    return _scalar_or_array(np.maximum(0.0, value))


def s_opt_eq5(law: SparseLaw, N, C, cost: str = "sparse", schedule: GradualSchedule = PAPER_SCHEDULE,
              flops_per_token: float = FLOPS_PER_PARAM_TOKEN):
    """S_opt as the root of the corrected eq. 5, for dense or sparse costs (vectorised).

    Solves phi(x) = (b_S+b_D) x + (1-b_D) log(k_c e^x + 1 - k_c) - R = 0 for x = log(1-S)
    in its guaranteed bracket (module docstring) with Chandrupatla's method
    (`scipy.optimize.elementwise.find_root`, a vectorised brentq); S = 0 where R >= 0.
    For dense costs (k_c = 0) phi is linear and this is eq. 6.
    """
    law = _sparse_law(law)
    kc = mean_sparsity_fraction(cost, schedule)
    _check_closed_form(law, kc)
    N, C = _positive_arrays(N, C)
    a_S, b_S, b_N, a_D, b_D = law.a_S, law.b_S, law.b_N, law.a_D, law.b_D
    R = np.log(b_D * (1.0 - kc) / (a_S * b_S)) + b_D * np.log(a_D / (C / (flops_per_token * N))) + b_N * np.log(N)

    def phi(x, R):
        return (b_S + b_D) * x + (1.0 - b_D) * np.log(kc * np.exp(x) + 1.0 - kc) - R

    R_in = np.minimum(R, 0.0)  # R >= 0 is the boundary S = 0; the bracket below holds for roots x <= 0
    x1, x2 = R_in / (b_S + b_D), (R_in - (1.0 - b_D) * np.log1p(-kc)) / (b_S + b_D)
    lo, hi = np.minimum(x1, x2) - 1.0, np.maximum(x1, x2) + 1.0
    res = elementwise.find_root(phi, (lo, hi), args=(R_in,), tolerances=dict(xatol=1e-14, xrtol=1e-14))
    if not np.all(res.success):
        raise FloatingPointError("eq. 5 root finding did not converge")  # cannot happen for a valid bracket
    S = np.where(R >= 0.0, 0.0, np.maximum(0.0, -np.expm1(res.x)))
    return _scalar_or_array(S)


# --------------------------------------------------------------------------------------
# Contours S_opt = const (eq. 5 solved for D), Chinchilla line, onset
# --------------------------------------------------------------------------------------
def contour_data(law: SparseLaw, S, N, cost: str = "sparse", schedule: GradualSchedule = PAPER_SCHEDULE):
    """D_S on the contour S_opt(N, C) = S: eq. 5 (corrected) solved for D_S.

    D_S = a_D [b_D (c'_mul/c_mul) N^b_N / (a_S b_S (1-S)^(b_S-1))]^(1/b_D). For S = 0 this is
    the boundary: with less data (compute) than this, S_opt = 0.
    """
    law = _sparse_law(law)
    kc = mean_sparsity_fraction(cost, schedule)
    _check_closed_form(law, kc)
    u = 1.0 - np.asarray(S, dtype=float)
    N = np.asarray(N, dtype=float)
    log_D = np.log(law.a_D) + (np.log(law.b_D / (law.a_S * law.b_S)) + _log_cmul_ratio(u, kc)
                               + law.b_N * np.log(N) - (law.b_S - 1.0) * np.log(u)) / law.b_D
    return _scalar_or_array(np.exp(log_D))


def contour_compute(law: SparseLaw, S, N, cost: str = "sparse", schedule: GradualSchedule = PAPER_SCHEDULE,
                    flops_per_token: float = FLOPS_PER_PARAM_TOKEN):
    """C on the contour S_opt(N, C) = S (Fig. 1 right, Fig. 4): C = 6 N D_S c_mul(S)."""
    D_S = contour_data(law, S, N, cost, schedule)
    return _scalar_or_array(np.asarray(flops_per_token * np.asarray(N, dtype=float) * D_S * cost_multiplier(
        np.asarray(S, dtype=float), cost, schedule)))


def _dense_law(law) -> DenseLaw:
    return law.dense() if isinstance(law, SparseLaw) else law


def chinchilla_nnz(law: SparseLaw | DenseLaw, C, flops_per_token: float = FLOPS_PER_PARAM_TOKEN):
    """N_opt(C): the dense model size minimising L(0, N, C/6N) (Hoffmann et al., 2022).

    N_opt = (b_N A / (b_D B))^(1/(b_N+b_D)) (C/6)^(b_D/(b_N+b_D)), A = a_N^b_N = a_S + c_S, B = a_D^b_D.
    """
    d = _dense_law(law)
    C = np.asarray(C, dtype=float)
    log_N = (np.log(d.b_N / d.b_D) + d.b_N * np.log(d.a_N) - d.b_D * np.log(d.a_D)
             + d.b_D * np.log(C / flops_per_token)) / (d.b_N + d.b_D)
    return _scalar_or_array(np.exp(log_N))


def chinchilla_data(law: SparseLaw | DenseLaw, C, flops_per_token: float = FLOPS_PER_PARAM_TOKEN):
    """D_opt(C) = (C/6) / N_opt(C), the data of the dense compute-optimal model."""
    return _scalar_or_array(np.asarray(C, dtype=float) / flops_per_token / chinchilla_nnz(law, C, flops_per_token))


def chinchilla_compute(law: SparseLaw | DenseLaw, N, flops_per_token: float = FLOPS_PER_PARAM_TOKEN):
    """C_chin(N): the budget for which a dense model of size N is compute-optimal (the inverse of N_opt).

    C_chin = 6 N D_chin(N), D_chin(N) = (b_D B / (b_N A))^(1/b_D) N^(b_N/b_D).
    """
    d = _dense_law(law)
    N = np.asarray(N, dtype=float)
    log_D = (np.log(d.b_D / d.b_N) + d.b_D * np.log(d.a_D) - d.b_N * np.log(d.a_N) + d.b_N * np.log(N)) / d.b_D
    return _scalar_or_array(flops_per_token * N * np.exp(log_D))


def chinchilla_multiple(law: SparseLaw, S, cost: str = "sparse", schedule: GradualSchedule = PAPER_SCHEDULE,
                        measure: str = "compute"):
    """The onset: how many times the Chinchilla-optimal budget makes sparsity S optimal (§3.3).

    measure="compute" (default, the definition that reproduces the paper's four statements):
    C_S(N) / C_chin(N) at fixed N, where C_S(N) = `contour_compute` with the same cost
    model. Beyond this multiple S_opt > S. measure="data": D_S(N) / D_chin(N), the ratio
    of the data actually seen (= compute multiple / c_mul(S)). Both are independent of N.
    """
    law = _sparse_law(law)
    kc = mean_sparsity_fraction(cost, schedule)
    _check_closed_form(law, kc)
    if measure not in ("compute", "data"):
        raise ValueError(f"measure must be 'compute' or 'data', got {measure!r}")
    u = 1.0 - np.asarray(S, dtype=float)
    log_ratio = (_log_cmul_ratio(u, kc) + np.log(law.b_N * (law.a_S + law.c_S) / (law.a_S * law.b_S))
                 - (law.b_S - 1.0) * np.log(u)) / law.b_D
    if measure == "compute":
        log_ratio = log_ratio + np.log(kc + (1.0 - kc) / u)
    return _scalar_or_array(np.exp(log_ratio))


# --------------------------------------------------------------------------------------
# The closed forms against the numerical minimum, on random laws (the chapter's check)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClosedFormCheck:
    """Worst |S_opt - numerical minimum| of each closed form over `points` random (law, N, C)."""

    points: int
    at_zero: int  # points whose dense-cost optimum is the boundary S = 0
    worst: dict  # form -> max |S_opt - s_opt (numerical)|


def closed_form_check(bases, points: int, *, seed: int = 0, spread: float = 0.3,
                      per_law: int = 50) -> ClosedFormCheck:
    """Eq. 6 (corrected), the eq. 5 root (sparse costs) and eq. 6 as printed against `s_opt`.

    Laws are drawn around `bases` (each coefficient times e^{N(0, spread)}), `per_law` points
    each with N log-uniform in [1e6, 1e10] and C from 0.1x to 1000x the Chinchilla budget of
    N, so that both the interior optimum and the boundary S = 0 occur.
    """
    rng = np.random.default_rng(seed)
    worst = {"dense: eq. 6 (corrected)": 0.0, "sparse: eq. 5 root": 0.0, "dense: eq. 6 as printed": 0.0}
    at_zero = done = 0
    while done < points:
        base = bases[int(rng.random() * len(bases))]
        draw = SparseLaw(**{k: v * np.exp(rng.normal(0, spread)) for k, v in base.to_dict().items()})
        n = min(per_law, points - done)
        N = 10 ** rng.uniform(6, 10, n)
        C = chinchilla_compute(draw, N) * 10 ** rng.uniform(-1, 3, n)
        dense, sparse = s_opt(draw, N, C, cost="dense"), s_opt(draw, N, C, cost="sparse")
        at_zero += int(np.sum(dense == 0))
        for form, got, ref in (("dense: eq. 6 (corrected)", s_opt_eq6(draw, N, C), dense),
                               ("sparse: eq. 5 root", s_opt_eq5(draw, N, C, cost="sparse"), sparse),
                               ("dense: eq. 6 as printed", s_opt_eq6_as_printed(draw, N, C), dense)):
            worst[form] = max(worst[form], float(np.nanmax(np.abs(np.asarray(got) - ref))))
        done += n
    return ClosedFormCheck(points=done, at_zero=at_zero, worst=worst)
