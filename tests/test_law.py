"""eq. 1-4 and 7 against the paper's published numbers and independent computations."""
import numpy as np
import pytest
from scipy import integrate

from bigsparse_lib import law, paper
from bigsparse_lib.law import DenseLaw, SparseLaw
from bigsparse_lib.schedule import GradualSchedule


def test_cerebras_comparison_section6():
    """§6: the T5 law predicts 1.54 (dense 1B, 20B tokens) and 1.48 (80% sparse, 200M nnz, 100B tokens)."""
    t5 = paper.TABLE7["t5"]
    for point in paper.CEREBRAS:
        assert round(float(t5.loss(point.S, point.N, point.D)), 2) == point.loss, point.label


@pytest.mark.parametrize("family", ["vit", "t5"])
def test_table2_from_table7(family):
    """Table 2 is eq. 7 applied to Table 7, to the two printed decimals (±0.01)."""
    ours = paper.table2_ours(paper.TABLE7[family])
    for S, published in paper.TABLE2[family].items():
        assert ours[S] == pytest.approx(published, abs=0.01), (family, S)


def test_gain_is_the_dense_size_that_matches_the_loss():
    """Independent check of eq. 7: a dense model gain(S) times larger has the sparse model's loss at any D."""
    vit = paper.TABLE7["vit"]
    for S in (0.5, 0.75, 0.875):
        for N, D in ((1e6, 1e8), (3e7, 5e9)):
            sparse = vit.loss(S, N, D)
            dense = vit.loss(0.0, law.gain(vit, S) * N, D)
            assert dense == pytest.approx(sparse, rel=1e-12)


def test_sparse_law_at_zero_sparsity_is_the_dense_law():
    """S = 0 recovers eq. 2 with a_N = (a_S + c_S)^(1/b_N) (§3.2, 'a_N is subsumed by a_S and c_S')."""
    for fam in ("vit", "t5"):
        s = paper.TABLE7[fam]
        N, D = np.geomspace(1e6, 1e9, 5), np.geomspace(1e8, 1e11, 5)
        np.testing.assert_allclose(s.loss(0.0, N, D), s.dense().loss(N, D), rtol=1e-12)


def test_chinchilla_form_round_trip():
    e = DenseLaw.from_chinchilla(E=1.82, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
    N, D = 7e10, 1.4e12
    assert e.loss(N, D) == pytest.approx(1.82 + 482.01 / N**0.3478 + 2085.43 / D**0.3658, rel=1e-12)
    assert e.chinchilla() == pytest.approx({"E": 1.82, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658})


def test_c_mul_equals_eq4_for_paper_schedule():
    S = np.linspace(0.0, 0.99, 100)
    np.testing.assert_allclose(law.c_mul(S), law.c_mul_eq4(S), rtol=1e-13)


@pytest.mark.parametrize("start,end,power", [(0.25, 0.75, 3), (0.1, 0.9, 2), (0.0, 0.5, 1.5), (0.3, 0.3, 3)])
def test_c_mul_matches_adaptive_quadrature(start, end, power):
    """c_mul = ∫(1 - S_t) dt / (1 - S), checked with scipy's adaptive quadrature of Zhu & Gupta's formula."""
    sched = GradualSchedule(start=start, end=end, power=power)

    def s_t(t, S):  # written out independently of schedule.py
        if t < start:
            return 0.0
        if t >= end:
            return S
        return S - S * (1 - (t - start) / (end - start)) ** power

    for S in (0.5, 0.75, 0.875):
        pts = [p for p in (start, end) if 0 < p < 1]
        ref = integrate.quad(lambda t: 1 - s_t(t, S), 0, 1, points=pts or None, epsabs=1e-13)[0] / (1 - S)
        assert float(law.c_mul(S, sched)) == pytest.approx(ref, rel=1e-9)


def test_training_flops_dense_and_sparse():
    N, D, S = 2e8, 1e11, 0.75
    assert law.training_flops(N, D, 0.0, cost="dense") == pytest.approx(6 * N * D)
    assert law.training_flops(N, D, S, cost="dense") == pytest.approx(6 * N * D / (1 - S))
    # sparse: eq. 4 = 0.25/(1-S) + 0.5(1-0.75S)/(1-S) + 0.25
    expected = 6 * N * D * ((0.25 + 0.5 * (1 - 0.75 * S)) / (1 - S) + 0.25)
    assert law.training_flops(N, D, S, cost="sparse") == pytest.approx(expected)
    assert law.data_for_compute(expected, N, S, cost="sparse") == pytest.approx(D)


def test_law_works_under_jax_transformations():
    import jax
    import jax.numpy as jnp

    t5 = paper.TABLE7["t5"]
    with jax.enable_x64(True):
        g = jax.grad(lambda S: t5.loss(S, 1e8, 1e10))(0.5)
        h = 1e-6
        fd = (t5.loss(0.5 + h, 1e8, 1e10) - t5.loss(0.5 - h, 1e8, 1e10)) / (2 * h)
        assert float(g) == pytest.approx(fd, rel=1e-6)
        v = jax.vmap(lambda S: law.c_mul(S))(jnp.array([0.0, 0.5]))
        np.testing.assert_allclose(v, law.c_mul_eq4(np.array([0.0, 0.5])), rtol=1e-12)


def test_coef_dict_round_trip_and_errors():
    from bigsparse_lib.errors import InputError

    t5 = paper.TABLE7["t5"]
    assert SparseLaw.from_dict(t5.to_dict()) == t5
    with pytest.raises(InputError, match="missing"):
        SparseLaw.from_dict({"a_S": 1.0})
    with pytest.raises(InputError, match="unknown"):
        DenseLaw.from_dict({**paper.EPOCH.to_dict(), "zeta": 1.0})


def test_table7_rows_put_the_paper_beside_a_fit():
    """core_law.md's Table 7: the published error as printed, the published law re-evaluated
    with App. C's objective written out here (mean Huber on log L, delta 1e-3 for T5), and the fit."""
    import pandas as pd

    t5 = paper.TABLE7["t5"]
    S, N, D = np.meshgrid([0.0, 0.5, 0.75], [1e7, 4e7], [1e9, 4e9], indexing="ij")
    S, N, D = S.ravel(), N.ravel(), D.ravel()
    L = np.asarray(t5.loss(S, N, D)) * np.exp(np.linspace(-0.002, 0.002, S.size))  # known residuals
    table = pd.DataFrame({"sparsity": S, "nnz": N, "data": D, "loss": L})

    class Result:  # a fit result of a known law and objective
        law, objective = t5.replace(c=0.7), 0.125

    rows = paper.table7_rows("t5", table, Result)
    r = np.log(np.asarray(t5.loss(S, N, D))) - np.log(L)
    delta = 1e-3
    huber = np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - delta / 2))
    assert rows.loc["t5 paper", "error"] == paper.TABLE7_ERROR["t5"]
    assert rows.loc["t5 paper, re-evaluated", "error"] == pytest.approx(huber.mean(), rel=1e-9)
    assert rows.loc["t5 ours", "c"] == 0.7 and rows.loc["t5 ours", "error"] == 0.125
    assert rows.loc["t5 paper", "b_S"] == t5.b_S


def test_beside_paper_rows():
    """Our law beside Table 7 / Table 2: the paper's own law gives its own coefficients back,
    its gains match Table 2 to the printed decimals, and without a bootstrap the interval is NaN."""
    vit = paper.TABLE7["vit"]
    rows = paper.beside_paper("vit", vit.replace(c=0.5))
    assert rows.loc[("vit", "b_S"), "paper"] == vit.b_S == rows.loc[("vit", "b_S"), "ours"]
    assert rows.loc[("vit", "c"), "ours"] == 0.5 and rows.loc[("vit", "c"), "paper"] == vit.c
    for S, published in paper.TABLE2["vit"].items():
        assert rows.loc[("vit", f"gain@{S:g}"), "paper"] == published
        assert rows.loc[("vit", f"gain@{S:g}"), "ours"] == pytest.approx(published, abs=0.01)
    assert np.isnan(rows.loc[("vit", "onset@0.5"), "paper"])  # the paper prints no single onset number
    assert rows[["95% lo", "95% hi"]].isna().all().all()
    only = paper.beside_paper("vit", vit, quantities=["b_N", "gain@0.5"])
    assert list(only.index.get_level_values("quantity")) == ["b_N", "gain@0.5"]
