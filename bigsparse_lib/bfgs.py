"""The solver under `fit`: BFGS from many starts at once, vmapped and jitted (App. C's fit).

Why not a library optimiser: jax.scipy's BFGS stops on line-search failures on the fit's
objective (Huber kinks), and optax.lbfgs, vmapped, runs its zoom line search until the
slowest start is done at every iteration; on t5-data.csv it took ~4x longer and brought 30 of
1000 starts to the best optimum in 300 iterations where this plain BFGS brings most of them.

The line search evaluates all TRIAL_STEPS at once and takes the longest step with sufficient
decrease (Armijo); the inverse Hessian is updated only when the curvature s.y is positive,
else reset. A start is finished when its gradient norm is below gtol, or when no trial step
decreases a freshly reset model.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bigsparse_lib.compilecache import enable_compilation_cache

# The step sizes the line search tries, all at once (one batched evaluation, no inner loop).
TRIAL_STEPS = 3.0 ** -np.arange(10)
ARMIJO = 1e-4  # sufficient-decrease constant


class State(NamedTuple):
    """One start's BFGS state."""

    k: jax.Array  # iterations done
    x: jax.Array  # current point (p,)
    f: jax.Array  # objective at x
    g: jax.Array  # gradient at x
    H: jax.Array  # inverse Hessian estimate (p, p)
    fresh: jax.Array  # H was just reset (scale it before its first update)
    done: jax.Array


class Result(NamedTuple):
    x: jax.Array  # final points (k, p)
    f: jax.Array  # objectives there (k,)
    converged: jax.Array  # gradient norm below gtol (k,)
    iterations: jax.Array  # (k,)


def batched(objective: Callable, maxiter: int, gtol: float) -> Callable:
    """BFGS on `objective(theta, weights, data) -> scalar`, jitted and vmapped over starts:
    (theta0 (k, p), weights (k, n), data) -> `Result`. `data` is shared by every start."""
    steps = jnp.asarray(TRIAL_STEPS)

    def one(theta0, weights, data) -> Result:
        fun = lambda th: objective(th, weights, data)  # noqa: E731
        value_and_grad = jax.value_and_grad(fun)
        eye = jnp.eye(theta0.shape[0])
        # a fresh inverse Hessian: steepest descent with a step of length at most one
        fresh_H = lambda g: eye / jnp.maximum(1.0, jnp.sqrt(g @ g))  # noqa: E731

        def going(s: State):
            return (s.k < maxiter) & ~s.done

        def step(s: State) -> State:
            d = -s.H @ s.g
            d = jnp.where(s.g @ d < 0, d, -s.g)
            xs = s.x + steps[:, None] * d
            fs = jax.vmap(fun)(xs)
            ok = jnp.isfinite(fs) & (fs <= s.f + ARMIJO * steps * (s.g @ d))
            j = jnp.argmax(ok)
            accepted = ok[j]
            x_new = jnp.where(accepted, xs[j], s.x)
            f_new, g_new = value_and_grad(x_new)
            dx, dg = x_new - s.x, g_new - s.g
            sy = dx @ dg
            curved = accepted & (sy > 1e-12 * jnp.sqrt((dx @ dx) * (dg @ dg)))
            rho = 1.0 / jnp.where(curved, sy, 1.0)
            # Nocedal & Wright (6.20): scale a fresh matrix by s.y / y.y before its first update
            H0 = jnp.where(s.fresh, sy / jnp.where(curved, dg @ dg, 1.0) * eye, s.H)
            V = eye - rho * jnp.outer(dx, dg)
            H_bfgs = V @ H0 @ V.T + rho * jnp.outer(dx, dx)
            H_new = jnp.where(curved, H_bfgs, fresh_H(g_new))
            done = (jnp.sqrt(g_new @ g_new) < gtol) | (~accepted & s.fresh)
            return State(s.k + 1, x_new, f_new, g_new, H_new, ~curved, done)

        f0, g0 = value_and_grad(theta0)
        start = State(0, theta0, f0, g0, fresh_H(g0), True, jnp.sqrt(g0 @ g0) < gtol)
        end = jax.lax.while_loop(going, step, start)
        return Result(end.x, end.f, jnp.sqrt(end.g @ end.g) < gtol, end.k)

    enable_compilation_cache()  # compiling this is most of a small fit's time: reuse it across processes
    return jax.jit(jax.vmap(one, in_axes=(0, 0, None)))
