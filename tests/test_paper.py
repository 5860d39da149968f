"""Loaders of the released data, and the `paper-data` command."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bigsparse_lib import paper
from bigsparse_lib.cli import main
from bigsparse_lib.errors import InputError


def test_t5_units_match_table1(released):
    df = released("t5")
    assert len(df) == 48
    # Table 1: T5 non-zeros 1.3M, 5.3M, ..., 85M in 4x steps; 250K/500K/1M steps.
    nnz_millions = sorted({round(x / 1e6, 1) for x in df["nnz"]})
    assert nnz_millions == [1.3, 5.3, 21.2, 84.9]
    assert sorted(df["steps"].unique()) == [250_000, 500_000, 1_000_000]
    assert set(df["data"]) == {s * 128 * 512 for s in (250_000, 500_000, 1_000_000)}
    assert list(df.columns[:4]) == ["sparsity", "nnz", "data", "loss"]


def test_vit_units_match_table1(released):
    df = released("vit")
    assert len(df) == 112
    main = df[df["sparsity"] <= 0.875]
    nnz = np.array(sorted(set(main["nnz"].round())))
    assert round(nnz[0] / 1e6, 2) == 0.66 and round(nnz[-1] / 1e6, 1) == 42.5  # Table 1 prints "42.4M"
    np.testing.assert_allclose(np.diff(np.log2(nnz)), 1.0, atol=1e-9)  # 2x steps
    # 55K..440K steps at batch 4096 = 225M..1.8B images ("≈1.8 billion images", §3.1)
    assert sorted(df["data"].unique()) == [225e6, 450e6, 900e6, 1.8e9]


def test_chinchilla_units(released):
    df = released("chinchilla")
    assert len(df) == 245 and (df["sparsity"] == 0).all()
    np.testing.assert_allclose(6 * df["nnz"] * df["data"], df["flops"], rtol=1e-12)
    assert len(paper.drop_highest(df, 5)) == 240
    assert paper.drop_highest(df, 5)["loss"].max() < df["loss"].nlargest(5).min()


def test_locate_prefers_explicit_source_and_env(tmp_path, monkeypatch):
    src = tmp_path / "t5-data.csv"
    src.write_text(",sparsity,scale,val-loss,steps\n0,0.5,0.25,3.0,250000.0\n")
    assert paper.locate("t5", tmp_path) == src
    assert paper.locate("t5", src) == src
    monkeypatch.setenv(paper.ENV_VAR, str(tmp_path))
    assert paper.locate("t5") == src
    df = paper.load_released("t5")
    assert df["nnz"].iloc[0] == pytest.approx(24 * 12 * 768**2 * 0.25 * 0.5)
    with pytest.raises(InputError, match="no such file"):
        paper.locate("t5", tmp_path / "missing.csv")


def test_locate_downloads_from_a_url_into_the_cache(tmp_path, monkeypatch):
    """The download path, exercised with a file:// URL (no network in tests)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = tmp_path / "remote.csv"
    src.write_text(",sparsity,scale,val-loss,steps\n0,0.0,1.0,3.0,250000.0\n")
    url = src.as_uri()
    monkeypatch.setitem(paper.RELEASED, "t5", ("t5-data.csv", url))
    monkeypatch.delenv(paper.ENV_VAR, raising=False)
    monkeypatch.setattr(paper, "_candidates", lambda name: [tmp_path / "nowhere" / name])
    got = paper.locate("t5")
    assert got.parent == tmp_path / "cache" / "bigsparse" / "paper-data" and got.read_text() == src.read_text()


def test_paper_data_cli_writes_tidy_csv(released, tmp_path, capsys):
    released("vit")
    out = tmp_path / "vit.csv"
    assert main(["paper-data", "vit", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_points"] == 112
    df = pd.read_csv(out)
    assert list(df.columns[:4]) == ["sparsity", "nnz", "data", "loss"] and len(df) == 112


def test_paper_data_cli_bad_source_exits_2(tmp_path):
    bad = tmp_path / "t5-data.csv"
    bad.write_text("a,b\n1,2\n")
    r = subprocess.run([sys.executable, "-m", "bigsparse_lib", "paper-data", "t5", "--source", str(bad),
                        "--out", str(tmp_path / "o.csv")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "missing column" in r.stderr and len(r.stderr.strip().splitlines()) == 1
