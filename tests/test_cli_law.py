"""`bigsparse gain` and `bigsparse optimal`: published numbers through the CLI, exit codes and messages."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bigsparse_lib import optimal, paper
from bigsparse_lib.cli import main

BIGSPARSE = Path(sys.executable).parent / "bigsparse"


def run_json(capsys, *argv) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def run_error(capsys, *argv) -> str:
    """Exit code 2 and a one-line message on stderr (InputError or argparse)."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    return err.splitlines()[-1]


# ---------------------------------------------------------------- gain
@pytest.mark.parametrize("family", ["vit", "t5"])
def test_gain_reproduces_table2(capsys, family):
    out = run_json(capsys, "gain", "--preset", family, "--sparsity", "0.5,0.75,0.875")
    assert list(out["gains"]) == ["0.5", "0.75", "0.875"]
    for S, published in paper.TABLE2[family].items():
        assert abs(out["gains"][str(S)] - published) <= 0.01


def test_gain_keys_are_normalised_like_str_float(capsys):
    out = run_json(capsys, "gain", "--preset", "t5", "--sparsity", ".5, 0.750,0")
    assert list(out["gains"]) == ["0.5", "0.75", "0.0"]
    assert out["gains"]["0.0"] == 1.0  # a dense model matches itself


def test_gain_reads_fit_output_and_bare_coefs(tmp_path, capsys):
    coefs = paper.TABLE7["vit"].to_dict()
    whole = tmp_path / "fit.json"
    whole.write_text(json.dumps({"coefs": coefs, "error": 4.9e-4}))
    bare = tmp_path / "coefs.json"
    bare.write_text(json.dumps(coefs))
    a = run_json(capsys, "gain", "--coefs", str(whole), "--sparsity", "0.75")
    b = run_json(capsys, "gain", "--coefs", str(bare), "--sparsity", "0.75")
    assert a == b and abs(a["gains"]["0.75"] - 2.17) <= 0.01


@pytest.mark.parametrize("command", [["gain"], ["optimal", "--onset", "0.5"]])
def test_dense_law_is_refused(tmp_path, capsys, command):
    path = tmp_path / "dense.json"
    path.write_text(json.dumps({"coefs": paper.TABLE7["t5"].dense().to_dict()}))
    msg = run_error(capsys, *command, "--coefs", str(path))
    assert "--coefs" in msg and "dense law" in msg


@pytest.mark.parametrize("value", ["1", "1.2", "-0.1", "nan", "abc", ""])
def test_gain_bad_sparsity(capsys, value):
    assert "--sparsity" in run_error(capsys, "gain", "--preset", "t5", "--sparsity", value)


# ---------------------------------------------------------------- optimal
def test_optimal_dense_cost_equals_corrected_eq6(capsys):
    law, N = paper.TABLE7["vit"], 1e8
    C = 20 * optimal.chinchilla_compute(law, N)
    out = run_json(capsys, "optimal", "--preset", "vit", "--nnz", str(N), "--compute", repr(float(C)), "--cost", "dense")
    assert list(out) == ["sparsity"]
    assert out["sparsity"] == pytest.approx(optimal.s_opt_eq6(law, N, C), abs=1e-6)
    assert out["sparsity"] > 0.5


def test_optimal_default_cost_is_sparse(capsys):
    argv = ["optimal", "--preset", "t5", "--nnz", "1e8", "--compute", "1e20"]
    default = run_json(capsys, *argv)["sparsity"]
    assert default == run_json(capsys, *argv, "--cost", "sparse")["sparsity"]
    assert default == pytest.approx(optimal.s_opt_eq5(paper.TABLE7["t5"], 1e8, 1e20, "sparse"), abs=1e-6)
    assert default != pytest.approx(run_json(capsys, *argv, "--cost", "dense")["sparsity"], abs=0.01)


@pytest.mark.parametrize("family,cost", list(paper.ONSET_CLAIMS))
def test_optimal_onset_reproduces_section_3_3(capsys, family, cost):
    k = run_json(capsys, "optimal", "--preset", family, "--onset", "0.5", "--cost", cost)["chinchilla_multiple"]
    op, bound = paper.ONSET_CLAIMS[(family, cost)]
    assert (1.0 < k < bound) if op == "<" else abs(k / bound - 1.0) < 0.05


def test_optimal_text_output(capsys):
    assert main(["optimal", "--preset", "t5", "--onset", "0.5", "--cost", "dense"]) == 0
    out = capsys.readouterr().out
    assert "70.16x" in out and "dense costs" in out


@pytest.mark.parametrize("argv,needle", [
    (["--nnz", "1e8"], "--nnz needs --compute"),
    (["--compute", "1e20"], "--compute needs --nnz"),
    ([], "--onset"),
    (["--nnz", "0", "--compute", "1e20"], "--nnz must be a positive number"),
    (["--nnz", "-5", "--compute", "1e20"], "--nnz must be a positive number"),
    (["--nnz", "nan", "--compute", "1e20"], "--nnz must be a positive number"),
    (["--nnz", "1e8", "--compute", "inf"], "--compute must be a positive number"),
    (["--nnz", "1e8", "--compute", "-1"], "--compute must be a positive number"),
    (["--onset", "1"], "--onset must be in [0, 1)"),
    (["--onset", "nan"], "--onset must be in [0, 1)"),
    (["--onset", "0.5", "--nnz", "1e8", "--compute", "1e20"], "--onset cannot be combined"),
    (["--nnz", "lots", "--compute", "1e20"], "--nnz"),
    (["--onset", "0.5", "--cost", "free"], "--cost"),
])
def test_optimal_bad_input_exit_2(capsys, argv, needle):
    assert needle in run_error(capsys, "optimal", "--preset", "t5", *argv)


def test_missing_coefs_file(capsys, tmp_path):
    assert "no such file" in run_error(capsys, "optimal", "--coefs", str(tmp_path / "none.json"), "--onset", "0.5")


# ---------------------------------------------------------------- the installed console script
@pytest.mark.skipif(not BIGSPARSE.exists(), reason=f"console script not installed at {BIGSPARSE}")
def test_console_script_subprocess():
    ok = subprocess.run([str(BIGSPARSE), "gain", "--preset", "vit", "--json"], capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0, ok.stderr
    gains = json.loads(ok.stdout)["gains"]
    np.testing.assert_allclose([gains[k] for k in ("0.5", "0.75", "0.875")], [1.60, 2.17, 2.63], atol=0.01)
    bad = subprocess.run([str(BIGSPARSE), "optimal", "--preset", "t5", "--nnz", "1e8"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == "bigsparse optimal: error: --nnz needs --compute C (the training budget in FLOPs)"
