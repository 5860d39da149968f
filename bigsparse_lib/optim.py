"""Optimizers of the paper's two recipes, made sparsity-aware (App. A, A.1).

T5 (Raffel et al., 2020): Adafactor with an UNFACTORED second moment (the paper's one
change, App. A), relative step size lr * max(eps2, RMS(param)) and update clipping at
RMS = d = 1, under the inverse-square-root schedule lr(t) = 0.01 for t < 10^4, then
1/sqrt(t).

Sparsity-aware RMS (App. A.1): both RMS values are taken over the UNPRUNED weights only, so
a 90%-sparse tensor gets the step size of its dense sub-tensor rather than one ~3x smaller.
"Unpruned" means "param != 0": `pruning.sparsify` hands its inner optimizer the params with
the mask applied, so the pruned entries are exactly zero whenever this optimizer runs (as
in the authors' jaxpruner T5X code). This needs no extra arguments, so it composes with
any optax chain, and it also holds for a checkpoint pruned elsewhere. A tensor with no
non-zero entry at all (a zero-initialised bias) falls back to the dense rule.

This optimizer does not zero the updates of pruned entries itself: that is the pruning
wrapper's job (a zero-initialised bias must be able to move).

ViT (Zhai et al., 2022; big_vision `scale_by_adafactor`): unfactored second moment with
beta2 capped at 0.999, first-moment momentum 0.9, global-norm gradient clipping at 1,
lr 8e-4, decoupled weight decay 0.03*lr on kernels (x100 on the head), rsqrt decay with
linear warm-up and linear cool-down. No relative step size or RMS clipping (the paper keeps
those "for T5"), so there is nothing sparsity-specific in it.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import optax

from bigsparse_lib.errors import InputError
from bigsparse_lib.pruning import path_str

from bigsparse_lib.vocab import FAMILIES, PRESETS


# ---------------------------------------------------------------- sparsity-aware pieces

def unpruned_rms(x, p):
    """RMS of x over the unpruned entries of p, i.e. where p != 0 (App. A.1).

    If p has no non-zero entry (a zero-initialised bias) it is the plain RMS of x.
    """
    nonzero = p != 0
    nnz = jnp.sum(nonzero)
    x2 = jnp.square(x.astype(jnp.float32))
    sparse = jnp.sqrt(jnp.sum(jnp.where(nonzero, x2, 0.0)) / jnp.maximum(nnz, 1))
    return jnp.where(nnz > 0, sparse, jnp.sqrt(jnp.mean(x2)))


def clip_by_unpruned_block_rms(threshold: float = 1.0) -> optax.GradientTransformation:
    """Adafactor update clipping u / max(1, RMS(u)/d), RMS over unpruned weights (App. A.1)."""

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("clip_by_unpruned_block_rms needs params")

        def clip(u, p):
            return u / jnp.maximum(1.0, unpruned_rms(u, p) / threshold).astype(u.dtype)

        return jax.tree.map(clip, updates, params), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def scale_by_unpruned_param_rms(min_scale: float = 1e-3) -> optax.GradientTransformation:
    """Adafactor's relative step: u * max(eps2, RMS(param)), RMS over unpruned weights (App. A.1)."""

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("scale_by_unpruned_param_rms needs params")

        def scale(u, p):
            return u * jnp.maximum(min_scale, unpruned_rms(p, p)).astype(u.dtype)

        return jax.tree.map(scale, updates, params), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def adafactor(learning_rate, *, decay_rate: float = 0.8, eps1: float = 1e-30, eps2: float = 1e-3,
              clipping_threshold: float | None = 1.0, multiply_by_parameter_scale: bool = True,
              momentum: float | None = None, weight_decay: float | None = None
              ) -> optax.GradientTransformation:
    """Sparsity-aware Adafactor as in App. A / A.1 (unfactored second moment).

    Same order of operations as `optax.adafactor`: v_t = b2_t v + (1-b2_t)(g^2 + eps1) with
    b2_t = 1 - t^-0.8; u = g / sqrt(v_t); u /= max(1, RMS_unpruned(u)/d); step =
    lr_t * max(eps2, RMS_unpruned(param)) * u. `learning_rate` is a float or an optax schedule.
    """
    tx = [optax.scale_by_factored_rms(factored=False, decay_rate=decay_rate, epsilon=eps1)]
    if clipping_threshold is not None:
        tx.append(clip_by_unpruned_block_rms(clipping_threshold))
    tx.append(optax.scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        tx.append(scale_by_unpruned_param_rms(eps2))
    if momentum is not None:
        tx.append(optax.ema(momentum, debias=False))
    if weight_decay is not None:
        tx.append(optax.add_decayed_weights(weight_decay))
    tx.append(optax.scale(-1.0))
    return optax.chain(*tx)


# ---------------------------------------------------------------- learning-rate schedules

def t5_rsqrt_schedule(peak: float = 0.01, warmup=10_000) -> optax.Schedule:
    """T5's inverse square root: lr(t) = peak * sqrt(warmup / max(t, warmup)).

    With the T5 values (0.01, 10^4) this is 0.01 for 10^4 steps, then exactly 1/sqrt(t).
    `warmup` may be traced (the engine's per-run lengths are data).
    """

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        w = jnp.asarray(warmup, jnp.float32)
        return peak * jnp.sqrt(w / jnp.maximum(step, w))

    return schedule


def rsqrt_schedule(total_steps: int, *, warmup: int, cooldown: int, timescale: int | None = None,
                   peak: float = 1.0) -> optax.Schedule:
    """big_vision's 'rsqrt' decay with linear warm-up and linear cool-down (Zhai et al., 2022).

    With peak=1 it is the relative factor big_vision multiplies the updates by.
    lr(t) = peak * min(1, t/warmup) * rsqrt-factor(t) * min(1, (T - t)/cooldown), where the
    rsqrt factor is 1 during warm-up and sqrt(timescale / (t - warmup + timescale)) after.
    A warm-up or cool-down of 0 is none. Lengths may be traced (the engine's per-run data).
    """
    if timescale is None:
        timescale = jnp.maximum(warmup, 1) if _traced(warmup) else int(warmup or 1)
    shift = timescale - warmup

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        lr = jnp.where(step > warmup, peak / jnp.sqrt((step + shift) / timescale), peak)
        # min(1, t / warmup) and min(1, (T - t) / cooldown), each 1 when its length is 0
        lr = lr * jnp.where(warmup > 0, jnp.minimum(1.0, step / jnp.maximum(warmup, 1)), 1.0)
        lr = lr * jnp.where(cooldown > 0, jnp.minimum(1.0, (total_steps - step) / jnp.maximum(cooldown, 1)), 1.0)
        return jnp.maximum(lr, 0.0)

    return schedule


# ---------------------------------------------------------------- the ViT recipe

def _decay_mask(pattern: str, exclude: str | None = None):
    def mask(params):
        def flag(path, _):
            name = path_str(path)
            return bool(re.fullmatch(pattern, name)) and not (exclude and re.fullmatch(exclude, name))

        return jax.tree_util.tree_map_with_path(flag, params)

    return mask


def big_vision_adafactor(peak_lr: float = 8e-4, schedule: optax.Schedule | None = None, *,
                         weight_decay: float = 0.03 * 8e-4, head_wd_mult: float = 100.0,
                         beta2_cap: float = 0.999, momentum: float | None = 0.9,
                         grad_clip_norm: float | None = 1.0, decay_rate: float = 0.8,
                         eps: float = 1e-30, head_lr_mult: float = 1.0) -> optax.GradientTransformation:
    """big_vision's `scale_by_adafactor` recipe for ViT on JFT, unfactored (App. A).

    As big_vision's `optax.make` chains it: clip_by_global_norm(1) -> second-moment scaling
    (beta2 = min(0.999, 1 - t^-0.8)) -> momentum 0.9 (no debias) -> scale(peak_lr) -> add
    decoupled weight decay (absolute: `weight_decay` on '*/kernel', `head_wd_mult` times it on
    '*head/kernel'; big_vision's ViT scaling config: wd = 0.03 * lr, head x100) -> multiply
    by the RELATIVE schedule factor `schedule(t)` (1 if None) -> descend.
    `head_lr_mult` (not big_vision's; 1 leaves its recipe as it is) multiplies the head's steps,
    weight decay included: the head's learning rate is that many times the body's (`HEAD_LR_MULT`).
    """

    def decay_rate_fn(step, exponent):
        t = jnp.asarray(step, jnp.float32) + 1.0
        return jnp.minimum(beta2_cap, 1.0 - t ** (-exponent))

    tx = []
    if grad_clip_norm:
        tx.append(optax.clip_by_global_norm(grad_clip_norm))
    tx.append(optax.scale_by_factored_rms(factored=False, decay_rate=decay_rate, epsilon=eps,
                                          decay_rate_fn=decay_rate_fn))
    if momentum:
        tx.append(optax.ema(momentum, debias=False))
    tx.append(optax.scale(peak_lr))
    if weight_decay:
        tx.append(optax.add_decayed_weights(weight_decay, _decay_mask(r".*/kernel", r".*head/kernel")))
        tx.append(optax.add_decayed_weights(head_wd_mult * weight_decay, _decay_mask(r".*head/kernel")))
    if head_lr_mult != 1.0:
        tx.append(optax.masked(optax.scale(head_lr_mult), _decay_mask(r"(.*/)?head/.*")))
    if schedule is not None:
        tx.append(optax.scale_by_schedule(schedule))
    tx.append(optax.scale(-1.0))
    return optax.chain(*tx)


# ---------------------------------------------------------------- per-family recipes

def _traced(x) -> bool:
    return isinstance(x, jax.Array)


def _fraction_of_run(steps, divisor: int, cap: int | None = None):
    """max(1, min(cap, steps // divisor)), for a Python int or a traced int (the engine's groups)."""
    if _traced(steps):
        n = steps // divisor
        return jnp.maximum(1, n if cap is None else jnp.minimum(cap, n))
    n = int(steps) // divisor
    return max(1, n if cap is None else min(cap, n))


def _warmup(steps, preset: str, full_value: int):
    """Warm-up/cool-down length: the paper's value at full scale, capped at a tenth of the run,
    and a tenth of the run for the small presets (so that their curves keep the same shape)."""
    return _fraction_of_run(steps, 10, full_value if preset == "full" else None)


def _check(family: str, steps, preset: str):
    """Validate for_family's / learning_rate_schedule's arguments; `steps` as an int unless traced."""
    if family not in FAMILIES:
        raise InputError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if not _traced(steps):
        steps = int(steps)
        if steps < 1:
            raise InputError(f"steps must be >= 1, got {steps}")
    return steps


# The ViT head's learning rate as a multiple of the body's, per preset (`big_vision_adafactor`).
# Toy: 10. Adafactor moves each weight by at most about lr per step, and a class's logit moves by
# head_k . x with |x| ~ sqrt(width) after the encoder's LayerNorm: a change of 10 nats of logit
# needs about 10 / width per head weight, 0.01 at ViT-B's 768 but 0.2-0.6 at the toy widths (16-64).
# So at toy scale the head's step bound, not the features, set how fast a class was learned, and a
# wider model learned faster for that reason alone. Probe (2026-12-02; dense, seeds 0-3, 6K and 12K,
# 250 and 1000 steps, 256 classes): losses 0.6 lower at 1000 steps, seed std 0.04 and 0.10 against
# 0.08 and 0.15 at 1x; the body's rate at 1e-2 instead of 3e-3 lowered the losses as much
# (1.3-1.5) but left the std at 0.15-0.21.
HEAD_LR_MULT = {"smoke": 1.0, "toy": 10.0, "full": 1.0}

# The paper's peak learning rates (App. A; T5: Raffel et al.; ViT: big_vision), the default of each family.
PAPER_PEAK_LR = {"t5": 1e-2, "vit": 8e-4}


def _peak(family: str, learning_rate: float | None) -> float:
    return PAPER_PEAK_LR[family] if learning_rate is None else float(learning_rate)


def _vit_relative_schedule(steps, preset: str) -> optax.Schedule:
    """big_vision's rsqrt factor (peak 1) with the warm-up and cool-down of `for_family`."""
    return rsqrt_schedule(steps, warmup=_warmup(steps, preset, 10_000),
                          cooldown=_fraction_of_run(steps, 5, 50_000 if preset == "full" else None))


def learning_rate_schedule(family: str, steps, preset: str = "toy", *, learning_rate: float | None = None
                           ) -> optax.Schedule:
    """lr(t) of `for_family`'s optimizer for the same arguments: the peak times its schedule (App. A).

    For what reads a run's learning rate from outside the optimizer (the ablations chapter's
    regrow estimate), so that it follows the recipe instead of retyping it.
    """
    steps = _check(family, steps, preset)
    peak = _peak(family, learning_rate)
    if family == "t5":
        return t5_rsqrt_schedule(peak, _warmup(steps, preset, 10_000))
    relative = _vit_relative_schedule(steps, preset)
    return lambda step: peak * relative(step)


def for_family(family: str, steps, preset: str = "toy", *, learning_rate: float | None = None
               ) -> optax.GradientTransformation:
    """The paper's optimizer for `family` over a run of `steps` steps (App. A).

    t5:  sparsity-aware Adafactor (unfactored) under T5's rsqrt schedule, peak 0.01 (the
         default) held for 10^4 steps at full scale, a tenth of the run otherwise.
    vit: big_vision Adafactor (unfactored), peak 8e-4 (default), rsqrt decay (timescale =
         warm-up = 10^4 at full scale), linear cool-down (5*10^4 at full scale, a fifth of
         the run otherwise), weight decay 0.03*peak (x100 on the head); the head's learning
         rate HEAD_LR_MULT[preset] times the body's (10 at toy, 1 otherwise).
    `learning_rate` overrides the peak (the trainer's presets may tune it for tiny models).
    `steps` may be a traced int: the engine trains runs of several lengths in one program.
    Wrap the result with `pruning.sparsify` for sparse runs.
    """
    steps = _check(family, steps, preset)
    peak = _peak(family, learning_rate)
    if family == "t5":
        # No cool-down, as T5. Tried at toy (2026-11-30): a linear cool-down over the last 20% left the
        # seed spread as it was (4 seeds of the 14K model at 200 steps: 0.078 against 0.082) and the
        # loss 0.02 higher; that spread comes from the initialisation (`evidence.Noise.by_size`).
        return adafactor(learning_rate_schedule(family, steps, preset, learning_rate=peak))
    # big_vision scales by the peak and by the relative schedule in two places (weight decay between)
    return big_vision_adafactor(peak, _vit_relative_schedule(steps, preset), weight_decay=0.03 * peak,
                                head_lr_mult=HEAD_LR_MULT[preset])
