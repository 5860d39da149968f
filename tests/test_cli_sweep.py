"""`bigsparse sweep`, `sweep-status`, `export` as a user runs them: in subprocesses, killed, resumed.

The engine is replaced by `test_sweep.fake_train` (the `--trainer` flag), so the store,
the resume logic and the exit codes are tested in seconds; the real engine's smoke sweep
is at the end, marked slow.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bigsparse_lib.law import SparseLaw

HERE = Path(__file__).resolve().parent
FAKE = "test_sweep:fake_train"


def env(**extra) -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(HERE), e.get("PYTHONPATH", "")])
    for k in ("FAKE_SLEEP", "FAKE_DIVERGE_S", "FAKE_LEDGER", "FAKE_DIE_ONCE"):
        e.pop(k, None)
    e.update({k: str(v) for k, v in extra.items()})
    return e


def cli(*args, check_rc=None, **extra) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "bigsparse_lib", *map(str, args)], capture_output=True, text=True,
                       env=env(**extra), timeout=600)
    if check_rc is not None:
        assert p.returncode == check_rc, (p.returncode, p.stdout, p.stderr)
    return p


def sweep_args(results, family="t5", preset="smoke", grid="main", *more):
    return ["sweep", "--family", family, "--preset", preset, "--grid", grid, "--results", results,
            "--trainer", FAKE, "--no-progress", *more]


@pytest.mark.parametrize("executor", ["local", "process"])
def test_sigkilled_sweep_resumes_and_records_every_run_exactly_once(tmp_path, executor):
    """SIGKILL the sweep mid-run; restart it: every grid point ends recorded once, the killed run resumes.

    With --executor process the workers outlive the SIGKILLed sweep only until their orphan
    guard notices (about a second), so the restarted sweep never races one of them.
    """
    results, ledger = tmp_path / "r", tmp_path / "ledger"
    how = ["--executor", executor, "--workers", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "bigsparse_lib", *map(str, sweep_args(results, "t5", "smoke",
                                                                                         "main", *how))],
                            env=env(FAKE_SLEEP=0.4, FAKE_LEDGER=ledger), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    # kill it when two runs are recorded and a third is half-way (its checkpoint says so)
    deadline = time.time() + 300
    while time.time() < deadline:
        records = list(results.glob("runs/*/record.json"))
        partial = [c for c in results.glob("runs/*/train/ckpt.json")
                   if not (c.parent.parent / "record.json").exists() and json.loads(c.read_text())["done"] >= 1]
        if len(records) >= 2 and partial:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    else:
        pytest.fail("the sweep made no progress")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(3)  # orphaned workers (process executor) notice within a second and exit
    n_before = len(list(results.glob("runs/*/record.json")))
    status = json.loads(cli("sweep-status", results, "--json", check_rc=0).stdout)
    assert status["done"] == n_before and status["running"] == 0  # the killed run is "left", not "running"
    assert status["left"] == status["total"] - n_before

    done = cli(*sweep_args(results, "t5", "smoke", "main", *how), "--json", check_rc=0, FAKE_LEDGER=ledger)
    summary = json.loads(done.stdout)
    assert summary["skipped"] == n_before and summary["done"] == summary["total"] - n_before
    lines = ledger.read_text().split()
    assert len(lines) == len(set(lines)) == summary["total"]  # every grid point recorded exactly once
    results_by_run = [json.loads(p.read_text())["result"] for p in results.glob("runs/*/record.json")]
    assert len(results_by_run) == summary["total"]
    assert any(r["resumed_from"] > 0 for r in results_by_run)  # the interrupted run resumed from its checkpoint
    status = json.loads(cli("sweep-status", results, "--json", check_rc=0).stdout)
    assert (status["done"], status["left"], status["failed"]) == (summary["total"], 0, 0)


def test_failed_run_is_shown_failed_and_left_out_of_export_with_a_warning(tmp_path):
    results = tmp_path / "r"
    p = cli(*sweep_args(results), FAKE_DIVERGE_S=0.5)
    assert p.returncode == 1 and "failed" in p.stdout
    st = cli("sweep-status", results, check_rc=0)
    assert "failed" in st.stdout and "diverged" in st.stdout and "nan" in st.stdout
    out = tmp_path / "t.csv"
    ex = cli("export", results, "--out", out, check_rc=0)
    assert ex.stderr.count("warning: left out failed run") == 4
    df = pd.read_csv(out)
    assert list(df.columns[:4]) == ["sparsity", "nnz", "data", "loss"]
    assert len(df) == 4 and (df["sparsity"] == 0).all()
    assert {"family", "steps", "pattern", "method", "seed", "run_id"} <= set(df.columns)


@pytest.mark.parametrize("args,needle", [
    (["--family", "t5", "--preset", "huge"], "--preset"),
    (["--family", "t5", "--preset", "smoke", "--grid", "moon"], "--grid"),
    (["--family", "bert", "--preset", "smoke"], "--family"),
    (["--family", "t5", "--preset", "smoke", "--executor", "mpi"], "--executor"),
])
def test_bad_names_exit_2(tmp_path, args, needle):
    p = cli("sweep", *args, "--results", tmp_path / "r", "--trainer", FAKE)
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr


def test_incompatible_results_directory_exits_2(tmp_path):
    cli(*sweep_args(tmp_path / "r"), check_rc=0)
    p = cli(*sweep_args(tmp_path / "r", "vit"))
    assert p.returncode == 2 and "family='t5'" in p.stderr
    p = cli(*sweep_args(tmp_path / "r", "t5", "smoke", "nm"))
    assert p.returncode == 2 and "grid" in p.stderr
    assert cli("sweep-status", tmp_path / "nothing").returncode == 2
    assert cli("export", tmp_path / "nothing", "--out", tmp_path / "x.csv").returncode == 2


@pytest.mark.parametrize("executor,package", [("dask", "distributed"), ("slurm", "submitit")])
def test_executor_not_installed_exits_2(tmp_path, executor, package):
    shim = tmp_path / "shim" / package
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('not installed (test shim)')\n")
    e = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "shim"), str(HERE)])}
    p = subprocess.run([sys.executable, "-m", "bigsparse_lib", *map(str, sweep_args(tmp_path / "r")),
                        "--executor", executor], capture_output=True, text=True, env={**env(), **e}, timeout=300)
    assert p.returncode == 2 and "pip install" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "r").exists()


def test_exported_table_fits(tmp_path):
    """The export is `bigsparse fit`'s input: a T5 toy-grid-shaped table (fake losses from Table 7's law)."""
    results, out = tmp_path / "r", tmp_path / "t5.csv"
    cli(*sweep_args(results, "t5", "toy"), check_rc=0)
    cli("export", results, "--out", out, check_rc=0)
    p = cli("fit", out, "--json", check_rc=0)
    fit = json.loads(p.stdout)
    table = pd.read_csv(out)
    from bigsparse_lib import sweep

    assert fit["n_points"] == len(table) == len(sweep.make_grid("t5", "toy", "main"))
    # The exported units are the ones the law was evaluated in, so the fit reproduces every run
    # to within the fake trainer's +-0.1% wobble.
    law = SparseLaw.from_dict(fit["coefs"])
    predicted = law.loss(table["sparsity"], table["nnz"], table["data"])
    assert float((abs(predicted / table["loss"] - 1)).max()) < 3e-3


@pytest.mark.slow
def test_real_engine_smoke_sweep_in_process_and_dask_agree(tmp_path):
    """The real engine on the smoke grid: in-process and Dask (2 local worker processes) give the same losses."""
    from bigsparse_lib import sweep

    grid = sweep.make_grid("vit", "smoke", "main")
    a = sweep.run_sweep(grid, tmp_path / "local", progress=False)
    b = sweep.run_sweep(grid, tmp_path / "dask", executor="dask", workers=2, progress=False)
    assert a.complete and b.complete
    la = sweep.export(tmp_path / "local").set_index("run_id")["loss"]
    lb = sweep.export(tmp_path / "dask").set_index("run_id")["loss"]
    assert lb.sort_index().to_numpy() == pytest.approx(la.sort_index().to_numpy(), rel=1e-6)
