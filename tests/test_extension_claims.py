"""The claims of issue 12 (§4.1, §4.2, App. B) computed on constructed tables whose answer is known.

Every claim is tested on a table where it holds and on tables where it fails (and where it cannot be
measured). Expected values are worked out by hand from the construction, or are the paper's tables.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bigsparse_lib import ablations, fit, nm, paper, pretrained
from bigsparse_lib.errors import InputError
from bigsparse_lib.law import SparseLaw
from bigsparse_lib.schedule import GradualSchedule


def table3(rows: dict) -> pd.DataFrame:
    return pd.DataFrame({S: {f: g[i] for f, g in rows.items()} for i, S in enumerate((0.5, 0.75))})


PAPER3 = table3({f: (v[0.5], v[0.75]) for f, v in paper.TABLE3.items()})
# c_S = 0 and b_S = b_N: f(S)/f(0) = (1-S)^b_N, so gain(S) = 1/(1-S): gain(0.5) = 2, gain(0.75) = 4, extra = 1
DOUBLING = SparseLaw(a_S=10.0, b_S=0.3, c_S=0.0, b_N=0.3, a_D=1e6, b_D=0.2, c=1.0)


# ---- §4.1 --------------------------------------------------------------------------------------------
def test_half_patterns_inside_outside_and_unmeasured():
    ok = nm.half_patterns(table3({"n:4": (1.56, 1.6), "n:8": (1.67, 1.8)}), 1.6, (1.5, 1.7))
    assert ok.passed is True and ok.status == "holds"
    low = nm.half_patterns(table3({"n:4": (1.07, 1.1), "n:8": (1.67, 1.8)}), 1.6, (1.5, 1.7))
    assert low.passed is False and low.inside == {"n:4": False, "n:8": True}
    assert nm.half_patterns(PAPER3, 1.6, (float("nan"), float("nan"))).passed is None


def test_add_little_against_unstructured_extra():
    # n:4 extra 1.62/1.56 - 1 = 0.038, n:8 1.9/1.5 - 1 = 0.267; unstructured extra 1.0: ratios < 0.5
    ok = nm.add_little(table3({"n:4": (1.56, 1.62), "n:8": (1.5, 1.9)}), DOUBLING)
    assert ok.unstructured_extra == pytest.approx(1.0)
    assert ok.ratios["n:8"] == pytest.approx(0.4 / 1.5)
    assert ok.passed is True
    # 2:8 adds 60% over 4:8: more than half of what unstructured 75% adds
    assert nm.add_little(table3({"n:4": (1.56, 1.62), "n:8": (1.5, 2.4)}), DOUBLING).passed is False
    # unstructured 75% adds nothing (b_S = 0: gain 1 everywhere): no contrast, the claim fails
    flat = SparseLaw(a_S=10.0, b_S=0.0, c_S=0.0, b_N=0.3, a_D=1e6, b_D=0.2, c=1.0)
    assert nm.add_little(PAPER3, flat).passed is False


def test_add_little_holds_for_the_papers_table3_against_its_t5_law():
    assert nm.add_little(PAPER3, paper.TABLE7["t5"]).passed is True


def test_eight_over_four():
    e = nm.eight_over_four(PAPER3)
    assert e.difference == pytest.approx({0.5: 0.11, 0.75: 0.19}) and e.passed is True
    swapped = PAPER3.rename(index={"n:4": "n:8", "n:8": "n:4"})
    assert nm.eight_over_four(swapped).passed is False
    assert nm.eight_over_four(PAPER3.loc[["n:4"]]).passed is None


def test_refit_bounds_names_what_fails():
    good = SparseLaw(a_S=10.0, b_S=0.7, c_S=40.0, b_N=0.3, a_D=1e6, b_D=0.2, c=1.0)
    samples = [0.6, 0.65, 0.8]
    assert nm.refit_bounds({"n:4": good}, samples).passed is True
    zero_c = SparseLaw(a_S=10.0, b_S=0.7, c_S=0.0, b_N=0.3, a_D=1e6, b_D=0.2, c=1.0)
    tiny_b = SparseLaw(a_S=10.0, b_S=0.015, c_S=40.0, b_N=0.3, a_D=1e6, b_D=0.2, c=1.0)
    r = nm.refit_bounds({"n:4": zero_c, "n:8": tiny_b}, samples)
    assert r.passed is False
    assert "c_S" in r.why["n:4"] and "b_S" not in r.why["n:4"]
    assert "b_S = 0.015" in r.why["n:8"] and "[0.6, 0.8]" in r.why["n:8"]
    assert nm.refit_bounds({"n:4": good}, []).passed is None


# ---- §4.2 --------------------------------------------------------------------------------------------
def test_well_trained_share_of_the_last_tenth():
    steps = np.arange(0, 1001, 100)
    L = 1 + 10 / (1 + steps)  # at 900: 1 + 10/901; whole gain 11 - (1 + 10/1001)
    w = pretrained.well_trained(steps, L)
    expect = (10 / 901 - 10 / 1001) / (11 - 1 - 10 / 1001)
    assert w.share == pytest.approx(expect) and w.passed is True
    lin = pretrained.well_trained(steps, 10 - steps / 100)  # a straight line: the last tenth gains a tenth
    assert lin.share == pytest.approx(0.1) and lin.passed is False
    assert pretrained.well_trained(steps, np.full(steps.shape, 3.0)).passed is None
    with pytest.raises(InputError):
        pretrained.well_trained([0], [1.0])


def test_mask_updates_count_the_schedules_moves():
    assert pretrained.mask_updates(GradualSchedule(start=0.0, end=1.0, every=10), 100, 0.5) == 10
    # the window 25%-75% of 100 steps, every step: the ramp moves at steps 26..75
    assert pretrained.mask_updates(GradualSchedule(start=0.25, end=0.75, every=1), 100, 0.5) == 50


def test_pruning_budget():
    assert pretrained.pruning_budget(800, 45, 60).passed is True  # 5.625%
    assert pretrained.pruning_budget(800, 45, 20).passed is False  # too few mask updates
    assert pretrained.pruning_budget(800, 100, 60).passed is False  # 12.5% of pretraining


def test_table4_interval_scales_with_a_D():
    # N = 100, S = 0: cap = 3 * 100^-0.3; L* = cap + c + 0.01 => D = a_D * 0.01^-2 = 1e10; D_prune = 1e8: exc = 100
    N = 100.0
    L = 3.0 * N ** -0.3 + 1.0 + 0.01
    t4 = pd.DataFrame([{"dense_nnz": N, "sparsity": 0.0, "nnz": N, "D_pre": 1e9, "D_prune": 1e8, "loss_pruned": L}])
    row = [2.0, 0.5, 1.0, 0.3, 1e6, 0.5, 1.0]  # law's coefficients in Table 7's order
    coefs = np.array([row, row[:4] + [0.5e6] + row[5:]], dtype=np.float64)  # the second: a_D halved
    boot = fit.Bootstrap(SparseLaw, coefs, np.zeros(2), 0)
    out = pretrained.table4_interval(t4, boot, level=1.0)
    assert out.loc[0, "exc_lo"] == pytest.approx(50.0) and out.loc[0, "exc_hi"] == pytest.approx(100.0)
    assert out.loc[0, "inc_hi"] == pytest.approx(100.0 * 0.1 / 1.1)


def test_table4_claims_on_the_papers_table_and_broken_ones():
    def t4(exc, inc, S=(0.5, 0.75, 0.875)):
        return pd.DataFrame({"dense_nnz": 1.0, "sparsity": S, "exc_law": exc, "inc_law": inc})

    S16 = paper.TABLE4["S/16"]
    ok = pretrained.table4_claims(t4([v[0] for v in S16.values()], [v[1] for v in S16.values()]))
    assert ok.passed is True
    assert pretrained.table4_claims(t4([2.0, 3.0, 1.5], [0.2] * 3)).exc_falling is False
    assert pretrained.table4_claims(t4([4.0, 2.0, 0.8], [0.2] * 3)).exc_above_one is False
    assert pretrained.table4_claims(t4([4.0, 3.0, 2.0], [1.2, 0.2, 0.1])).passed is False
    assert pretrained.table4_claims(t4([np.nan] * 3, [np.nan] * 3)).passed is None
    unreachable = pretrained.table4_claims(t4([np.inf, 3.0, 2.0], [np.inf, 0.2, 0.1]))  # from scratch never gets there
    assert unreachable.exc_above_one is True and unreachable.inc_below_one is False
    assert pretrained.table4_claims(t4([4.0] * 3, [0.2] * 3), source="runs").passed is None


# ---- App. B --------------------------------------------------------------------------------------------
def t5_table(losses: dict) -> pd.DataFrame:
    return pd.DataFrame([{"start": s, "end": e, "frequency": f, "ours: loss": losses.get((s, e, f), 2.0)}
                         for (s, e, f) in paper.TABLE5])


def test_schedule_ablation_only_the_shortest_window_worse():
    short = (0.475, 0.625, 100)
    a = ablations.schedule_ablation(t5_table({short: 2.10, (0.25, 0.75, 50): 2.01}), [2.0, 2.02])
    assert a.noise == pytest.approx(0.02) and a.spread == pytest.approx(0.10)
    assert a.spread_over_noise == pytest.approx(5.0)
    assert a.worse == [short] and a.passed is True
    # a second schedule is clearly worse too
    assert ablations.schedule_ablation(t5_table({short: 2.10, (0.25, 0.75, 50): 2.05}), [2.0, 2.02]).passed is False
    # the shortest window within noise
    assert ablations.schedule_ablation(t5_table({short: 2.01}), [2.0, 2.02]).passed is False
    assert ablations.schedule_ablation(t5_table({short: 2.10}), [2.0]).passed is None


def t6_table(rows) -> pd.DataFrame:
    return pd.DataFrame([{"N": N, "S": S, "ours: GMP loss": g, "ours: AC/DC loss": a} for N, S, g, a in rows])


PAPER6 = t6_table([(N, S, math.log(g), math.log(a)) for N, r in zip((1.3e6, 42e6), paper.TABLE6.values())
                   for S, (g, a) in r.items()])


def test_gmp_vs_acdc_on_the_papers_table6():
    # paper: AC/DC is 0.0095 nats better at 1.3M, S = 0.875; worse by 0.030 and 0.050 at 42M
    g = ablations.gmp_vs_acdc(PAPER6, tol=0.01)
    assert g.equal_at_half and g.no_better_higher and g.worse_at_larger and g.passed is True
    assert ablations.gmp_vs_acdc(PAPER6, tol=0.005).no_better_higher is False
    one = ablations.gmp_vs_acdc(PAPER6[PAPER6["N"] == 1.3e6], tol=0.01)
    assert one.worse_at_larger is None and one.passed is True
    apart = t6_table([(1.0, 0.5, 2.0, 2.1), (1.0, 0.75, 1.9, 1.9)])
    assert ablations.gmp_vs_acdc(apart, tol=0.01).passed is False
    assert ablations.gmp_vs_acdc(apart, tol=float("nan")).passed is None


def test_regrow_steps_and_the_phase():
    w = np.linspace(-1.0, 1.0, 201)  # |w| has median 0.5
    assert ablations.regrow_steps(w, 0.5, 0.01) == 50
    assert ablations.acdc_phase(100, 50) == 50  # 4% of 100 = 4 steps would not let weights regrow
    assert ablations.acdc_phase(10_000, 5) == 400
    with pytest.raises(InputError):
        ablations.regrow_steps(w, 0.5, 0.0)


def test_regrow_from_params_reads_the_threshold_of_each_pruned_kernel():
    k1 = np.array([[0.0, 0.0], [0.3, 0.4]])  # kept 0.3, 0.4: threshold 0.3, RMS sqrt(0.125)
    k2 = np.array([[0.0, 1.0], [1.0, 1.0]])  # threshold 1, RMS 1
    dense = np.ones((2, 2))  # no zeros: not pruned, ignored; a bias (1-D) too
    params = {"a": k1, "b": k2, "c": dense, "bias": np.zeros(3)}
    expect = np.median([0.3 / (0.01 * math.sqrt(0.125)), 1.0 / 0.01])
    assert ablations.regrow_from_params(params, 0.01) == pytest.approx(expect)
    with pytest.raises(InputError):
        ablations.regrow_from_params({"c": dense}, 0.01)


@pytest.mark.parametrize("family", ["t5", "vit"])
def test_toy_pretrained_grid_prunes_for_5_6_percent_with_50_mask_updates(family):
    from bigsparse_lib.sweep.grids import PRETRAINED
    from bigsparse_lib.train import default_schedule

    spec = PRETRAINED[family, "toy"]
    updates = pretrained.mask_updates(default_schedule(spec.prune_steps, pretrained=True), spec.prune_steps, 0.5)
    assert pretrained.pruning_budget(spec.pretrain_steps, spec.prune_steps, updates).passed is True
