"""The gradual schedule equals Zhu & Gupta's (2017) formula."""
import numpy as np
import pytest

from bigsparse_lib.schedule import PAPER_SCHEDULE, GradualSchedule


def zhu_gupta(step, total, S, start, end, every):
    """Zhu & Gupta eq. 1, written out: s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n Δt))^3, s_i = 0,
    evaluated at the last mask update (every `every` steps)."""
    t0, t_end = round(start * total), round(end * total)
    t = (step // every) * every
    if step >= t_end:
        t = max(t, t_end)
    if t < t0:
        return 0.0
    frac = min((t - t0) / (t_end - t0), 1.0)
    return S + (0.0 - S) * (1 - frac) ** 3


@pytest.mark.parametrize("S", [0.5, 0.75, 0.875])
def test_step_schedule_matches_zhu_gupta(S):
    total = 4000
    sched = GradualSchedule(every=100)
    ours = np.array([sched.sparsity_at_step(k, total, S) for k in range(total)])
    ref = np.array([zhu_gupta(k, total, S, 0.25, 0.75, 100) for k in range(total)])
    np.testing.assert_allclose(ours, ref, atol=1e-15)
    assert ours[0] == 0.0 and ours[-1] == S


def test_end_step_reaches_the_target_exactly_when_it_rounds_early():
    """T = 1003: round(0.75 * 1003) / 1003 < 0.75, yet from that step on the sparsity is exactly S."""
    sched = GradualSchedule(every=10)
    assert sched.sparsity_at_step(752, 1003, 0.5) == 0.5
    assert sched.sparsity_at_step(751, 1003, 0.5) < 0.5


def test_schedule_in_jit_matches_numpy():
    import jax
    import jax.numpy as jnp

    f = jax.jit(lambda k: PAPER_SCHEDULE.sparsity_at_step(k, 1000, jnp.float32(0.75)))
    for k in (0, 249, 250, 301, 600, 749, 750, 999):
        assert float(f(k)) == pytest.approx(PAPER_SCHEDULE.sparsity_at_step(k, 1000, 0.75), abs=1e-7)


def test_bad_schedules_rejected():
    with pytest.raises(ValueError):
        GradualSchedule(start=0.8, end=0.2)
    with pytest.raises(ValueError):
        GradualSchedule(every=0)


@pytest.mark.parametrize("start, end", [(0.25, 0.75), (0.475, 0.625), (0.375, 0.875), (0.5, 0.5)])
def test_the_window_as_program_data_gives_the_fixed_schedule_bit_for_bit(start, end):
    """The engine feeds each run's window (start, end - start) to one compiled program as float32
    data, so that Table 5's schedules group; every step's sparsity must be the one the schedule
    with the window baked in gives (a span of 0 is one-shot pruning)."""
    import jax
    import jax.numpy as jnp

    sched = GradualSchedule(start=start, end=end, every=7)
    total, S = 1003, 0.875
    steps = jnp.arange(total, dtype=jnp.int32)
    end_step = int(round(end * total))
    fixed = jax.jit(lambda t: sched.sparsity_at_step(t, jnp.int32(total), jnp.float32(S), every=jnp.int32(7),
                                                     end_step=jnp.int32(end_step)))(steps)
    as_data = jax.jit(lambda t, a, b: GradualSchedule(every=7).sparsity_at_step(
        t, jnp.int32(total), jnp.float32(S), every=jnp.int32(7), end_step=jnp.int32(end_step), start=a, span=b))(
        steps, np.float32(start), np.float32(end - start))
    np.testing.assert_array_equal(np.asarray(fixed), np.asarray(as_data))
    host = np.array([sched.sparsity_at_step(k, total, S) for k in range(total)])
    np.testing.assert_allclose(np.asarray(as_data), host, atol=1e-6)
    assert float(as_data[-1]) == pytest.approx(S) and float(as_data[0]) == 0.0
