"""Bootstrap bands on optimal sparsity: the S_opt contours (Fig. 1 right, Fig. 4) and the onset multiples (§3.3).

`fit.bootstrap` refits eq. 3 on resampled runs; every resample's law gives its own contour
C_S(N) (`optimal.contour_compute`) and its own onset C_S / C_chin (`optimal.chinchilla_multiple`).
The bands are percentile intervals over resamples, pointwise in N. Contours are straight
lines in the log (N, C) plane (D_S ∝ N^(b_N/b_D)), so a band is a wedge around the line.
A resample whose law has no contour (a_S, b_S, a_D or b_D not positive) counts as missing,
and the number of usable resamples is returned with each band.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bigsparse_lib import optimal
from bigsparse_lib.fit import Bootstrap, percentile_interval
from bigsparse_lib.law import SparseLaw


def _laws(boot: Bootstrap) -> list[SparseLaw]:
    if boot.law_cls is not SparseLaw:
        raise TypeError("optimal-sparsity bands need a bootstrap of the sparse law (eq. 3)")
    return boot.laws


def _each(boot: Bootstrap, fn) -> np.ndarray:
    """fn(law) for every resample's law, NaN where it raises (no contour / no finite onset)."""
    out = []
    for law in _laws(boot):
        try:
            with np.errstate(all="ignore"):
                out.append(np.asarray(fn(law), dtype=float))
        except (ValueError, ArithmeticError):
            out.append(None)
    shape = next((v.shape for v in out if v is not None), ())
    return np.array([v if v is not None else np.full(shape, np.nan) for v in out])


@dataclass(frozen=True)
class Band:
    """A pointwise percentile band: lo and hi over the grid `x`, from `used` of the resamples."""

    x: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    used: int
    level: float


def contour_band(boot: Bootstrap, S: float, N, cost: str = "sparse", level: float = 0.95) -> Band:
    """Band on the contour S_opt(N, C) = S: percentiles of log C_S(N) over resamples, at every N."""
    N = np.atleast_1d(np.asarray(N, dtype=float))
    logC = np.log(_each(boot, lambda law: optimal.contour_compute(law, S, N, cost)))
    ok = np.all(np.isfinite(logC), axis=1)
    lo, hi = np.percentile(logC[ok], [50 * (1 - level), 50 * (1 + level)], axis=0) if ok.any() else (
        np.full(N.shape, np.nan), np.full(N.shape, np.nan))
    return Band(x=N, lo=np.exp(lo), hi=np.exp(hi), used=int(ok.sum()), level=level)


def onset_samples(boot: Bootstrap, S: float = 0.5, cost: str = "sparse") -> np.ndarray:
    """The onset multiple C_S / C_chin (§3.3) of every resample's law (NaN where undefined)."""
    return _each(boot, lambda law: optimal.chinchilla_multiple(law, S, cost))


def onset_interval(boot: Bootstrap, S: float = 0.5, cost: str = "sparse", level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the onset multiple of sparsity S."""
    return percentile_interval(onset_samples(boot, S, cost), level)


def s_opt_interval(boot: Bootstrap, N: float, C: float, cost: str = "sparse", level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of S_opt(N, C) (numerical minimum, `optimal.s_opt`) over resamples."""
    return percentile_interval(_each(boot, lambda law: optimal.s_opt(law, N, C, cost)), level)
