"""bigsparse_lib.evidence: the figures of issue 11 §3 on constructed tables whose answer is known.

A table generated exactly from eq. 3 must pass every claim (fit error ~0, c equal to the
planted c); tables changed in one place must fail exactly the claim that place breaks.
Expected values are computed here from the planted law, not taken from the code under test.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bigsparse_lib import evidence as E
from bigsparse_lib.errors import InputError
from bigsparse_lib.law import SparseLaw, gain

# Planted coefficients of the order of a toy sweep: the loss falls with N, D and S everywhere.
LAW = SparseLaw(a_S=20.0, b_S=0.9, c_S=50.0, b_N=0.3, a_D=5e8, b_D=0.35, c=0.9)
SIZES = (1e6, 2e6, 4e6, 8e6)  # 4 sizes in 2x steps
LENGTHS = (1e9, 2e9, 4e9)  # 3 lengths in 2x steps
SPARSITIES = (0.0, 0.5, 0.75, 0.875)
FAST = dict(starts=16, resamples=8)  # few starts and resamples: the planted tables are noiseless


def table(law=LAW, seeds=(0,), sizes=SIZES, lengths=LENGTHS, sparsities=SPARSITIES, irreducible=None):
    """A tidy sweep exactly on `law`: every S x size x D (x seed); nnz = size, as the grids pair them."""
    rows = [{"sparsity": S, "nnz": N, "nnz_target": N, "data": D, "loss": float(law.loss(S, N, D)),
             "seed": s, "family": "toy"}
            for s in seeds for S in sparsities for N in sizes for D in lengths]
    df = pd.DataFrame(rows)
    if irreducible is not None:
        df["irreducible_loss"] = irreducible
    return df


def at(df, **where):
    mask = np.ones(len(df), bool)
    for k, v in where.items():
        mask &= np.isclose(df[k], v)
    return mask


@pytest.fixture(scope="module")
def exact():
    df = table(seeds=(0, 1), irreducible=LAW.c)
    return df, E.report(df, **FAST)


# ---- the exact table: every claim holds ------------------------------------------------------------
def test_exact_table_passes_every_claim(exact):
    df, rep = exact
    assert rep.verdicts == {k: True for k in rep.verdicts}
    assert rep.passed is True
    n_pairs_N = len(SPARSITIES) * len(LENGTHS) * (len(SIZES) - 1)
    n_pairs_D = len(SPARSITIES) * len(SIZES) * (len(LENGTHS) - 1)
    assert (rep.monotone_N.holds, rep.monotone_N.total) == (n_pairs_N, n_pairs_N)
    assert (rep.monotone_D.holds, rep.monotone_D.total) == (n_pairs_D, n_pairs_D)
    assert rep.monotone_N.failing.empty and rep.monotone_D.failing.empty
    assert rep.fit.mean_rel_err < 1e-5 and rep.fit.n_runs == len(df)
    assert rep.fit.c == pytest.approx(LAW.c, rel=1e-4)
    assert rep.fit.noise_floor == 0  # both seeds lie exactly on the law
    assert abs(rep.fit.floor_gap) < 1e-4
    ex = rep.extrapolation
    assert ex.held_size == max(SIZES) and ex.n_held == 2 * len(SPARSITIES) * len(LENGTHS)
    assert ex.held_out.sum() == ex.n_held and ex.mean_rel_err < 1e-4
    assert rep.gain.gain_half == pytest.approx(float(gain(LAW, 0.5)), rel=1e-4)
    assert rep.gain.interval[0] > 1 and rep.gain.boot.coefs.shape == (FAST["resamples"], 7)
    assert rep.gain.beats_dense == (len(SIZES), len(SIZES))
    assert rep.noise.ratio == 0 and len(rep.noise.points) == len(SPARSITIES) * len(SIZES) * len(LENGTHS)
    assert set(rep.robust) == {1} and rep.robust[1].passed is True
    claims = rep.claims()
    assert len(claims) == 11 and set(claims["status"]) == {"holds"}


def test_halvings_are_the_planted_drops(exact):
    _, rep = exact
    D = max(LENGTHS)
    for r in rep.gain.halvings.itertuples():  # L(S_a) - L(S_b) = a_S ((1-a)^b_S - (1-b)^b_S) N^-b_N, mean over N
        want = np.mean([LAW.a_S * ((1 - r.from_S) ** LAW.b_S - (1 - r.to_S) ** LAW.b_S) * N ** -LAW.b_N
                        for N in SIZES])
        assert r.drop == pytest.approx(want, rel=1e-9)
    assert rep.gain.diminishing and rep.gain.rising


def test_table7_laws_rise_but_are_convex_in_S():
    """Why concavity in S is reported and not required: the paper's own laws are convex in S on [0, 0.875]."""
    from bigsparse_lib import paper

    for fam in ("t5", "vit"):
        sg = E.sparsity_gain(table(), paper.TABLE7[fam])
        assert sg.rising is True and sg.concave_in_S is False


# ---- each failing claim is detected -------------------------------------------------------------------
def test_a_crossing_line_fails_monotone_in_N():
    df = table()
    line = at(df, sparsity=0.875, data=max(LENGTHS))
    df.loc[line, "loss"] = df.loc[line, "loss"].to_numpy()[::-1]  # that line now rises with N: 3 failing pairs
    m = E.monotone(df, "N")
    assert (m.holds, m.total) == (33, 36) and m.passed is False
    assert sorted(zip(m.failing["from"], m.failing["to"])) == [(1e6, 2e6), (2e6, 4e6), (4e6, 8e6)]
    assert set(m.failing["sparsity"]) == {0.875} and set(m.failing["data"]) == {max(LENGTHS)}


def test_one_broken_pair_in_36_still_meets_the_95_percent_threshold():
    df = table()
    i = at(df, sparsity=0.5, nnz=8e6, data=1e9)
    df.loc[i, "loss"] = float(LAW.loss(0.5, 4e6, 1e9)) + 1e-3  # 8e6 now worse than 4e6 on that line
    m = E.monotone(df, "N")
    assert (m.holds, m.total) == (35, 36) and m.passed is True
    assert len(m.failing) == 1 and m.failing.iloc[0]["from"] == 4e6


def test_loss_rising_with_D_fails_monotone_in_D():
    df = table()
    for N in SIZES[:2]:
        for S in SPARSITIES:
            df.loc[at(df, sparsity=S, nnz=N, data=max(LENGTHS)), "loss"] += 1.0
    m = E.monotone(df, "D")
    assert (m.holds, m.total) == (32 - 8, 32) and m.passed is False  # 4 S x 2 sizes broken


def test_seeds_are_averaged_before_counting():
    df = table(seeds=(0, 1))
    i = at(df, sparsity=0.0, nnz=2e6, data=1e9, seed=1)
    gap = float(LAW.loss(0, 1e6, 1e9) - LAW.loss(0, 2e6, 1e9))
    df.loc[i, "loss"] += 1.5 * gap  # seed 1 alone crosses; the mean of the two seeds does not (0.75 gap)
    assert E.monotone(df, "N").passed is True and E.monotone(df, "N").holds == 36
    assert E.monotone(E.select_seeds(df, [1]), "N").holds == 35
    means = E.seed_means(df)
    row = means[at(means, sparsity=0.0, size=2e6, data=1e9)].iloc[0]
    assert row["loss"] == pytest.approx(float(LAW.loss(0, 2e6, 1e9)) + 0.75 * gap)
    assert row["seeds"] == 2 and row["spread"] == pytest.approx(1.5 * gap)


def test_a_noisy_seed_fails_the_noise_claim():
    offset = 0.05
    df = table(seeds=(0, 1))
    df.loc[df["seed"] == 1, "loss"] += offset  # spread = offset at every point; seed means shift uniformly
    gaps = []
    for S in SPARSITIES:
        for D in LENGTHS:
            L = [float(LAW.loss(S, N, D)) for N in SIZES]
            for i in range(len(L)):
                gaps.append(np.mean([abs(L[j] - L[i]) for j in (i - 1, i + 1) if 0 <= j < len(L)]))
    want = offset / np.mean(gaps)
    assert want > E.NOISE_RATIO  # the planted spread is too large for the planted gaps
    n = E.noise(df)
    assert n.ratio == pytest.approx(want, rel=1e-9) and n.passed is False
    quiet = table(seeds=(0, 1))
    quiet.loc[quiet["seed"] == 1, "loss"] += offset / 20  # ratio 1/20 of the above: now small against signal
    assert E.noise(quiet).ratio == pytest.approx(want / 20, rel=1e-9)
    assert (want / 20 < E.NOISE_RATIO) == E.noise(quiet).passed


def test_noise_by_size_locates_the_noisy_size():
    df = table(seeds=(0, 1))
    small, other = min(SIZES), sorted(SIZES)[1]
    df.loc[(df["seed"] == 1) & (df["nnz"] == small), "loss"] += 0.04  # only the smallest size is noisy
    df.loc[(df["seed"] == 1) & (df["nnz"] == other), "loss"] += 0.01
    by = E.noise(df).by_size
    assert list(by.index) == sorted(SIZES) and (by["points"] == len(SPARSITIES) * len(LENGTHS)).all()
    assert by.loc[small, "mean spread"] == pytest.approx(0.04)
    assert by.loc[other, "mean spread"] == pytest.approx(0.01)
    assert (by.loc[[s for s in SIZES if s not in (small, other)], "mean spread"] == 0).all()
    n = E.noise(df)
    assert by.loc[small, "ratio"] == pytest.approx(0.04 / n.points[n.points["size"] == small]["gap"].mean())


def test_noise_by_data_locates_the_noisy_length():
    df = table(seeds=(0, 1))
    short = min(LENGTHS)
    df.loc[(df["seed"] == 1) & (df["data"] == short), "loss"] += 0.03  # only the shortest runs are noisy
    n = E.noise(df)
    by = n.by_data
    assert list(by.index) == sorted(LENGTHS) and (by["points"] == len(SPARSITIES) * len(SIZES)).all()
    assert by.loc[short, "mean spread"] == pytest.approx(0.03)
    assert (by.loc[[D for D in LENGTHS if D != short], "mean spread"] == 0).all()
    assert by.loc[short, "ratio"] == pytest.approx(0.03 / n.points[n.points["data"] == short]["gap"].mean())
    # the pooled ratio weighs every length's points alike
    assert n.ratio == pytest.approx((by["mean spread"] * by["points"]).sum() / (by["mean gap"] * by["points"]).sum())


def test_noise_interval_brackets_the_pointwise_ratios():
    # Two points with several seeds, at one (S, D) line of two sizes: a resample holds (A, A),
    # (B, B) or one of each, with probabilities 1/4, 1/4, 1/2, so the 95% percentile interval runs
    # from the smaller pointwise ratio to the larger, and every resample lies between them.
    rows = [{"sparsity": 0.0, "nnz": N, "data": 1e9, "seed": s, "loss": L + s * d}
            for N, L, d in ((1e6, 3.0, 0.02), (2e6, 2.9, 0.05)) for s in (0, 1)]
    n = E.noise(pd.DataFrame(rows))
    gap = abs((2.9 + 0.025) - (3.0 + 0.01))  # between the seed means
    assert list(n.points["spread"]) == pytest.approx([0.02, 0.05])
    assert n.ratio == pytest.approx((0.02 + 0.05) / 2 / gap)
    lo, hi = n.interval(resamples=4000)
    assert (lo, hi) == pytest.approx((0.02 / gap, 0.05 / gap))
    assert n.interval(resamples=4000) == (lo, hi)  # seeded: the same interval every time
    # on a whole table the pooled ratio lies inside its interval; one seed measures nothing
    df = table(seeds=(0, 1))
    df.loc[df["seed"] == 1, "loss"] += 0.01
    flat = E.noise(df)
    assert flat.interval(resamples=200)[0] <= flat.ratio <= flat.interval(resamples=200)[1]
    assert E.noise(table().drop(columns="seed")).interval() == pytest.approx((np.nan, np.nan), nan_ok=True)


def test_one_seed_leaves_noise_and_robustness_unmeasured():
    df = table().drop(columns="seed")  # an old table: no seed column is one seed
    assert E.seeds(df) == [0]
    assert E.noise(df).passed is None
    rep = E.report(df, irreducible=LAW.c, starts=16, resamples=0)
    assert rep.noise.passed is None and rep.robust_passed is None and not rep.robust
    assert rep.claims().loc["seed spread small against size gap", "status"] == "is not measured"
    assert rep.passed is True  # the measured claims all hold


def test_c_far_below_the_floor_fails():
    irreducible = 1.5 * LAW.c  # the data's floor is above the planted (and fitted) c
    q = E.fit_quality(table(irreducible=irreducible), starts=16)
    assert q.error_passed is True
    assert q.floor_gap == pytest.approx((irreducible - LAW.c) / irreducible, rel=1e-3)
    assert q.floor_passed is False
    assert E.fit_quality(table(), starts=16).floor_passed is None  # no floor known: not measured


def test_a_table_eq3_cannot_fit_fails_the_fit_error():
    df = table()
    sign = np.where((np.arange(len(df)) % 2) == 0, 1.0, -1.0)  # a checkerboard of +-5% no smooth law follows
    df["loss"] *= 1 + 0.05 * sign
    q = E.fit_quality(df, starts=16)
    assert q.mean_rel_err > E.FIT_MEAN_REL_ERR and q.error_passed is False


def test_noise_floor_of_three_seeds_by_hand():
    df = table(sizes=(1e6, 2e6), lengths=(1e9, 2e9), sparsities=(0.0, 0.5), seeds=(0, 1, 2))
    one = at(df, sparsity=0.0, nnz=1e6, data=1e9)
    df.loc[one, "loss"] = [1.0, 1.1, 1.2]  # the only point whose seeds differ
    # mean 1.1; |L - mean| = 0.1, 0, 0.1; times sqrt(3/2), over 1.1; the other 21 runs deviate by 0
    want = (0.1 + 0.0 + 0.1) * np.sqrt(3 / 2) / 1.1 / len(df)
    assert E.noise_floor(df) == pytest.approx(want, rel=1e-12)


def test_noise_floor_is_what_the_true_law_scores_on_noisy_runs():
    """Gaussian noise of 2% on every run of 8 seeds: the floor estimates E|e|/mu = 0.02 sqrt(2/pi), which is
    also the mean |relative error| of the planted law itself on those runs (384 runs: the estimate's own
    error is about 4%)."""
    df = table(seeds=tuple(range(8)))
    rng = np.random.default_rng(0)
    df["loss"] *= 1 + 0.02 * rng.standard_normal(len(df))
    floor = E.noise_floor(df)
    assert floor == pytest.approx(0.02 * np.sqrt(2 / np.pi), rel=0.1)
    assert floor == pytest.approx(E.relative_errors(LAW, df).mean(), rel=0.1)
    q = E.fit_quality(df, starts=16)
    assert q.noise_floor == floor and q.mean_rel_err > 0.5 * floor  # the fit cannot beat the noise by much
    lo, hi = E.noise_floor_interval(df, resamples=400)
    assert lo < floor < hi and lo < 0.02 * np.sqrt(2 / np.pi) < hi and hi - lo < 0.3 * floor
    # seed 0 alone: one run per point, so the noise is not measured
    assert np.isnan(E.noise_floor(df[df["seed"] == 0])) and np.isnan(E.noise_floor(table().drop(columns="seed")))
    assert E.noise_floor_interval(df[df["seed"] == 0]) == pytest.approx((np.nan, np.nan), nan_ok=True)


def test_a_largest_size_off_the_law_fails_the_extrapolation():
    df = table()
    big = df["nnz"] == max(SIZES)
    df.loc[big, "loss"] *= 1.1  # the rest stays exactly on the law, so the fit without them recovers it
    ex = E.extrapolation(df, starts=16)
    assert ex.fit_mean_rel_err < 1e-5
    assert ex.mean_rel_err == pytest.approx(1 - 1 / 1.1, rel=1e-3) and ex.passed is False


def test_half_sparsity_worse_than_dense_fails():
    df = table()
    i = at(df, sparsity=0.5, nnz=4e6, data=max(LENGTHS))
    df.loc[i, "loss"] = float(LAW.loss(0.0, 4e6, max(LENGTHS))) * 1.01
    sg = E.sparsity_gain(df, LAW)
    assert sg.beats_dense == (3, 4) and sg.beats_dense_passed is False and sg.passed is False
    assert sg.pairs.set_index("size").loc[4e6, "holds"] == False  # noqa: E712 (numpy bool)


def test_a_law_where_sparsity_hurts_fails_rising_and_the_interval():
    hurts = LAW.replace(b_S=-0.5)  # (1-S)^-0.5 grows with S: sparse is worse at every point
    rep = E.report(table(law=hurts, seeds=(0, 1), irreducible=LAW.c), **FAST)
    assert rep.gain.beats_dense == (0, 4)
    assert rep.gain.rising is False and rep.gain.gain_half < 1
    assert rep.gain.interval[1] < 1 and rep.gain.interval_passed is False
    assert rep.gain.diminishing is False and rep.passed is False
    assert rep.monotone_N.passed and rep.fit.error_passed  # the rest of the law still holds


def test_gains_growing_per_halving_fail_diminishing_returns():
    df = table()
    D = max(LENGTHS)
    for N in SIZES:  # 87.5% now improves on 75% by more than 75% did on 50%
        drop = float(LAW.loss(0.5, N, D) - LAW.loss(0.75, N, D))
        df.loc[at(df, sparsity=0.875, nnz=N, data=D), "loss"] = float(LAW.loss(0.75, N, D)) - 2 * drop
    sg = E.sparsity_gain(df, LAW)
    drops = sg.halvings.set_index("to_S")["drop"]
    assert drops[0.875] == pytest.approx(2 * drops[0.75], rel=1e-9)
    assert sg.diminishing is False and sg.passed is False


def test_a_bad_second_seed_fails_robustness():
    df = table(seeds=(0, 1), irreducible=LAW.c)
    line = at(df, sparsity=0.75, data=max(LENGTHS), seed=1)
    df.loc[line, "loss"] = df.loc[line, "loss"].to_numpy()[::-1] + 0.5  # seed 1 alone: a line rising with N
    rep = E.report(df, starts=16, resamples=0)
    assert rep.robust[1].monotone_N.passed is False
    assert rep.robust_passed is False and rep.passed is False
    assert E.report(df, seeds=[0], starts=16, resamples=0).passed is True  # the lucky seed alone passes


# ---- grids too small to measure, bad input ------------------------------------------------------------
def test_a_smoke_sized_grid_reports_what_it_cannot_measure():
    df = table(sizes=(3e3, 12e3), lengths=(1e4, 2e4), sparsities=(0.0, 0.5))
    ex = E.extrapolation(df, starts=16)
    assert ex.passed is None and ex.law is None and "1 size" in ex.reason
    assert E.fit_quality(df, starts=16).error_passed is True
    assert E.sparsity_gain(df, LAW).diminishing is None  # one halving measured: nothing to compare it with


def test_bad_input_is_an_input_error():
    df = table()
    with pytest.raises(InputError, match="missing column"):
        E.monotone(df.drop(columns="loss"))
    with pytest.raises(InputError, match="axis"):
        E.monotone(df, "S")
    with pytest.raises(InputError, match="seeds"):
        E.report(df, seeds=[7], starts=2)
    with pytest.raises(InputError, match="one family"):
        E.seed_means(pd.concat([df, df.assign(family="other")]))


def test_size_falls_back_to_nnz_without_targets():
    df = table().drop(columns="nnz_target")
    df["nnz"] *= 1 + 1e-6  # exact counts differ from the targets in the 7th digit
    assert set(E.sizes(df)) == set(SIZES)


# ---- the §3.2 observations and Table 1, moved from the chapters ----------------------------------------
def test_observations_of_a_pure_power_law():
    law = LAW.replace(a_D=1e-20)  # a negligible data term: log(L - c) is linear in log N with slope -b_N
    df = table(law=law)
    obs = E.observations(df, c=law.c + (law.a_D / max(LENGTHS)) ** law.b_D)
    np.testing.assert_allclose(obs["slope d log(L-c)/d log N (mean over lengths)"], -law.b_N, rtol=1e-6)
    for S in SPARSITIES:
        want = np.mean([law.loss(S, N, D) / law.loss(0.0, N, D) for N in SIZES for D in LENGTHS])
        assert obs.loc[S, "L / L_dense at equal N, D"] == pytest.approx(want, rel=1e-12)
        shift = np.mean([law.loss(S, N, max(LENGTHS)) - law.loss(S, N, min(LENGTHS)) for N in SIZES])
        assert obs.loc[S, "L(longest) - L(shortest)"] == pytest.approx(shift, rel=1e-9)
        assert obs.loc[S, "sizes where it fell"] == "4/4"


def test_size_gaps_of_eq3_shrink_by_two_to_the_minus_b_N():
    """On a table exactly on eq. 3, each gap between adjacent sizes (2x steps) is 2^-b_N times
    the one before; a table whose loss falls faster than a power law fails `shrinking`."""
    df = table()
    g = E.size_gaps(df)
    assert g.data == max(LENGTHS) and g.sparsity == 0.0
    want = [LAW.loss(0.0, a, max(LENGTHS)) - LAW.loss(0.0, b, max(LENGTHS)) for a, b in zip(SIZES, SIZES[1:])]
    np.testing.assert_allclose(g.gaps.to_numpy(), want, rtol=1e-9)
    np.testing.assert_allclose(g.ratios, 2.0 ** -LAW.b_N, rtol=1e-9)
    assert g.shrinking is True
    # the widest size learns much faster: its gap grows, as no power law in N has it
    fast = df.copy()
    fast.loc[at(fast, nnz=SIZES[-1], sparsity=0.0), "loss"] -= 0.5
    assert E.size_gaps(fast).shrinking is False
    assert E.size_gaps(fast, sparsity=0.5).shrinking is True  # the other lines are untouched
    with pytest.raises(InputError, match="sparsity 0.3"):
        E.size_gaps(df, sparsity=0.3)


def test_equal_width_on_eq3_and_on_a_width_bound_table():
    """Sizes in 2x steps and S halving the density: size N at S shares the dense width N / (1 - S)
    with the next sizes' sparser points. On eq. 3 the loss at one width rises with S, as
    (1 - S)^-b_N; on a table whose loss depends on the width alone, the spread is 0."""
    df = table()
    ew = E.equal_width(df)
    D = max(LENGTHS)
    assert ew.data == D
    W = SIZES[-1]  # the dense size of the largest model, and of 4e6 non-zeros at 0.5, 2e6 at 0.75, 1e6 at 0.875
    row = ew.losses.loc[W].dropna()
    assert list(row.index) == list(SPARSITIES)
    want = [LAW.loss(S, W * (1 - S), D) for S in SPARSITIES]
    np.testing.assert_allclose(row.to_numpy(), want, rtol=1e-12)
    assert np.all(np.diff(row.to_numpy()) > 0)  # sparser at one width: worse, on eq. 3
    assert ew.spreads.loc[W] == pytest.approx(want[-1] - want[0], rel=1e-12)
    # the dense line's gaps between adjacent widths are those of eq. 3 in N
    assert ew.losses.loc[SIZES[0], 0.0] - ew.losses.loc[SIZES[1], 0.0] == pytest.approx(
        LAW.loss(0.0, SIZES[0], D) - LAW.loss(0.0, SIZES[1], D), rel=1e-12)
    assert ew.ratio > 0
    # the width alone sets the loss: every S at one width has the same loss
    flat = df.assign(loss=[10.0 - np.log(N / (1 - S)) for N, S in zip(df["nnz"], df["sparsity"])])
    ew0 = E.equal_width(flat)
    assert ew0.spreads.max() == pytest.approx(0.0, abs=1e-12) and ew0.ratio == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(ew0.gaps.to_numpy(), np.log(2.0), rtol=1e-12)
    # an exported table names each run's dense size itself
    named = df.assign(dense_params=1.0)
    assert list(E.equal_width(named).losses.index) == [1.0]
    with pytest.raises(InputError, match="length 3"):
        E.equal_width(df, data=3)


@pytest.mark.parametrize("preset", ["smoke", "toy"])
def test_uncounted_weights_grow_with_S_for_vit_and_stay_level_for_t5(preset):
    """At equal N a sparse model's dense shape is 1 / (1 - S) times the size. ViT keeps its patch
    embedding and head dense, and both grow with the width (~ sqrt of the size), so its uncounted
    non-zeros grow by about (1 - S)^-1/2; T5 prunes its vocab matrices to the dense model's count
    (App. A), so its stay level."""
    N = {"smoke": 3_000, "toy": 12_000}[preset]
    vit = E.uncounted_weights("vit", preset, N)
    assert list(vit["S"]) == list(E.HALVINGS)
    np.testing.assert_allclose(vit["backbone weights"] * (1 - vit["S"]), N, rtol=0.25)  # the nearest width
    assert np.all(np.diff(vit["uncounted non-zeros"]) > 0)
    growth = vit["uncounted non-zeros"].iloc[-1] / vit["uncounted non-zeros"].iloc[0]
    assert 0.6 * 8 ** 0.5 < growth < 1.25 * 8 ** 0.5  # 1 / (1 - 0.875) = 8 times the backbone
    np.testing.assert_allclose(vit["uncounted / N"], vit["uncounted non-zeros"] / N)
    t5 = E.uncounted_weights("t5", preset, N)
    # level up to the norms, which grow with the width: 11% from S = 0 to 0.875 at smoke, 4% at toy
    np.testing.assert_allclose(t5["uncounted non-zeros"], t5["uncounted non-zeros"].iloc[0], rtol=0.15)
    assert t5["uncounted non-zeros"].iloc[-1] / t5["uncounted non-zeros"].iloc[0] < 0.5 * growth


def test_describe_grid_is_table1_of_the_smoke_grid():
    from bigsparse_lib import sweep

    spec = sweep.grids.MAIN["t5", "smoke"]
    row = E.describe_grid(sweep.make_grid("t5", "smoke", "main"))
    assert row["runs"] == len(spec.points()) * len(spec.steps)
    assert row["steps"] == ", ".join(f"{s:,}" for s in spec.steps)
    assert row["sparsities"] == ", ".join(f"{s:g}" for s in spec.sparsities) and row["seeds"] == "0"


def test_fig2_beside_paper_draws_one_panel_per_length_in_each_row():
    from bigsparse_lib import plots

    ours = E.seed_means(table(seeds=(0, 1)))
    released = table(lengths=LENGTHS + (8e9,))  # the paper's ViT has one length more than our grid
    fig = plots.fig2_beside_paper(ours, released, c_ours=LAW.c, c_paper=LAW.c)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 8 and len(visible) == len(LENGTHS) + len(LENGTHS) + 1
    for ax in visible:  # one line per sparsity, through every size, at L - c
        assert len(ax.lines) == len(SPARSITIES) and all(len(l.get_xdata()) == len(SIZES) for l in ax.lines)
    top = fig.axes[0].lines[0]
    np.testing.assert_allclose(top.get_ydata(), [LAW.loss(0.0, N, 1e9) - LAW.c for N in SIZES])
