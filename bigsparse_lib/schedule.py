"""When and how sparse: the gradual pruning schedule (Zhu & Gupta, 2017; paper §3.1, App. A, D).

The schedule is kept apart from the *score* (magnitude) and the *mask rule*
(unstructured top-k, n:m), as jaxpruner does. Everything that needs to know the
sparsity at a point of training -- the pruning transformation (`pruning.py`), the
sparse-FLOP accounting of eq. 4 (`law.c_mul`), and the training log -- asks this module.

Functions take numpy or JAX values and return the same kind, so they work inside `jit`.

Two details differ from jaxpruner (the library the paper's runs used); both are deliberate:

- *The first update prunes nothing.* We follow Zhu & Gupta's eq. 1, S_t = S (1 - (1 -
  (t - t_0)/(n dt))^3), so at t = t_0 the sparsity is exactly 0 and the ramp's first non-zero
  step is the next update. jaxpruner's polynomial schedule counts progress from
  `step + 1 - start`, so its first update already prunes a little (0.0045 of the weights for
  S = 0.75 over a 500-step ramp). The difference is one update's worth of ramp, well below
  anything the law can see; we keep the published formula (`tests/test_pruning.py` pins it).
- *At least one weight per tensor.* Like jaxpruner we never prune a tensor to nothing: the
  kept count is max(1, round((1 - S) size)) (`pruning.keep_count`). It only matters for a
  tensor with fewer than 1 / (2 (1 - S)) entries, which no grid of this project has.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


def _xp(*values):
    """numpy for plain numbers and numpy arrays, jax.numpy once a JAX value appears."""
    for v in values:
        if type(v).__module__.startswith("jax"):
            import jax.numpy as jnp

            return jnp
    return np


@dataclass(frozen=True)
class GradualSchedule:
    """Polynomial gradual pruning: S_t = S - S * (1 - tau)^power on [start, end].

    `start` and `end` are fractions of training (the paper: 0.25 and 0.75), `power`
    is the exponent (3, cubic, as in Zhu & Gupta's formula), and `every` is how many
    steps pass between mask updates (100 at full scale, App. A). Before `start` the
    model is dense; after `end` it sits at the target sparsity.
    """

    start: float = 0.25
    end: float = 0.75
    power: float = 3.0
    every: int = 100

    def __post_init__(self):
        if not (0.0 <= self.start <= self.end <= 1.0):
            raise ValueError(f"schedule needs 0 <= start <= end <= 1, got start={self.start}, end={self.end}")
        if self.power <= 0:
            raise ValueError(f"schedule power must be positive, got {self.power}")
        if int(self.every) < 1:
            raise ValueError(f"schedule 'every' must be >= 1 step, got {self.every}")

    def sparsity(self, t, S, *, start=None, span=None):
        """Sparsity at training fraction t in [0, 1] for final sparsity S (continuous time).

        Zhu & Gupta (2017), eq. 1, with initial sparsity 0:
        S_t = S + (0 - S) * (1 - (t - t_0) / (n dt))^3.

        `start` and `span` (end - start) default to this schedule's; the engine passes them as
        per-run float32 data (`pruning.Clock.t0`, `.span`), so that runs on different windows
        (Table 5) share one compiled program. A span of 0 is one-shot pruning at `start`.
        """
        if start is None:
            start, span = self.start, self.end - self.start
        xp = _xp(t, S, start, span)
        t = xp.asarray(t)
        ramp = span > 0  # else one-shot: tau jumps from 0 to 1 at `start`
        tau = xp.where(ramp, xp.clip((t - start) / xp.where(ramp, span, 1.0), 0.0, 1.0), (t >= start).astype(t.dtype))
        return S - S * (1.0 - tau) ** self.power

    def sparsity_at_step(self, step, total_steps, S, *, every=None, end_step=None, start=None, span=None):
        """Sparsity in force at integer `step` of `total_steps` when the mask moves every `every` steps.

        The mask is recomputed at multiples of `every` (and at the last step of the
        ramp, so that training always ends exactly at S). `every` and `end_step` default to
        this schedule's `every` and round(end * total_steps); the engine passes them (and
        total_steps, and the window's `start` and `span` of `sparsity`) as traced per-run values
        (`pruning.Clock`).
        """
        xp = _xp(step, S, total_steps, every, end_step, start, span)
        every = int(self.every) if every is None else every
        step = xp.asarray(step)
        last_update = (step // every) * every
        end_step = int(round(self.end * total_steps)) if end_step is None else end_step
        # From the (rounded) end step on, the target is exact even when end_step / total < end.
        return xp.where(step >= end_step, S + 0.0 * last_update,
                        self.sparsity(last_update / total_steps, S, start=start, span=span))

    def density_integral(self, S, nodes: int = 64):
        """∫_0^1 (1 - S_t) dt: the mean fraction of the *trained* (dense-size) model that is non-zero.

        Computed by Gauss-Legendre quadrature on each of the three pieces
        [0, start], [start, end], [end, 1] of the schedule, so it is exact for the
        polynomial schedules (degree < 2*nodes) and to ~1e-10 even for non-integer powers, whose
        ramp has an unbounded derivative at its end. It is
        vectorised over S and differentiable with JAX (used by eq. 5).
        """
        xp = _xp(S)
        x, w = _gauss_legendre(nodes)
        total = 0.0 * xp.asarray(S, dtype=float)
        for lo, hi in ((0.0, self.start), (self.start, self.end), (self.end, 1.0)):
            if hi <= lo:
                continue
            t = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)  # nodes mapped to [lo, hi]
            S_b = xp.asarray(S, dtype=float)[..., None]
            density = 1.0 - self.sparsity(xp.asarray(t), S_b)
            total = total + 0.5 * (hi - lo) * xp.sum(w * density, axis=-1)
        return total


@lru_cache(maxsize=8)
def _gauss_legendre(nodes: int):
    # cached: the optimal-sparsity grids call density_integral thousands of times
    return np.polynomial.legendre.leggauss(nodes)


PAPER_SCHEDULE = GradualSchedule()  # cubic, 25% -> 75% of training, every 100 steps (App. A)
