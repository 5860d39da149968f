"""Pruning (App. A, A.1 Alg. 1, App. B): schedule, magnitude top-k, n:m, AC/DC, exact zeros.

Expected values come from numpy (argsort), Zhu & Gupta's formula written out here, and the
definition k = round((1 - S) * size) -- never from the module's own output.
"""
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


def zhu_gupta(t, T, S, start, end, every, power=3):
    """Zhu & Gupta (2017) eq. 1 with s_i = 0: S_t = S + (0 - S)(1 - (t_u - t0)/(n dt))^power,
    t_u the last mask-update step (a multiple of `every`, or the end step, t0 = start*T)."""
    t0, n_dt = start * T, (end - start) * T
    if t >= round(end * T):
        return S
    t_u = (t // every) * every
    if t_u < t0:
        return 0.0
    return S + (0.0 - S) * (1.0 - min(1.0, (t_u - t0) / n_dt)) ** power


def kept(S, size):
    return int(round((1.0 - S) * size))


def run(params, targets, T, config, inner, seed=0, check=None):
    """A short jitted optax loop on random gradients; `check(t, params, state)` after each step."""
    tx = pruning.sparsify(inner, targets, T, config)
    state = tx.init(params)

    @jax.jit
    def step(params, state, key):
        grads = jax.tree.map(lambda p: jax.random.normal(jax.random.fold_in(key, p.size), p.shape), params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for t in range(T):
        params, state = step(params, state, jax.random.PRNGKey(seed * 1000 + t))
        if check is not None:
            check(t, params, state)
    assert step._cache_size() == 1  # one compiled step for the whole run: masks move inside lax.cond
    return params, state


def randn(shape, seed):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


# ---------------------------------------------------------------- schedule

@pytest.mark.parametrize("T,start,end,every", [(200, 0.25, 0.75, 10), (1003, 0.25, 0.75, 100),
                                               (97, 0.125, 0.875, 7), (50, 0.0, 0.5, 5)])
def test_gmp_schedule_is_zhu_gupta(T, start, end, every):
    cfg = PruningConfig(schedule=GradualSchedule(start=start, end=end, every=every))
    S = 0.875
    got = np.array([cfg.sparsity_at_step(t, T, S) for t in range(T)])
    want = np.array([zhu_gupta(t, T, S, start, end, every) for t in range(T)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    assert got[-1] == S and got[0] == 0.0
    # the same numbers inside jit
    jitted = jax.jit(lambda t: cfg.sparsity_at_step(t, T, jnp.float32(S)))
    np.testing.assert_allclose([float(jitted(jnp.int32(t))) for t in range(0, T, max(1, T // 25))],
                               want[:: max(1, T // 25)], atol=1e-6)


def test_realised_sparsity_follows_schedule():
    T, every, S = 60, 5, 0.75
    cfg = PruningConfig(schedule=GradualSchedule(every=every))
    w = randn((24, 10), 1)

    def check(t, params, state):
        nnz = int(np.count_nonzero(np.asarray(params["w"])))
        want = kept(zhu_gupta(t, T, S, 0.25, 0.75, every), w.size)
        # the ramp's k is rounded in float32 inside jit; the end state is exact
        assert abs(nnz - want) <= (0 if t >= round(0.75 * T) else 1), (t, nnz, want)

    run({"w": w}, {"w": S}, T, cfg, optax.adam(1e-2), check=check)


# ---------------------------------------------------------------- mask rules

def test_magnitude_keeps_the_largest():
    w = np.asarray(randn((37, 23), 2))
    for S in (0.3, 0.5, 0.875, 0.99):
        k = kept(S, w.size)
        mask = np.asarray(pruning.unstructured_mask(w, S))
        want = np.zeros(w.size, bool)
        want[np.argsort(-np.abs(w).ravel(), kind="stable")[:k]] = True
        np.testing.assert_array_equal(mask.ravel(), want)
        assert mask.sum() == k


def test_ties_give_exact_count_and_are_deterministic():
    w = np.zeros((6, 5), np.float32)
    w[0, :] = 3.0
    w[3, 1] = -3.0  # ties in magnitude
    mask = np.asarray(pruning.unstructured_mask(w, 0.9))  # k = round(0.1*30) = 3
    assert mask.sum() == 3
    # ties go to the lower flat index
    assert mask.ravel().nonzero()[0].tolist() == [0, 1, 2]
    mask0 = np.asarray(pruning.unstructured_mask(np.zeros((4, 4)), 0.5))
    assert mask0.sum() == 8 and mask0.ravel()[:8].all()
    # many ties, +inf and the extreme counts, against a stable numpy argsort
    rng = np.random.default_rng(0)
    score = rng.integers(0, 4, size=(9, 11)).astype(np.float32)
    score[rng.random(score.shape) < 0.1] = np.inf
    topk = jax.jit(pruning.topk_mask)
    for k in (0, 1, 7, 50, 98, 99):
        want = np.zeros(score.size, bool)
        want[np.argsort(-score.ravel(), kind="stable")[:k]] = True
        np.testing.assert_array_equal(np.asarray(topk(score, k)).ravel(), want)


def alg1_numpy(w, S, n, m):
    """Algorithm 1 with numpy: +inf on the top n of each group along axis 0, then top-k."""
    score = np.abs(w).astype(np.float64)
    g = score.reshape(w.shape[0] // m, m, -1)
    top = np.argsort(-g, axis=1, kind="stable")[:, :n, :]
    g2 = g.copy()
    np.put_along_axis(g2, top, np.inf, axis=1)
    flat = g2.reshape(-1)
    out = np.zeros(flat.size, bool)
    out[np.argsort(-flat, kind="stable")[: kept(S, w.size)]] = True
    return out.reshape(w.shape)


@pytest.mark.parametrize("pattern", ["2:4", "1:4", "4:8", "2:8"])
def test_nm_mask_is_algorithm_1(pattern):
    n, m = map(int, pattern.split(":"))
    w = np.asarray(randn((8 * m, 7), 3))
    for S in (0.1, 0.3, 1 - n / m):
        mask = np.asarray(pruning.nm_mask(w, S, n, m))
        np.testing.assert_array_equal(mask, alg1_numpy(w, S, n, m))
        groups = mask.reshape(8, m, 7).sum(axis=1)
        assert groups.min() >= n
        if S == 1 - n / m:
            assert (groups == n).all()


@pytest.mark.parametrize("pattern", ["2:4", "1:4", "4:8", "2:8"])
def test_gradual_nm_groups_valid(pattern):
    n, m = map(int, pattern.split(":"))
    S = 1 - n / m
    T = 40
    cfg = PruningConfig(pattern=pattern, schedule=GradualSchedule(every=4))
    params = {"k": randn((4 * m, 6), 4), "k2": randn((2 * m, 3), 5)}

    def check(t, params, state):
        for name, p in params.items():
            mask = np.asarray(pruning.masks(state)[name])
            groups = mask.reshape(-1, m, p.shape[1]).sum(axis=1)
            assert groups.min() >= n, (t, name)  # at least n kept during the ramp
            nnz = (np.asarray(p) != 0).reshape(-1, m, p.shape[1]).sum(axis=1)
            assert (nnz <= groups).all()
            if t >= round(0.75 * T):
                assert (groups == n).all() and (nnz <= n).all(), (t, name)

    run(params, {"k": S, "k2": S}, T, cfg, optax.adam(1e-2), check=check)


# ---------------------------------------------------------------- exact end state, zeros every step

SHAPES = [(7, 5), (33, 17), (64, 3), (13,), (5, 4, 3)]


def test_exact_final_sparsity_every_layer():
    params, targets = {}, {}
    for j, S in enumerate((0.5, 0.75, 0.875, 0.3)):
        for i, shape in enumerate(SHAPES):
            params[f"S{j}_l{i}"] = randn(shape, 10 * j + i)
            targets[f"S{j}_l{i}"] = S
    params["dense"], targets["dense"] = randn((4, 4), 99), 0.0
    T = 30
    params, state = run(params, targets, T, PruningConfig(schedule=GradualSchedule(every=3)), optax.sgd(0.1))
    report = pruning.layer_sparsity(params, {k: True for k in params})
    for k, p in params.items():
        size = int(np.prod(p.shape))
        want_nnz = kept(targets[k], size)
        assert int(np.count_nonzero(np.asarray(p))) == want_nnz, k
        mask = np.asarray(pruning.masks(state)[k])
        assert mask.shape == (() if k == "dense" else p.shape) and mask.sum() == (1 if k == "dense" else want_nnz)
        assert report[k] == 1 - want_nnz / size


@pytest.mark.parametrize("inner", ["adam", "adafactor"])
def test_pruned_weights_exactly_zero_after_every_step(inner):
    tx = optax.adam(1e-2) if inner == "adam" else optim.adafactor(0.01)
    S, T = 0.8, 30
    params = {"a": randn((16, 8), 6), "b": randn((9, 11), 7), "bias": jnp.zeros(8)}
    targets = {"a": S, "b": S, "bias": 0.0}

    def check(t, params, state):
        for k in ("a", "b"):
            p, mask = np.asarray(params[k]), np.asarray(pruning.masks(state)[k])
            assert (p[~mask] == 0.0).all(), (t, k)
            assert np.count_nonzero(p[mask]) == mask.sum()  # kept weights move, none stuck at 0
        assert np.count_nonzero(np.asarray(params["bias"])) > 0  # the bias is trained, not pruned

    run(params, targets, T, PruningConfig(schedule=GradualSchedule(every=2)), tx, check=check)


def test_oneshot_at_once_for_pretrained_checkpoints():
    w = randn((20, 10), 8)
    cfg = PruningConfig(method="oneshot", schedule=pruning.pretrained_schedule())
    assert cfg.schedule.start == 0.0

    def check(t, params, state):
        assert np.count_nonzero(np.asarray(params["w"])) == kept(0.75, 200), t
        if t == 0:  # the mask is the top-k of the checkpoint itself
            want = np.zeros(200, bool)
            want[np.argsort(-np.abs(np.asarray(w)).ravel(), kind="stable")[:50]] = True
            np.testing.assert_array_equal(np.asarray(pruning.masks(state)["w"]).ravel(), want)

    run({"w": w}, {"w": 0.75}, 10, cfg, optax.adam(1e-2), check=check)
    pruned, masks = pruning.prune({"w": w, "b": jnp.ones(3)}, {"w": 0.75, "b": 0.0})
    assert np.count_nonzero(np.asarray(pruned["w"])) == 50 and np.count_nonzero(np.asarray(pruned["b"])) == 3


def test_gmp_starting_at_once():
    cfg = PruningConfig(schedule=pruning.pretrained_schedule(GradualSchedule(every=2)))
    T = 20
    s = [cfg.sparsity_at_step(t, T, 0.5) for t in range(T)]
    assert s[0] == 0.0 and s[2] > 0.0 and s[-1] == 0.5
    np.testing.assert_allclose(s, [zhu_gupta(t, T, 0.5, 0.0, 0.75, 2) for t in range(T)], rtol=0, atol=1e-12)


def test_acdc_alternates_and_ends_sparse():
    T, phase, S = 100, 10, 0.75
    cfg = PruningConfig(method="acdc", acdc_phase_steps=phase, schedule=GradualSchedule(every=100))
    # window [25, 75): sparse 25-34, dense 35-44, sparse 45-54, dense 55-64, sparse 65-74; final from 75
    want = [S if (25 <= t < 35 or 45 <= t < 55 or 65 <= t) else 0.0 for t in range(T)]
    assert [float(cfg.sparsity_at_step(t, T, S)) for t in range(T)] == want
    w = randn((16, 5), 9)

    def check(t, params, state):
        nnz = np.count_nonzero(np.asarray(params["w"]))
        assert nnz == kept(want[t], 80), (t, nnz)

    run({"w": w}, {"w": S}, T, cfg, optax.adam(1e-2), check=check)
    ramp = PruningConfig(method="acdc", acdc_phase_steps=phase, acdc_sparsity="schedule")
    levels = [float(ramp.sparsity_at_step(t, T, S)) for t in (25, 45, 65, 75, 99)]
    assert 0.0 == levels[0] < levels[1] < levels[2] < levels[3] == S == levels[4]


def test_none_method_and_masks_inside_chain():
    w = randn((8, 8), 10)
    params, state = run({"w": w}, {"w": 0.5}, 5, PruningConfig(method="none"), optax.sgd(0.0))
    np.testing.assert_array_equal(np.asarray(params["w"]), np.asarray(w))
    tx = optax.chain(optax.identity(), pruning.sparsify(optax.sgd(0.1), {"w": 0.5}, 10))
    st = tx.init({"w": w})
    assert pruning.masks(st)["w"].dtype == jnp.bool_ and pruning.masks(st)["w"].shape == (8, 8)


# ---------------------------------------------------------------- bad input

def test_bad_input_raises_input_error():
    w = jnp.ones((8, 4))
    with pytest.raises(InputError, match=r"\[0, 1\)"):
        pruning.sparsify(optax.sgd(0.1), {"w": 1.0}, 10)
    with pytest.raises(InputError, match=r"\[0, 1\)"):
        pruning.unstructured_mask(w, 1.0)
    with pytest.raises(InputError, match="2:4"):
        pruning.nm_mask(w, 0.6, 2, 4)
    with pytest.raises(InputError, match="w: sparsity 0.8"):
        pruning.sparsify(optax.sgd(0.1), {"w": 0.8}, 10, PruningConfig(pattern="2:4")).init({"w": w})
    with pytest.raises(InputError, match="divisible"):
        pruning.sparsify(optax.sgd(0.1), {"w": 0.5}, 10, PruningConfig(pattern="2:8")).init({"w": jnp.ones((12, 3))})
    for bad in ("3-4", "blocky", "4:2", "0:4"):
        with pytest.raises(InputError, match="pattern"):
            PruningConfig(pattern=bad)
    with pytest.raises(InputError, match="method"):
        PruningConfig(method="rigl")


def test_mean_density_for_flop_accounting():
    # GMP: the step-exact mean approaches the schedule's integral (eq. 4) for long runs
    assert PruningConfig().mean_density(100_000, 0.75) == pytest.approx(
        GradualSchedule().density_integral(0.75), abs=1e-3)
    # AC/DC, paper setting (App. B): 250K steps, window [62.5K, 187.5K), 10K-step phases
    # -> sparse 6 * 10K + 5K steps inside the window plus the final 62.5K steps
    sparse_steps = 6 * 10_000 + 5_000 + 62_500
    assert PruningConfig(method="acdc").mean_density(250_000, 0.75) == pytest.approx(
        1 - 0.75 * sparse_steps / 250_000, abs=1e-12)


def _topk_reference(score: np.ndarray, k: int) -> np.ndarray:
    """numpy: the k largest scores, ties to the lower flat index (a stable descending sort)."""
    order = np.lexsort((np.arange(score.size), -score.ravel()))
    mask = np.zeros(score.size, bool)
    mask[order[:k]] = True
    return mask.reshape(score.shape)


def test_topk_masks_of_many_tensors_equal_a_sort_per_tensor():
    """The one-loop bisection over many tensors (what training runs) keeps exactly each tensor's
    k largest scores, ties to the lower index, +inf included, k = 0 and k = size included."""
    rng = np.random.default_rng(0)
    for trial in range(25):
        shapes = [tuple(int(d) for d in rng.integers(1, 9, size=rng.integers(1, 3))) for _ in range(rng.integers(1, 5))]
        scores = [rng.integers(0, 4, size=s).astype(np.float32) for s in shapes]  # many ties
        if trial % 3 == 0:
            scores[0].ravel()[0] = np.inf
        ks = [int(rng.integers(0, s.size + 1)) for s in scores]
        got = pruning.topk_masks([jnp.asarray(s) for s in scores], ks)
        for g, score, k in zip(got, scores, ks):
            np.testing.assert_array_equal(np.asarray(g), _topk_reference(score, k))
    w = rng.standard_normal((8, 4)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(pruning.unstructured_mask(w, 0.75)), _topk_reference(np.abs(w), 8))


def test_vmapped_lanes_with_the_axis_named_prune_as_each_run_alone():
    """The engine's lanes (`train.train_runs`): runs of different lengths and targets vmapped
    over a named axis. Each lane's masks and weights equal its run trained alone, and the
    mask update only runs (for all lanes) on steps where some lane is due."""
    flat = [randn((12, 10), 1), randn((7, 9), 2)]
    params = {"a": flat[0], "b": flat[1]}
    target_def = jax.tree_util.tree_structure(params)
    config = PruningConfig(schedule=GradualSchedule(every=3))
    lanes = [(0.75, 30), (0.5, 18)]  # (S, length): the lanes' update steps differ
    inner = optax.sgd(0.05)

    def tx_for(S, clock, axis_name=None):
        return pruning.sparsify_leaves(inner, target_def, [S, S], [pruning.keep_count(S, 120), pruning.keep_count(S, 63)],
                                       clock, config, axis_name=axis_name)

    def grads(t):
        return jax.tree.map(lambda p: jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(7), t * 100 + p.size),
                                                        p.shape), params)

    def train(S, clock, T, axis_name=None):
        tx = tx_for(S, clock, axis_name)
        p, state = params, tx.init(params)
        for t in range(T):
            u, state = tx.update(grads(t), state, p)
            p = optax.apply_updates(p, u)
        return p, pruning.masks(state)

    T = 12  # every lane still ramping: the masks differ from step to step
    alone = [train(S, config.clock(L), T) for S, L in lanes]
    S_in = jnp.asarray([S for S, _ in lanes], jnp.float32)
    # the engine's per-run inputs (Clock.as_data), stacked along the lanes
    clocks = jax.tree.map(lambda *v: jnp.stack(v), *(config.clock(L).as_data() for _, L in lanes))
    assert [x.dtype for x in clocks] == [jnp.int32] * 4 + [jnp.float32] * 2 + [jnp.bool_]
    together = jax.vmap(lambda S, clock: train(S, clock, T, axis_name="lanes"), axis_name="lanes")(S_in, clocks)
    for i, (p_alone, m_alone) in enumerate(alone):
        for k in ("a", "b"):
            np.testing.assert_array_equal(np.asarray(together[1][k][i]), np.asarray(m_alone[k]))
            np.testing.assert_allclose(np.asarray(together[0][k][i]), np.asarray(p_alone[k]), rtol=1e-6, atol=1e-7)
    # and the update is a real cond, not a select: the jaxpr keeps one
    jaxpr = jax.make_jaxpr(jax.vmap(lambda S, clock: train(S, clock, 1, axis_name="lanes"), axis_name="lanes"))(S_in, clocks)
    assert "cond" in str(jaxpr)


@pytest.mark.parametrize("runs", [
    # (method, pattern, S, length): an AC/DC run in the lanes of a GMP program (Table 6's groups)
    [("gmp", "unstructured", 0.75, 30), ("acdc", "unstructured", 0.5, 24), ("acdc", "unstructured", 0.75, 30)],
    # 2:4 and 1:4 in one program: only m shapes it, each lane feeds its own n (§4.1's groups)
    [("gmp", "2:4", 0.5, 30), ("gmp", "1:4", 0.75, 24), ("gmp", "1:4", 0.5, 30)],
], ids=["gmp+acdc", "2:4+1:4"])
def test_one_gmp_program_trains_acdc_and_every_n_of_an_m_as_each_run_alone(runs):
    """Each lane of the engine's mixed program (`PruningConfig.method_is_acdc`, `masks_for(n=)`)
    gives the masks and weights of its run alone under its own config, static method and pattern."""
    params = {"a": randn((12, 10), 1), "b": randn((8, 9), 2)}
    target_def = jax.tree_util.tree_structure(params)
    sched = GradualSchedule(start=0.2, end=0.8, every=2)
    inner = optax.sgd(0.05)

    def grads(t):
        return jax.tree.map(lambda p: jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(3), t * 100 + p.size),
                                                        p.shape), params)

    def train(cfg, S, clock, T, axis_name=None, n=None):
        keep = [pruning.keep_count(S, 120), pruning.keep_count(S, 72)]
        tx = pruning.sparsify_leaves(inner, target_def, [S, S], keep, clock, cfg, axis_name=axis_name, n=n)
        p, state = params, tx.init(params)
        for t in range(T):
            u, state = tx.update(grads(t), state, p)
            p = optax.apply_updates(p, u)
        return p, pruning.masks(state)

    T = 24  # inside the windows (from step 4 of 24 and 6 of 30), where AC/DC's 3-step phases flip the masks
    own = [PruningConfig(method=m, pattern=pat, schedule=sched, acdc_phase_steps=3) for m, pat, _, _ in runs]
    alone = [train(cfg, S, cfg.clock(L), T) for cfg, (_, _, S, L) in zip(own, runs)]
    group = PruningConfig(method="gmp", pattern=runs[0][1], schedule=sched, acdc_phase_steps=3)
    S_in = jnp.asarray([S for _, _, S, _ in runs], jnp.float32)
    clocks = jax.tree.map(lambda *v: jnp.stack(v), *(cfg.clock(L).as_data() for cfg, (_, _, _, L) in zip(own, runs)))
    n_in = jnp.asarray([0 if cfg.nm is None else cfg.nm[0] for cfg in own], jnp.int32)
    together = jax.vmap(lambda S, clock, n: train(group, S, clock, T, axis_name="lanes",
                                                 n=None if group.nm is None else n), axis_name="lanes")(S_in, clocks, n_in)
    for i, (p_alone, m_alone) in enumerate(alone):
        for k in ("a", "b"):
            np.testing.assert_array_equal(np.asarray(together[1][k][i]), np.asarray(m_alone[k]))
            np.testing.assert_allclose(np.asarray(together[0][k][i]), np.asarray(p_alone[k]), rtol=1e-6, atol=1e-7)
    # the lanes really differ: an AC/DC lane is dense again in a dense phase, a 1:4 lane keeps fewer per group
    final = [float(np.mean(np.asarray(m_alone["a"]))) for _, m_alone in alone]
    assert len({round(x, 3) for x in final}) >= 2


def test_schedule_details_decided_against_jaxpruner():
    """schedule.py's docstring: (1) Zhu & Gupta's formula, so the first update (at t_0) prunes
    nothing, where jaxpruner's `step + 1 - start` would already prune 0.0045 for S = 0.75 over a
    500-step ramp; (2) at least one weight per tensor, as jaxpruner keeps."""
    T, S = 1000, 0.75  # ramp from step 250 to 750: 500 steps
    cfg = PruningConfig(schedule=GradualSchedule(start=0.25, end=0.75, every=10))
    assert cfg.sparsity_at_step(250, T, S) == 0.0
    jaxpruner_first = S + (0.0 - S) * (1 - (250 + 1 - 250) / 500) ** 3
    assert jaxpruner_first == pytest.approx(0.0045, abs=5e-5)  # the number the docstring quotes
    assert cfg.sparsity_at_step(260, T, S) == pytest.approx(S - S * (1 - 10 / 500) ** 3, rel=1e-12)
    # (2): 4 weights at S = 0.9 would round to 0 kept; one survives, in the mask training uses
    assert pruning.keep_count(0.9, 4) == 1 and pruning.keep_count(0.5, 4) == 2
    w = jnp.asarray([0.1, -3.0, 0.2, 0.05])
    np.testing.assert_array_equal(np.asarray(pruning.mask_for(w, 0.9)), [False, True, False, False])
    assert int(jax.jit(lambda S: pruning.keep_count(S, 4))(jnp.float32(0.9))) == 1
