"""The successor laws beside eq. 3, fitted the same way (`vpfit`), and their comparison on one table.

Four forms (`FORMS`), all linear in non-negative coefficients at fixed exponents:

- ``eq3``: eq. 3 of Frantar et al. (2024), L = (a_S (1-S)^b_S + c_S) N^-b_N + (a_D/D)^b_D + c.
- ``multiplier``: the effective-parameter-multiplier law of Frantar, Evci, Park, Houlsby and
  Alistarh (2025, "Compression scaling laws", arXiv 2502.16440),
  L = a / (N_tot eff(S))^b + c / D^d + e, with N_tot = N / (1-S) the parameters counted
  zero or not, one free eff per sparsity level present, and eff(0) = 1. For fixed (b, d)
  the per-level prefactors a eff(s)^-b are free non-negative coefficients, so it is fitted
  as a linear model too; eff(s) = (prefactor(0) / prefactor(s))^(1/b).
- ``average``: Jin et al. (2025, "The journey matters", arXiv 2501.12486): the dense law on
  the average parameter count over training. Under a schedule S_t (the paper's cubic
  25%-75% GMP), N_avg = N_tot ∫(1 - S_t) dt = N c_mul(S) (App. D's integral, `law.c_mul`).
- ``dense``: eq. 2 on the non-zeros N alone, ignoring S: the null model.

Gains (the equivalent dense size multiplier of eq. 7, at the same non-zeros and data):
eq. 3: `law.gain`; multiplier: eff(S)/(1-S); average: c_mul(S) (no fitted coefficient
enters); dense: 1.

Model choice. The objective is a mean Huber loss, not a likelihood. We use the Gaussian
information criteria with the mean squared residual replaced by twice the mean Huber loss
(equal to it when every residual is inside delta): AIC = n log(2 obj) + 2k and
BIC = n log(2 obj) + k log n, k = number of fitted coefficients. Nested forms make this
matter: with a free eff per level the multiplier law contains both the average law and the
null model, and, with three or more sparsity levels, can mimic eq. 3's S-dependence too,
so its in-sample objective can only be lower; the criteria charge it for its coefficients.
`compare` ranks by BIC (the stricter penalty at these sample sizes) and reports both, with
the held-out errors of `heldout.leave_out`, which need no likelihood at all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np

from bigsparse_lib import vpfit
from bigsparse_lib.errors import InputError
from bigsparse_lib.fit import DELTA, GAIN_SPARSITIES, LOG
from bigsparse_lib.vpfit import EQ2, EQ3, Eq2, Form, centred_log, tidy

# The 2025 paper's published effective multiplier for 50% (unstructured) sparsity on its own LLM runs.
PUBLISHED_EFF = {0.5: 0.87}


def levels(table) -> np.ndarray:
    """The distinct sparsity levels of a table, ascending."""
    return np.unique(np.asarray(table["sparsity"], dtype=np.float64))


def level_key(S: float) -> str:
    return f"eff@{float(S):g}"


class Multiplier(Form):
    """L = a (N_tot eff(S))^-b + c D^-d + e, eff(0) = 1, one eff per sparsity level (Frantar et al., 2025)."""

    name = "multiplier"
    exponents = ("b", "d")
    box = ((0.05, 1.5), (0.05, 1.5))
    description = "effective-parameter multiplier (Frantar et al., 2025)"

    def check(self, table):
        lv = levels(table)
        if not np.any(lv == 0.0):
            raise InputError(f"form 'multiplier' needs dense runs (sparsity 0) to fix eff(0) = 1; the table has "
                             f"sparsities {', '.join(f'{s:g}' for s in lv)}")

    def n_linear(self, feats):
        return feats["onehot"].shape[1] + 2

    def features(self, table):
        S, N, D, _ = tidy(table)
        lv = levels(table)
        log_n, log_N0 = centred_log(N / (1.0 - S))
        log_d, log_D0 = centred_log(D)
        onehot = (S[:, None] == lv[None, :]).astype(np.float64)
        return {"log_n": log_n, "log_d": log_d, "onehot": onehot, "log_N0": log_N0, "log_D0": log_D0,
                "levels": tuple(float(s) for s in lv)}

    def columns(self, theta, f):
        b, d = theta[0], theta[1]
        n_pow = jnp.exp(-b * f["log_n"])
        return jnp.concatenate([f["onehot"] * n_pow[:, None], jnp.exp(-d * f["log_d"])[:, None],
                                jnp.ones_like(n_pow)[:, None]], axis=-1)

    def coefs(self, theta, w, f):
        b, d = (float(t) for t in theta)
        w = [float(x) for x in w]
        lv = f["levels"]
        pref = w[:len(lv)]
        p0 = pref[lv.index(0.0)]
        out = {"a": p0 * math.exp(b * f["log_N0"]), "b": b, "c": w[-2] * math.exp(d * f["log_D0"]), "d": d,
               "e": w[-1]}
        for s, p in zip(lv, pref):
            out[level_key(s)] = (p0 / p) ** (1.0 / b) if p > 0 else math.inf
        return out

    def predict(self, coefs, table):
        S, N, D, _ = tidy(table)
        eff = np.array([coefs.get(level_key(s), np.nan) for s in S])
        with np.errstate(divide="ignore", invalid="ignore"):
            return coefs["a"] * (N / (1.0 - S) * eff) ** -coefs["b"] + coefs["c"] * D ** -coefs["d"] + coefs["e"]


class Average(Eq2):
    """The dense law on the average parameter count over training, N_avg = N c_mul(S) (Jin et al., 2025)."""

    name = "average"
    description = "dense law on the average parameter count (Jin et al., 2025)"

    def n_of(self, table):
        from bigsparse_lib.law import c_mul

        S, N, _, _ = tidy(table)
        return N * np.asarray(c_mul(S), dtype=np.float64)


MULTIPLIER, AVERAGE = Multiplier(), Average()
FORMS: dict[str, Form] = {"eq3": EQ3, "multiplier": MULTIPLIER, "average": AVERAGE, "dense": EQ2}


def form_named(name: str) -> Form:
    if name not in FORMS:
        raise InputError(f"unknown form {name!r}; choose from {', '.join(FORMS)}", arg="form")
    return FORMS[name]


def gains(form: Form, coefs: dict, sparsities=GAIN_SPARSITIES) -> dict[float, float]:
    """The dense size multiplier of each law at the given sparsities (NaN where the law has no value)."""
    from bigsparse_lib.law import SparseLaw, c_mul, gain

    out = {}
    for S in sparsities:
        if form.name == "eq3":
            out[S] = float(gain(SparseLaw.from_dict(coefs), S))
        elif form.name == "multiplier":
            out[S] = float(coefs.get(level_key(S), np.nan) / (1.0 - S))
        elif form.name == "average":
            out[S] = float(c_mul(S))
        else:
            out[S] = 1.0
    return out


def information(objective: float, n: int, k: int) -> tuple[float, float]:
    """(AIC, BIC) with twice the mean Huber loss in place of the mean squared residual (module docstring)."""
    base = n * math.log(2.0 * objective) if objective > 0 else -math.inf
    return base + 2 * k, base + k * math.log(n)


@dataclass(frozen=True)
class Comparison:
    """One form on one table: the fit, its size, its criteria, its held-out errors and gains."""

    form: str
    fit: vpfit.GridFit = field(repr=False)
    n_params: int
    objective: float
    aic: float
    bic: float
    heldout: dict[str, float]  # "size" / "length" -> mean |relative error| on the held-out runs
    gains: dict[float, float]

    def to_dict(self) -> dict:
        return {"form": self.form, "coefs": self.fit.coefs, "n_params": self.n_params, "objective": self.objective,
                "aic": self.aic, "bic": self.bic, "heldout": self.heldout,
                "gains": {f"{S:g}": _num(g) for S, g in self.gains.items()}}


def _num(x):
    return float(x) if x is not None and math.isfinite(x) else None


def compare(table, forms=tuple(FORMS), *, delta: float = DELTA, log: bool = LOG,
            resolution: int | None = None, heldout=("size", "length")) -> list[Comparison]:
    """Fit every form to the table (certified fit), with AIC, BIC and held-out errors; sorted by BIC.

    Raises InputError when a form cannot be fitted to the table (e.g. the multiplier law without S = 0 runs).
    """
    from bigsparse_lib.heldout import leave_out

    out = []
    for name in forms:
        form = form_named(name)
        kw = {} if resolution is None else {"resolution": resolution}
        gf = vpfit.certified_fit(table, form, delta=delta, log=log, **kw)
        aic, bic = information(gf.objective, gf.n_points, gf.n_params)
        errors = {by: leave_out(table, by=by, form=form, delta=delta, log=log, **kw).mean_abs_rel_error
                  for by in heldout}
        out.append(Comparison(form=name, fit=gf, n_params=gf.n_params, objective=gf.objective, aic=aic, bic=bic,
                              heldout=errors, gains=gains(form, gf.coefs)))
    return sorted(out, key=lambda c: c.bic)
