"""bigsparse_lib.laws and heldout: each successor form recovers its planted coefficients, the comparison picks the
form that generated the data, the held-out refits, and `bigsparse compare`."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bigsparse_lib import heldout, laws
from bigsparse_lib.cli import main
from bigsparse_lib.law import DenseLaw, SparseLaw, c_mul, c_mul_eq4

EFF = {0.0: 1.0, 0.5: 0.95, 0.75: 0.5, 0.875: 0.4}  # gains 1.9, 2.0, 3.2: a shape eq. 3 cannot follow
TRUE = {
    "eq3": SparseLaw(a_S=20.0, b_S=0.9, c_S=50.0, b_N=0.3, a_D=5e8, b_D=0.35, c=0.9).to_dict(),
    "multiplier": {"a": 70.0, "b": 0.3, "c": 1100.0, "d": 0.35, "e": 0.9,
                   **{laws.level_key(s): v for s, v in EFF.items()}},
    "average": DenseLaw(a_N=1.2e6, b_N=0.3, a_D=5e8, b_D=0.35, c=0.9).to_dict(),
    "dense": DenseLaw(a_N=1.2e6, b_N=0.3, a_D=5e8, b_D=0.35, c=0.9).to_dict(),
}


def sweep(form: str, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A Table 1-like grid (4 sparsities x 5 sizes x 3 lengths), loss from the form's law (written out here)."""
    S, N, D = (x.ravel() for x in np.meshgrid(np.array(list(EFF)), np.geomspace(1e6, 1e8, 5),
                                               np.geomspace(1e9, 1e11, 3)))
    t = TRUE[form]
    if form == "eq3":
        L = SparseLaw.from_dict(t).loss(S, N, D)
    elif form == "multiplier":
        eff = np.array([EFF[s] for s in S])
        L = t["a"] * (N / (1 - S) * eff) ** -t["b"] + t["c"] * D ** -t["d"] + t["e"]
    elif form == "average":
        L = DenseLaw.from_dict(t).loss(N * c_mul(S), D)
    else:
        L = DenseLaw.from_dict(t).loss(N, D)
    L = np.asarray(L) * np.exp(noise * np.random.default_rng(seed).standard_normal(S.size))
    return pd.DataFrame({"sparsity": S, "nnz": N, "data": D, "loss": L})


@pytest.mark.parametrize("form", ["multiplier", "average", "dense"])
def test_each_form_recovers_its_planted_coefficients(form):
    from bigsparse_lib import vpfit

    gf = vpfit.certified_fit(sweep(form), laws.form_named(form), resolution=11)
    for k, v in TRUE[form].items():
        assert gf.coefs[k] == pytest.approx(v, rel=1e-4), (form, k, gf.coefs[k], v)
    assert gf.objective < 1e-14


@pytest.mark.parametrize("form", list(TRUE))
def test_comparison_picks_the_form_that_generated_the_data(form):
    rows = laws.compare(sweep(form, noise=0.003, seed=1), resolution=11, heldout=())
    assert rows[0].form == form, [(r.form, round(r.bic, 1)) for r in rows]
    by = {r.form: r for r in rows}
    # the multiplier law nests the others (free eff per level): it never fits worse in sample
    assert by["multiplier"].objective <= min(by["average"].objective, by["dense"].objective) * (1 + 1e-6)
    assert by["multiplier"].n_params == 8 and by["eq3"].n_params == 7 and by["dense"].n_params == 5


def test_gains_of_each_form():
    g = laws.gains(laws.MULTIPLIER, TRUE["multiplier"], (0.5, 0.75))
    assert g == pytest.approx({0.5: 0.95 / 0.5, 0.75: 0.5 / 0.25})
    assert laws.gains(laws.AVERAGE, TRUE["average"], (0.5,))[0.5] == pytest.approx(c_mul_eq4(0.5))  # eq. 4
    assert laws.gains(laws.FORMS["dense"], TRUE["dense"], (0.875,)) == {0.875: 1.0}


def test_leave_out_holds_out_whole_sizes_and_lengths():
    df = sweep("eq3")
    size = df.nnz / (1 - df.sparsity)
    for by, x in (("size", size), ("length", df.data)):
        mask = heldout.held_mask(df, by, "largest")
        # here widths differ across sparsities: the largest is the 87.5% model's 3 lengths; the longest run, 20 rows
        assert mask.sum() == (3 if by == "size" else 20)
        assert np.allclose(x[mask], x.max()) and np.all(x[~mask] < x.max() * 0.99)
    h = heldout.leave_out(df, by="size", resolution=9)
    assert h.fit.n_points == int((~h.held).sum())
    # noise-free data from eq. 3: the refit extrapolates exactly
    assert h.mean_abs_rel_error < 1e-6
    assert h.mean_abs_rel_error == pytest.approx(np.mean(np.abs(h.predicted / h.measured - 1)), rel=1e-12)
    with pytest.raises(laws.InputError, match="'by'"):
        heldout.held_mask(df, "width")


def test_cli_compare_json_and_bad_input(tmp_path, capsys):
    csv = tmp_path / "s.csv"
    sweep("multiplier", noise=0.003, seed=2).to_csv(csv, index=False)
    assert main(["compare", str(csv), "--resolution", "7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["form"] for o in out] and {o["form"] for o in out} == {"eq3", "multiplier", "average", "dense"}
    for o in out:
        assert {"form", "coefs", "objective", "aic", "heldout"} <= set(o)
        assert set(o["heldout"]) == {"size", "length"} and all(v >= 0 for v in o["heldout"].values())
    mult = next(o for o in out if o["form"] == "multiplier")
    assert set(laws.level_key(s) for s in EFF) <= set(mult["coefs"]) and mult["coefs"]["eff@0"] == 1.0
    no_dense = tmp_path / "nodense.csv"
    pd.read_csv(csv).query("sparsity > 0").to_csv(no_dense, index=False)
    for argv, needle in ((["compare", str(no_dense)], "sparsity 0"),
                         (["compare", str(csv), "--forms", "eq3,quartic"], "unknown form 'quartic'"),
                         (["fit", str(no_dense), "--form", "multiplier"], "sparsity 0")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err, err
