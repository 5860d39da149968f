"""Faults and bad input (issue 16): each case ends as a correct result (exit 0) or as exit 2 with a
one-line message naming the file, row, column, key or argument. Never a traceback.

This file holds the store-file part of the fault test (each kind of results-directory file
corrupted in turn) and one regression test per item of the issue that is about input, not
about the training engine. The generated-input counterpart is tests/test_fuzz.py.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from bigsparse_lib.cli import main
from bigsparse_lib.errors import InputError

FAKE = "test_sweep:fake_train"  # tests/ is on sys.path (pytest rootdir-relative import)


def run_error(capsys, *argv) -> str:
    """Run the CLI in-process; assert exit 2, nothing on stdout and a single line on stderr; return it."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------------------
# Store files: a results directory made by a sweep (fake engine), then each file corrupted
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished smoke sweep (fake trainer: seconds)."""
    root = tmp_path_factory.mktemp("store") / "r"
    assert main(["sweep", "--family", "t5", "--preset", "smoke", "--results", str(root), "--trainer", FAKE,
                 "--no-progress"]) == 0
    return root


@pytest.fixture
def results(finished, tmp_path, capsys):
    capsys.readouterr()
    copy = tmp_path / "r"
    shutil.copytree(finished, copy)
    return copy


def first_run(root):
    return json.loads((root / "sweep.json").read_text())["runs"][0]


def truncate(path):
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


COMMANDS = {
    "sweep-status": lambda r, tmp: ["sweep-status", r],
    "export": lambda r, tmp: ["export", r, "--out", tmp / "t.csv"],
    "sweep": lambda r, tmp: ["sweep", "--family", "t5", "--preset", "smoke", "--results", r, "--trainer", FAKE,
                             "--no-progress"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("fault, needle", [
    ("truncated sweep.json", "sweep.json: unreadable sweep manifest"),
    ("sweep.json runs not a list", "key 'runs' must be a list"),
    ("truncated config.json", "config.json: unreadable config of run"),
    ("config.json without config", "expected a JSON object with a 'config' object"),
    ("deleted run directory", "is missing"),
    ("truncated record.json", "record.json: unreadable record of run"),
    ("record.json without result", "status 'ok' but no 'result' object"),
    ("record.json with a string loss", "key 'result.eval_loss' must be a number"),
    ("record.json with an unknown status", "key 'status' is \"done\""),
])
def test_corrupt_store_file_names_it(results, tmp_path, capsys, command, fault, needle):
    rid = first_run(results)
    run = results / "runs" / rid
    if fault == "truncated sweep.json":
        truncate(results / "sweep.json")
    elif fault == "sweep.json runs not a list":
        m = json.loads((results / "sweep.json").read_text())
        (results / "sweep.json").write_text(json.dumps({**m, "runs": "abc"}))
    elif fault == "truncated config.json":
        truncate(run / "config.json")
    elif fault == "config.json without config":
        (run / "config.json").write_text("[1, 2]")
    elif fault == "deleted run directory":
        if command == "sweep":  # a sweep plans the run again: it is trained anew (nothing lost, nothing mixed)
            shutil.rmtree(run)
            assert main([str(a) for a in COMMANDS[command](results, tmp_path)]) == 0
            assert json.loads((run / "record.json").read_text())["status"] == "ok"
            return
        shutil.rmtree(run)
    elif fault.startswith("truncated record.json"):
        truncate(run / "record.json")
    else:
        rec = json.loads((run / "record.json").read_text())
        if fault == "record.json without result":
            del rec["result"]
        elif fault == "record.json with a string loss":
            rec["result"]["eval_loss"] = "low"
        else:
            rec["status"] = "done"
        (run / "record.json").write_text(json.dumps(rec))
    err = run_error(capsys, *COMMANDS[command](results, tmp_path))
    assert needle in err, err
    if "sweep.json" not in fault:
        assert rid in err  # the message names the run's file


@pytest.mark.parametrize("content", ["{\"host\": ", "[]", "{\"host\": \"h\", \"pid\": \"12\"}",
                                     "{\"host\": \"h\", \"pid\": -1}"])
def test_corrupt_running_marker_names_it(results, capsys, content):
    rid = first_run(results)
    (results / "runs" / rid / "record.json").unlink()  # a run in flight has no record yet
    (results / "runs" / rid / "running.json").write_text(content)
    err = run_error(capsys, "sweep-status", results)
    assert f"runs/{rid}/running.json" in err and "remove it if no worker is training this run" in err


def test_intact_directory_still_reads(results, tmp_path, capsys):
    assert main(["sweep-status", str(results)]) == 0
    assert main(["export", str(results), "--out", str(tmp_path / "t.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "t.csv")) == len(json.loads((results / "sweep.json").read_text())["runs"])


# --------------------------------------------------------------------------------------
# Output paths (item 14)
# --------------------------------------------------------------------------------------
def test_export_out_must_be_a_writable_file(results, tmp_path, capsys):
    assert "is a directory" in run_error(capsys, "export", results, "--out", tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "is not a directory" in run_error(capsys, "export", results, "--out", blocker / "t.csv")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_out(results, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert "is not writable" in run_error(capsys, "export", results, "--out", ro / "t.csv")
    finally:
        ro.chmod(0o700)
