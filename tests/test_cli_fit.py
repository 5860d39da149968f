"""`bigsparse fit`: the JSON contract, the readable table, and exit code 2 with a one-line message on bad input."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bigsparse_lib import fit as F
from bigsparse_lib.cli import main
from bigsparse_lib.commands import fit as cmd
from bigsparse_lib.law import DenseLaw, SparseLaw

LAW = SparseLaw(a_S=20.0, b_S=0.9, c_S=50.0, b_N=0.3, a_D=5e8, b_D=0.35, c=0.9)


def write_grid(path, sparsities=(0.0, 0.5, 0.75, 0.875), noise=0.003):
    S, N, D = np.meshgrid(np.array(sparsities), np.geomspace(1e6, 1e8, 4), np.geomspace(1e9, 1e11, 3))
    S, N, D = S.ravel(), N.ravel(), D.ravel()
    L = np.asarray(LAW.loss(S, N, D)) * np.exp(noise * np.random.default_rng(0).standard_normal(S.size))
    pd.DataFrame({"sparsity": S, "nnz": N, "data": D, "loss": L, "run": np.arange(S.size)}).to_csv(path, index=False)
    return path


def run_json(argv, capsys):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_defaults_agree_with_the_library():
    assert (cmd.DELTA, cmd.LOG, cmd.STARTS, cmd.SEED) == (F.DELTA, F.LOG, F.STARTS, F.SEED)


def test_json_contract(tmp_path, capsys):
    csv = write_grid(tmp_path / "sweep.csv")
    argv = ["fit", str(csv), "--starts", "16", "--bootstrap", "40", "--predict", "0.5,1e7,1e10",
            "--predict", "0.5,4e8,1e10", "--predict", "0,1e7,4e11"]
    out = run_json(argv, capsys)
    assert set(out["coefs"]) == set(SparseLaw.names)
    assert out["n_points"] == 48 and out["starts"] == 16 and 1 <= out["converged_to_best"] <= 16
    assert out["objective"] >= 0
    for name in SparseLaw.names + ("gain@0.5", "gain@0.75", "gain@0.875"):
        lo, hi = out["intervals"][name]
        assert lo <= hi
    p, far, long = out["predictions"]
    assert set(p) == {"sparsity", "nnz", "data", "loss", "lo", "hi", "extrapolation", "outside", "run"}
    assert p["run"][0] < p["lo"] and p["hi"] < p["run"][1]  # one run scatters around the curve
    assert p["loss"] == pytest.approx(float(SparseLaw.from_dict(out["coefs"]).loss(0.5, 1e7, 1e10)), rel=1e-12)
    assert p["lo"] <= p["loss"] <= p["hi"]
    # inside the grid (N 1e6..1e8, D 1e9..1e11) the extrapolation interval is the bootstrap's
    assert p["outside"] == {"log_N": 0.0, "log_D": 0.0}
    assert p["extrapolation"] == pytest.approx([p["lo"], p["hi"]], rel=1e-9)
    # 4x beyond the largest size: log 4 outside, and an interval at least as wide
    assert far["outside"] == {"log_N": pytest.approx(np.log(4), rel=1e-12), "log_D": 0.0}
    lo, hi = far["extrapolation"]
    assert lo <= far["lo"] <= far["loss"] <= far["hi"] <= hi
    # 4x beyond the longest run: three lengths leave no held-out test along D, so no interval
    assert long["outside"] == {"log_N": 0.0, "log_D": pytest.approx(np.log(4), rel=1e-12)}
    assert long["extrapolation"] == [None, None] and long["lo"] is not None
    # the same command gives the same numbers
    assert run_json(argv, capsys) == out


def test_predict_without_bootstrap_reports_distance_only(tmp_path, capsys):
    csv = write_grid(tmp_path / "sweep.csv")
    (p,) = run_json(["fit", str(csv), "--starts", "8", "--predict", "0.5,1e7,1e12"], capsys)["predictions"]
    assert p["lo"] is None and p["extrapolation"] == [None, None] and p["run"] == [None, None]
    assert p["outside"] == {"log_N": 0.0, "log_D": pytest.approx(np.log(10), rel=1e-12)}
    assert main(["fit", str(csv), "--starts", "8", "--bootstrap", "40", "--predict", "0.5,4e8,1e10"]) == 0
    text = capsys.readouterr().out
    assert "95% with extrapolation error" in text and "1.39, 0.00" in text


def test_dense_fix_and_text(tmp_path, capsys):
    csv = write_grid(tmp_path / "dense.csv", sparsities=(0.0,))
    out = run_json(["fit", str(csv), "--dense", "--starts", "8"], capsys)
    assert set(out["coefs"]) == set(DenseLaw.names) and out["intervals"] == {} and out["predictions"] == []
    sparse = write_grid(tmp_path / "sparse.csv")
    out = run_json(["fit", str(sparse), "--starts", "8", "--fix", "b_N=0.3", "--fix", "c=0.9"], capsys)
    assert out["coefs"]["b_N"] == 0.3 and out["coefs"]["c"] == pytest.approx(0.9, rel=1e-12)
    assert main(["fit", str(sparse), "--starts", "8", "--no-log", "--delta", "0.01"]) == 0
    text = capsys.readouterr().out
    assert "on L," in text and "a_S" in text and "starts reaching the best" in text


@pytest.mark.parametrize("edit, args, needle", [
    (lambda df: df.assign(sparsity=df.sparsity.where(df.index != 3, 1.0)), [], "line 5, column 'sparsity'"),
    (lambda df: df.assign(nnz=df.nnz.where(df.index != 0, -5.0)), [], "column 'nnz'"),
    (lambda df: df.assign(data=df.data.where(df.index != 0, 0.0)), [], "column 'data'"),
    (lambda df: df.assign(loss=df.loss.where(df.index != 7, np.nan)), [], "line 9, column 'loss'"),
    (lambda df: df.drop(columns="data"), [], "missing column(s) data"),
    (lambda df: df.iloc[:5], [], "5 point(s) but 7 free"),
    (lambda df: df, ["--fix", "a_N=3"], "unknown coefficient 'a_N'"),
    (lambda df: df, ["--fix", "b_N"], "--fix"),
    (lambda df: df, ["--predict", "0.5,1e7"], "--predict"),
    (lambda df: df, ["--predict", "1.5,1e7,1e9"], "sparsity"),
    (lambda df: df, ["--predict", "0.5,x,1e9"], "--predict"),
    (lambda df: df, ["--dense"], "--dense"),
    (lambda df: df, ["--delta", "0"], "--delta"),
    (lambda df: df, ["--starts", "0"], "--starts"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, edit, args, needle):
    csv = write_grid(tmp_path / "ok.csv")
    bad = tmp_path / "bad.csv"
    edit(pd.read_csv(csv)).to_csv(bad, index=False)
    assert main(["fit", str(bad), "--starts", "2"] + args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err, err
