"""Sparsity-aware Adafactor (App. A.1) and the T5/ViT recipes, against numpy written out here."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bigsparse_lib import optim, pruning
from bigsparse_lib.errors import InputError
from bigsparse_lib.pruning import PruningConfig
from bigsparse_lib.schedule import GradualSchedule


def adafactor_numpy(p, grads, lr, keep, d=1.0, eps1=1e-30, eps2=1e-3, decay=0.8):
    """The paper's rule on the unpruned entries `keep` (App. A.1; Shazeer & Stern, 2018):
    v_t = b_t v + (1 - b_t)(g^2 + eps1), b_t = 1 - t^-0.8; u = g / sqrt(v_t);
    u /= max(1, RMS(u)/d); p -= lr * max(eps2, RMS(p)) * u -- both RMS over `keep` only.
    Returns the parameter trajectory (float64)."""
    p = np.where(keep, np.asarray(p, np.float64), 0.0)
    v = np.zeros_like(p)
    out = []
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, np.float64)
        b = 1.0 - t ** (-decay)
        v = b * v + (1 - b) * (g * g + eps1)
        u = g / np.sqrt(v)
        u = u / max(1.0, np.sqrt(np.mean(u[keep] ** 2)) / d)
        step = lr * max(eps2, np.sqrt(np.mean(p[keep] ** 2))) * u
        p = np.where(keep, p - step, 0.0)
        out.append(p.copy())
    return out


def grads_for(shape, n, seed=0):
    rng = np.random.default_rng(seed)
    # changing scales so that RMS clipping is active on some steps
    return [rng.normal(size=shape) * s for s in (1.0, 30.0, 0.1, 5.0)[:n]]


def test_adafactor_rms_over_unpruned_weights_matches_paper_rule():
    rng = np.random.default_rng(0)
    shape = (40, 25)
    keep = rng.random(shape) < 0.1  # 90% zeros
    p0 = np.where(keep, rng.normal(size=shape) * 0.05, 0.0).astype(np.float32)
    grads = grads_for(shape, 4)
    lr = 0.01
    want = adafactor_numpy(p0, grads, lr, keep)

    tx = optim.adafactor(lr)
    p = jnp.asarray(p0)
    state = tx.init(p)
    update = jax.jit(tx.update)
    for g, w in zip(grads, want):
        u, state = update(jnp.asarray(g, jnp.float32), state, p)
        p = jnp.where(jnp.asarray(keep), p + u, 0.0)  # what pruning.sparsify does to the pruned entries
        np.testing.assert_allclose(np.asarray(p)[keep], w[keep], rtol=2e-5, atol=1e-9)

    # the same as the DENSE rule on the unpruned sub-tensor alone
    sub = jnp.asarray(p0[keep])
    dense = optim.adafactor(lr)
    dstate = dense.init(sub)
    dense_update = jax.jit(dense.update)
    for g in grads:
        u, dstate = dense_update(jnp.asarray(g[keep], jnp.float32), dstate, sub)
        sub = sub + u
    np.testing.assert_allclose(np.asarray(sub), np.asarray(p)[keep], rtol=1e-5, atol=1e-9)


@jax.jit
def first_updates(g, p):
    """First-step updates of our Adafactor and of optax's plain (dense-RMS) unfactored one."""
    ours, plain = optim.adafactor(0.01), optax.adafactor(0.01, factored=False)
    return ours.update(g, ours.init(p), p)[0], plain.update(g, plain.init(p), p)[0]


def test_plain_adafactor_would_take_a_smaller_step():
    """Why App. A.1 matters: over all entries RMS(param) is ~sqrt(0.1) of the unpruned RMS."""
    rng = np.random.default_rng(1)
    shape = (50, 40)
    keep = rng.random(shape) < 0.1
    p = jnp.asarray(np.where(keep, rng.normal(size=shape), 0.0), jnp.float32)
    g = jnp.asarray(rng.normal(size=shape), jnp.float32)
    ours, plain = first_updates(g, p)
    ratio = float(jnp.linalg.norm(plain[keep]) / jnp.linalg.norm(ours[keep]))
    assert ratio == pytest.approx(np.sqrt(keep.mean()), rel=0.02)


def test_wrapped_adafactor_sees_the_new_mask_on_the_pruning_step():
    """One-shot at step 0: the very first update must already use RMS over the kept weights."""
    rng = np.random.default_rng(2)
    shape = (30, 20)
    p0 = rng.normal(size=shape).astype(np.float32)
    S = 0.9
    keep = np.zeros(p0.size, bool)
    keep[np.argsort(-np.abs(p0).ravel(), kind="stable")[: round((1 - S) * p0.size)]] = True
    keep = keep.reshape(shape)
    grads = grads_for(shape, 3, seed=3)
    want = adafactor_numpy(p0, grads, 0.01, keep)

    tx = pruning.sparsify(optim.adafactor(0.01), {"w": S}, 10,
                          PruningConfig(method="oneshot", schedule=GradualSchedule(start=0.0, end=0.0)))
    params = {"w": jnp.asarray(p0)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for g, w in zip(grads, want):
        u, state = update({"w": jnp.asarray(g, jnp.float32)}, state, params)
        params = optax.apply_updates(params, u)
        got = np.asarray(params["w"])
        assert (got[~keep] == 0).all()
        np.testing.assert_allclose(got[keep], w[keep], rtol=2e-5, atol=1e-9)


def test_all_zero_tensor_falls_back_to_dense_rule():
    p = jnp.zeros((6, 4))
    g = jnp.asarray(np.random.default_rng(4).normal(size=(6, 4)), jnp.float32)
    ours, plain = first_updates(g, p)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(plain), rtol=1e-6)
    assert np.isfinite(np.asarray(ours)).all() and np.count_nonzero(np.asarray(ours)) == 24


def test_t5_schedule_is_raffel():
    sched = optim.t5_rsqrt_schedule()  # 0.01 for 10^4 steps, then 1/sqrt(t)
    for t in (0, 1, 5000, 9999, 10_000, 10_001, 40_000, 250_000, 10**6):
        want = 0.01 if t < 10_000 else 1.0 / np.sqrt(t)
        assert float(sched(t)) == pytest.approx(want, rel=1e-6)


def test_learning_rate_schedule_is_the_recipes_lr_of_t():
    """lr(t) of for_family's optimizer, worked out by hand from App. A and the toy lengths."""
    # T5, toy, 800 steps: warm-up = a tenth = 80 steps at the paper's 0.01, then 0.01 sqrt(80 / t)
    t5 = optim.learning_rate_schedule("t5", 800, "toy")
    assert float(t5(40)) == pytest.approx(0.01, rel=1e-6)
    assert float(t5(400)) == pytest.approx(0.01 * np.sqrt(80 / 400), rel=1e-6)
    assert float(optim.learning_rate_schedule("t5", 800, "toy", learning_rate=0.02)(400)) == \
        pytest.approx(0.02 * np.sqrt(80 / 400), rel=1e-6)
    # ViT, toy, 1000 steps at 3e-3: warm-up 100 (linear), rsqrt with timescale 100, cool-down the last 200
    vit = optim.learning_rate_schedule("vit", 1000, "toy", learning_rate=3e-3)
    assert float(vit(50)) == pytest.approx(3e-3 * 0.5, rel=1e-6)
    assert float(vit(500)) == pytest.approx(3e-3 / np.sqrt(5), rel=1e-6)
    assert float(vit(900)) == pytest.approx(3e-3 / 3 * 0.5, rel=1e-6)
    with pytest.raises(InputError):
        optim.learning_rate_schedule("gpt", 100)


def test_vit_rsqrt_schedule_is_big_vision():
    T, warm, cool, ts = 1000, 100, 200, 100
    sched = optim.rsqrt_schedule(T, warmup=warm, cooldown=cool, timescale=ts, peak=8e-4)
    for t in (0, 50, 100, 101, 400, 800, 900, 1000):
        lr = 8e-4 / np.sqrt((t + ts - warm) / ts) if t > warm else 8e-4
        lr *= min(1.0, t / warm) * min(1.0, (T - t) / cool)
        assert float(sched(t)) == pytest.approx(lr, rel=1e-6, abs=1e-12)


def test_vit_recipe_weight_decay_masks():
    """With zero gradients only decoupled weight decay moves weights: kernels by wd*lr_rel,
    the head kernel 100x that, biases not at all."""
    params = {"Transformer": {"mlp": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)}},
              "head": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones(2)}}
    tx = optim.big_vision_adafactor(8e-4, lambda t: 0.5, weight_decay=1e-3, grad_clip_norm=None)
    zeros = jax.tree.map(jnp.zeros_like, params)
    u, _ = tx.update(zeros, tx.init(params), params)
    assert float(u["Transformer"]["mlp"]["kernel"][0, 0]) == pytest.approx(-0.5 * 1e-3)
    assert float(u["head"]["kernel"][0, 0]) == pytest.approx(-0.5 * 0.1)
    assert float(u["Transformer"]["mlp"]["bias"][0]) == 0.0 and float(u["head"]["bias"][0]) == 0.0


def test_vit_head_lr_mult_scales_only_the_head():
    """head_lr_mult multiplies the head's steps (kernel and bias, weight decay included) and no
    other's; the toy recipe uses 10, the others big_vision's own 1 (optim.HEAD_LR_MULT)."""
    params = {"Transformer": {"mlp": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)}},
              "head": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones(2)}}
    rng = np.random.default_rng(0)
    grads = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), jnp.float32), params)
    steps = {}
    for m in (1.0, 10.0):
        tx = optim.big_vision_adafactor(8e-4, lambda t: 0.5, weight_decay=1e-3, head_lr_mult=m)
        steps[m], _ = tx.update(grads, tx.init(params), params)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(steps[10.0]["head"][name], 10 * np.asarray(steps[1.0]["head"][name]), rtol=1e-6)
        np.testing.assert_array_equal(steps[10.0]["Transformer"]["mlp"][name], steps[1.0]["Transformer"]["mlp"][name])
    assert optim.HEAD_LR_MULT == {"smoke": 1.0, "toy": 10.0, "full": 1.0}


@pytest.mark.parametrize("family", ["t5", "vit"])
def test_for_family_trains_a_quadratic(family):
    target = jnp.asarray(np.random.default_rng(5).normal(size=(8, 8)), jnp.float32)
    params = {"layer": {"kernel": jnp.zeros((8, 8)) + 0.1}}
    tx = optim.for_family(family, 200, "smoke", learning_rate=0.05 if family == "vit" else 0.1)
    loss = lambda p: jnp.mean((p["layer"]["kernel"] - target) ** 2)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        u, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, u), state

    first = float(loss(params))
    for _ in range(200):
        params, state = step(params, state)
    assert float(loss(params)) < 0.5 * first


def test_for_family_bad_input():
    with pytest.raises(InputError, match="family"):
        optim.for_family("gpt", 100)
    with pytest.raises(InputError, match="preset"):
        optim.for_family("t5", 100, "huge")
    with pytest.raises(InputError, match="steps"):
        optim.for_family("vit", 0)
