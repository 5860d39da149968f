"""Fuzzing (issue 16): generated malformed input never gives a traceback.

Hypothesis drives the CLI commands (fit, gain, optimal, paper-data, export, sweep-status),
in-process through `cli.main` with captured output, and the file loaders (the released
data, tidy CSVs, C4 shards, image folders, results directories). Every case must end
with exit 0, or exit 2 with nothing on stdout and one line on stderr (argparse's own
errors print their usage line first); any other exception fails the test with the input
that raised it. Examples are bounded so that the whole file runs in about a minute.
"""
from __future__ import annotations

import gzip
import io
import json
import shutil
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bigsparse_lib.cli import main
from bigsparse_lib.errors import InputError

FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
FEW = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def cli(*argv) -> tuple[int, str, str]:
    """Run the CLI in-process; assert the contract (exit 0, or exit 2 with one message line)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse: bad flag or type (usage line + error line)
            code = e.code
            assert code == 2 and err.getvalue().strip().splitlines()[-1].startswith("bigsparse"), err.getvalue()
            return code, out.getvalue(), err.getvalue()
    o, e = out.getvalue(), err.getvalue()
    assert code in (0, 2), (code, o, e)
    assert "Traceback" not in e
    if code == 2:
        assert o == "" and e.count("\n") == 1 and ": error: " in e, (o, e)
    return code, o, e


# --------------------------------------------------------------------------------------
# Cells, rows and tables
# --------------------------------------------------------------------------------------
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -1.0, 0.5, 0.999, 1.0, 1e-320, 5e-324, 1e308, 2.0, 250000.0, 3.14]),
    st.integers(-10**6, 10**9),
)
text_cells = st.sampled_from(["", "x", "nan", "inf", "-inf", "1e", "0,5", "True", "null", " 1", "1 ", "é", '"', "\t"])
cells = st.one_of(numbers.map(repr), text_cells)


def csv_text(header: list[str], rows: list[list[str]], sep: str = ",") -> str:
    return "\n".join([sep.join(header)] + [sep.join(r) for r in rows]) + "\n"


@st.composite
def tables(draw, columns):
    """A CSV: the wanted columns, maybe renamed, dropped, padded or repeated; cells mostly valid numbers."""
    header = list(columns)
    mutation = draw(st.sampled_from(["none", "none", "drop", "pad", "dup", "sep", "extra"]))
    if mutation == "drop" and header:
        header.pop(draw(st.integers(0, len(header) - 1)))
    elif mutation == "pad":
        i = draw(st.integers(0, len(header) - 1))
        header[i] = header[i] + " "
    elif mutation == "dup":
        header.append(draw(st.sampled_from(header)))
    elif mutation == "extra":
        header.append("note")
    n = draw(st.integers(0, 9))
    good = st.sampled_from(["0", "0.5", "0.75", "0.0625", "250000", "1000000", "3.1", "2.5"])
    rows = [[draw(st.one_of(good, good, good, cells)) for _ in header] for _ in range(n)]
    if draw(st.booleans()) and rows:  # ragged row
        rows[draw(st.integers(0, n - 1))].append("9")
    return csv_text(header, rows, ";" if mutation == "sep" else ",")


@pytest.fixture(scope="module")
def scratch():
    d = Path(tempfile.mkdtemp(prefix="fuzz-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@FAST
@given(text=tables(["", "sparsity", "scale", "val-loss", "steps"]))
def test_paper_data_t5(scratch, text):
    src = scratch / "t5.csv"
    src.write_text(text)
    cli("paper-data", "t5", "--source", src, "--out", scratch / "o.csv")


@FAST
@given(text=tables(["x", "Model Size", "Training FLOP", "loss"]))
def test_paper_data_chinchilla(scratch, text):
    src = scratch / "ch.csv"
    src.write_text(text)
    cli("paper-data", "chinchilla", "--source", src, "--out", scratch / "o.csv")


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers.filter(lambda v: not (isinstance(v, float) and not np.isfinite(v))),
              text_cells),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=6)


@st.composite
def vit_json(draw):
    cols = ["scale", "sparsity", "total_examples", "val-loss"]
    if draw(st.booleans()):
        cols.pop(draw(st.integers(0, 3)))
    keys = draw(st.lists(st.sampled_from(["0", "1", "2", "10", "-1", "a", "01"]), max_size=4, unique=True))
    good = st.sampled_from([0.25, 0.5, 0.0, 0.875, 225280000, 1.2])
    obj = {c: {k: draw(st.one_of(good, good, json_values)) for k in keys if draw(st.integers(0, 9)) > 0}
           for c in cols}
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)  # not even the right shape
    return obj


@FAST
@given(obj=vit_json())
def test_paper_data_vit(scratch, obj):
    src = scratch / "vit.json"
    src.write_text(json.dumps(obj))
    cli("paper-data", "vit", "--source", src, "--out", scratch / "o.csv")


@FAST
@given(text=tables(["sparsity", "nnz", "data", "loss"]))
def test_tidy_loader(scratch, text):
    """The tidy CSV reader (the input of `fit`): InputError or a float table, never anything else."""
    from bigsparse_lib.table import read_tidy_csv

    src = scratch / "tidy.csv"
    src.write_text(text)
    try:
        df = read_tidy_csv(src)
    except InputError as e:
        assert "\n" not in str(e)
        return
    assert all(np.isfinite(df[c]).all() for c in ("sparsity", "nnz", "data", "loss"))


@FEW
@given(text=tables(["sparsity", "nnz", "data", "loss"]),
       extra=st.lists(st.sampled_from(["--dense", "--no-log", "--fix", "--predict", "--seed", "--bootstrap"]),
                      max_size=2, unique=True),
       value=cells)
def test_fit_cli(scratch, text, extra, value):
    src = scratch / "fit.csv"
    src.write_text(text)
    argv = ["fit", src, "--starts", "2"]
    for flag in extra:
        argv += [flag] if flag in ("--dense", "--no-log") else [flag, {"--fix": f"b_N={value}",
                                                                     "--predict": f"0.5,{value},1e9"}.get(flag, value)]
    cli(*argv)


coefs = st.dictionaries(st.sampled_from(["a_S", "b_S", "c_S", "b_N", "a_D", "b_D", "c", "a_N", "x"]),
                        st.one_of(numbers.filter(lambda v: not (isinstance(v, float) and not np.isfinite(v))),
                                  st.none(), st.booleans(), text_cells), max_size=8)
GOOD = {"a_S": 16.8, "b_S": 0.722, "c_S": 45.0, "b_N": 0.245, "a_D": 6.9e8, "b_D": 0.203, "c": 0.651}


@FAST
@given(change=coefs, whole=st.booleans(), sparsities=st.lists(cells, min_size=0, max_size=3))
def test_gain_cli(scratch, change, whole, sparsities):
    obj = {**GOOD, **change}
    path = scratch / "coefs.json"
    path.write_text(json.dumps({"coefs": obj} if whole else obj))
    cli("gain", "--coefs", path, "--sparsity", ",".join(sparsities))


@FAST
@given(change=coefs, nnz=cells, compute=cells, onset=st.one_of(st.none(), cells),
       cost=st.sampled_from(["sparse", "dense"]))
def test_optimal_cli(scratch, change, nnz, compute, onset, cost):
    path = scratch / "coefs.json"
    path.write_text(json.dumps({**GOOD, **change}))
    how = ["--onset", onset] if onset is not None else ["--nnz", nnz, "--compute", compute]
    cli("optimal", "--coefs", path, "--cost", cost, *how)


# --------------------------------------------------------------------------------------
# Results directories: a finished sweep (fake engine), then a generated fault in one file
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(scratch):
    root = scratch / "finished"
    code, _, err = cli("sweep", "--family", "vit", "--preset", "smoke", "--results", root,
                       "--trainer", "test_sweep:fake_train", "--no-progress")
    assert code == 0, err
    return root


@FEW
@given(target=st.sampled_from(["sweep.json", "config.json", "record.json", "running.json", "run dir", "runs"]),
       how=st.sampled_from(["truncate", "json", "delete", "garbage"]), cut=st.floats(0, 1), value=json_values,
       which=st.integers(0, 100))
def test_results_directory(finished, scratch, target, how, cut, value, which):
    root = scratch / "r"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(finished, root)
    runs = json.loads((root / "sweep.json").read_text())["runs"]
    rid = runs[which % len(runs)]
    path = {"sweep.json": root / "sweep.json", "runs": root / "runs", "run dir": root / "runs" / rid}.get(
        target, root / "runs" / rid / target)
    if how == "delete" or target in ("run dir", "runs"):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    elif how == "truncate" and path.is_file():
        data = path.read_bytes()
        path.write_bytes(data[: int(cut * len(data))])
    elif how == "json":
        if target == "record.json" and isinstance(value, dict):
            value = {**json.loads(path.read_text()), **value}
        path.write_text(json.dumps(value))
    else:
        path.write_bytes(b"\xff\xfe\x00garbage")
    cli("sweep-status", root)
    cli("sweep-status", root, "--runs", "--json")
    cli("export", root, "--out", scratch / "export.csv")


# --------------------------------------------------------------------------------------
# C4 shards and image folders (the loaders; the training engine is not involved)
# --------------------------------------------------------------------------------------
shard_lines = st.one_of(
    st.builds(lambda t: json.dumps({"text": t}), st.text(max_size=20)),
    st.builds(lambda v: json.dumps({"text": v}), json_values),
    st.builds(json.dumps, json_values),
    st.binary(max_size=12).map(lambda b: b.decode("latin-1")),
)


@FAST
@given(lines=st.lists(shard_lines, max_size=5), raw=st.binary(max_size=8), mode=st.sampled_from(
    ["gz", "plain", "gz-cut", "gz-flip", "bytes"]), at=st.floats(0, 1))
def test_c4_reader(scratch, lines, raw, mode, at):
    from bigsparse_lib.data.c4 import read_texts

    body = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    if mode == "bytes":
        body = body + raw + b"\n"
    path = scratch / ("shard.json" if mode == "plain" else "shard.json.gz")
    blob = body if mode == "plain" else gzip.compress(body)
    i = int(at * len(blob))
    if mode == "gz-cut":
        blob = blob[:i]
    elif mode == "gz-flip" and i < len(blob):
        blob = blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1:]
    path.write_bytes(blob)
    try:
        texts = read_texts(str(path))
    except InputError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    assert texts and all(isinstance(t, str) for t in texts)


VIT_SMALL = SimpleNamespace(num_classes=4, image_size=8, channels=3)


def png_bytes(colour) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (5, 5), colour).save(buf, format="PNG")
    return buf.getvalue()


@FEW
@given(files=st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]), st.sampled_from([".png", ".jpg", ".txt"]),
                                st.one_of(st.just(b"png"), st.binary(max_size=16))), min_size=0, max_size=6),
       labels=st.one_of(st.none(), st.lists(st.tuples(st.sampled_from(["a/0.png", "x.png", "", "a/1.png"]),
                                                      st.sampled_from(["a", "a b", "", "z"]),
                                                      st.sampled_from(["train", "eval", "", "other"])),
                                            max_size=3)))
def test_image_folder(scratch, files, labels):
    from bigsparse_lib import data

    root = scratch / "images"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for i, (cls, suffix, content) in enumerate(files):
        (root / cls).mkdir(exist_ok=True)
        (root / cls / f"{i}{suffix}").write_bytes(png_bytes((i * 40, 0, 0)) if content == b"png" else content)
    if labels is not None:
        (root / "labels.csv").write_text(csv_text(["path", "labels", "split"], [list(r) for r in labels]))
    try:
        for split in ("train", "eval"):
            b = data.make("vit", VIT_SMALL, seed=0, split=split, source=str(root)).batch(0, 2)
            assert b["image"].shape == (2, 8, 8, 3) and np.isfinite(b["image"]).all()
    except InputError as e:
        assert "\n" not in str(e)
