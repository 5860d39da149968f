"""bigsparse_lib.bands: bootstrap bands on optimal sparsity cover the truth at about their nominal rate on synthetic
sweeps; `bigsparse optimal --data FILE.csv [--bootstrap B]`."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bigsparse_lib import bands, optimal
from bigsparse_lib import fit as F
from bigsparse_lib.cli import main
from bigsparse_lib.law import SparseLaw

TRUTH = SparseLaw(a_S=20.0, b_S=0.9, c_S=50.0, b_N=0.3, a_D=5e8, b_D=0.35, c=0.9)


def sweep(noise, seed):
    S, N, D = (x.ravel() for x in np.meshgrid(np.array((0.0, 0.5, 0.75, 0.875)), np.geomspace(1e6, 1e8, 5),
                                               np.geomspace(1e9, 1e11, 3)))
    L = np.asarray(TRUTH.loss(S, N, D)) * np.exp(noise * np.random.default_rng(seed).standard_normal(S.size))
    return pd.DataFrame({"sparsity": S, "nnz": N, "data": D, "loss": L})


@pytest.mark.slow
def test_onset_and_contour_bands_cover_the_truth_at_about_the_nominal_rate():
    """50 synthetic sweeps, 95% bands from 100 resamples each: loose check, 80-100% coverage."""
    true_onset = optimal.chinchilla_multiple(TRUTH, 0.5, "sparse")
    N = np.array([1e7])
    true_C = optimal.contour_compute(TRUTH, 0.75, N, "dense")
    hits = {"onset": 0, "contour": 0}
    for seed in range(50):
        r = F.fit(sweep(0.01, seed), starts=32, seed=seed)
        boot = F.bootstrap(r, 100, seed=seed)
        lo, hi = bands.onset_interval(boot, 0.5, "sparse")
        hits["onset"] += lo <= true_onset <= hi
        band = bands.contour_band(boot, 0.75, N, "dense")
        hits["contour"] += bool(band.lo[0] <= true_C[0] <= band.hi[0])
    print(f"coverage of 95% bands over 50 sweeps: {hits}")
    assert all(40 <= h <= 50 for h in hits.values()), hits


def test_bands_are_ordered_and_contain_the_point_estimate():
    r = F.fit(sweep(0.01, 0), starts=32)
    boot = F.bootstrap(r, 60)
    N = np.geomspace(1e6, 1e10, 5)
    band = bands.contour_band(boot, 0.5, N, "sparse")
    point = optimal.contour_compute(r.law, 0.5, N, "sparse")
    assert band.used == 60 and np.all(band.lo <= point) and np.all(point <= band.hi)
    # each resample's contour is a line in log-log with its own slope: the band is a wedge, narrowest inside the data
    width = np.log(band.hi / band.lo)
    assert np.argmin(width) < width.size - 1 and width[-1] > width.min()
    lo, hi = bands.s_opt_interval(boot, 1e8, optimal.chinchilla_compute(r.law, 1e8) * 10, "sparse")
    assert 0 <= lo <= hi < 1


def test_cli_optimal_data_with_interval(tmp_path, capsys):
    csv = tmp_path / "s.csv"
    sweep(0.005, 1).to_csv(csv, index=False)
    assert main(["optimal", "--data", str(csv), "--onset", "0.5", "--bootstrap", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    lo, hi = out["interval"]
    assert lo <= out["chinchilla_multiple"] <= hi
    assert main(["optimal", "--data", str(csv), "--nnz", "1e8", "--compute", "1e20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "interval" not in out and 0 <= out["sparsity"] < 1
    for argv, needle in ((["--preset", "t5", "--onset", "0.5", "--bootstrap", "5"], "--bootstrap needs --data"),
                         (["--data", str(tmp_path / "missing.csv"), "--onset", "0.5"], "no such file"),
                         (["--data", str(csv), "--preset", "t5", "--onset", "0.5"], "not allowed with")):
        code = None
        try:
            code = main(["optimal"] + argv)
        except SystemExit as e:  # argparse: mutually exclusive sources
            code = e.code
        assert code == 2
        err = capsys.readouterr().err.strip()
        assert needle in err, err
