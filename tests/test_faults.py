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


# --------------------------------------------------------------------------------------
# Released data and tidy tables (items 1, 9, 15, 17, 18)
# --------------------------------------------------------------------------------------
T5_HEAD = ",sparsity,scale,val-loss,steps\n"


def t5_rows(n=4):
    return "".join(f"{i},{[0.0, 0.5, 0.75, 0.875][i % 4]},0.0625,{3.0 - 0.01 * i},250000.0\n" for i in range(n))


def test_non_numeric_scale_cell_names_line_not_oom(tmp_path, capsys):
    """Item 1: one text cell in `scale` used to build multi-megabyte strings per row (OOM-killed)."""
    src = tmp_path / "t5.csv"
    rows = t5_rows().splitlines(keepends=True)
    rows[2] = rows[2].replace("0.0625", "x")  # line 4 of the file (line 1 is the header)
    src.write_text(T5_HEAD + "".join(rows))
    err = run_error(capsys, "paper-data", "t5", "--source", src, "--out", tmp_path / "o.csv")
    assert "line 4, column 'scale': 'x' is not a finite number" in err
    assert not (tmp_path / "o.csv").exists()


def test_fractional_steps_refused(tmp_path, capsys):
    src = tmp_path / "t5.csv"
    src.write_text(T5_HEAD + t5_rows().replace("250000.0", "250000.5", 1))
    assert "line 2, column 'steps': 250000 is not a whole number" in run_error(
        capsys, "paper-data", "t5", "--source", src, "--out", tmp_path / "o.csv").replace("250000.5", "250000")


VIT = {"scale": {"0": 0.25, "1": 0.25}, "sparsity": {"0": 0.0, "1": 0.5},
       "total_examples": {"0": 225280000, "1": 225280000}, "val-loss": {"0": 1.2, "1": 1.1}}


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d["scale"].update({"1": "big"}), "row '1', column 'scale': 'big' is not a finite number"),  # item 15
    (lambda d: d["val-loss"].update({"0": None}), "row '0', column 'val-loss': null is not a finite number"),
    (lambda d: d["sparsity"].update({"1": True}), "row '1', column 'sparsity': true is not a finite number"),
    (lambda d: d["scale"].pop("1"), "row '1' has no 'scale' value"),
    (lambda d: d["scale"].update({"x": 1.0}), "row key 'x' is not an integer"),
    (lambda d: d["sparsity"].update({"1": 1.5}), "row '1', column 'sparsity': 1.5 must be in [0, 1)"),  # item 18
    (lambda d: d.pop("val-loss"), "missing column(s) val-loss; found ['scale', 'sparsity', 'total_examples']"),
])
def test_vit_json_rows_are_named_by_key(tmp_path, capsys, edit, needle):
    d = json.loads(json.dumps(VIT))
    edit(d)
    src = tmp_path / "vit.json"
    src.write_text(json.dumps(d))
    assert needle in run_error(capsys, "paper-data", "vit", "--source", src, "--out", tmp_path / "o.csv")


def test_vit_json_duplicate_key(tmp_path, capsys):
    src = tmp_path / "vit.json"
    src.write_text(json.dumps(VIT).replace('"sparsity"', '"scale"'))
    assert "key(s) 'scale' appear more than once" in run_error(
        capsys, "paper-data", "vit", "--source", src, "--out", tmp_path / "o.csv")


@pytest.mark.parametrize("header, hint", [
    (";sparsity;scale;val-loss;steps", "the file must be comma-separated"),
    (",sparsity,scale,val-loss ,steps", "'val-loss ' have surrounding spaces"),
])
def test_missing_columns_list_what_was_found(tmp_path, capsys, header, hint):
    """Item 17."""
    src = tmp_path / "t5.csv"
    sep = ";" if header.startswith(";") else ","
    src.write_text(header + "\n" + t5_rows().replace(",", sep))
    err = run_error(capsys, "paper-data", "t5", "--source", src, "--out", tmp_path / "o.csv")
    assert "missing column(s)" in err and "found [" in err and hint in err


def tidy_csv(path, n_S=4, n_N=3, n_D=3, extra=""):
    from bigsparse_lib.paper import TABLE7

    S, N, D = np.meshgrid(np.array([0.0, 0.5, 0.75, 0.875][:n_S]), np.geomspace(1e6, 1e8, n_N),
                          np.geomspace(1e9, 1e11, n_D))
    S, N, D = S.ravel(), N.ravel(), D.ravel()
    pd.DataFrame({"sparsity": S, "nnz": N, "data": D, "loss": TABLE7["t5"].loss(S, N, D)}).to_csv(path, index=False)
    return path


def test_duplicate_loss_column_refused(tmp_path, capsys):
    """Item 9: pandas renamed a second `loss` to `loss.1`, and the fit used the first without a word."""
    src = tidy_csv(tmp_path / "t.csv")
    lines = src.read_text().splitlines()
    src.write_text("\n".join([lines[0] + ",loss"] + [l + ",9" for l in lines[1:]]) + "\n")
    assert "column(s) 'loss' appear more than once" in run_error(capsys, "fit", src, "--starts", "2")


@pytest.mark.parametrize("argv, needle", [
    (["gain", "--preset", "t5", "--sparsity", "0.5,,0.7"], "--sparsity: value 2 of '0.5,,0.7' is empty"),
    (["gain", "--preset", "t5", "--sparsity", "0.5,"], "value 2 of '0.5,' is empty"),
    (["gain", "--preset", "t5", "--sparsity", ""], "expected at least one number"),
])
def test_empty_list_fields_refused(capsys, argv, needle):
    """Item 9: empty fields were dropped, so `0.5,,0.7` answered for two sparsities, not three."""
    assert needle in run_error(capsys, *argv)


def test_empty_predict_field_refused(tmp_path, capsys):
    src = tidy_csv(tmp_path / "t.csv")
    assert "value 2 of '0.5,,1e8,1e10' is empty" in run_error(capsys, "fit", src, "--predict", "0.5,,1e8,1e10")


def test_subnormal_loss_refused(tmp_path, capsys):
    """Item 13: a loss of 1e-320 made every start diverge (RuntimeError)."""
    src = tidy_csv(tmp_path / "t.csv")
    df = pd.read_csv(src)
    df.loc[2, "loss"] = 1e-320
    df.to_csv(src, index=False)
    assert "line 4, column 'loss'" in run_error(capsys, "fit", src, "--starts", "2")


def test_export_names_the_run_not_a_line(results, tmp_path, capsys):
    """Item 18: a results directory has no lines; a bad value is located by its run."""
    rid = first_run(results)
    rec_path = results / "runs" / rid / "record.json"
    rec = json.loads(rec_path.read_text())
    rec["result"]["eval_loss"] = -1.0
    rec_path.write_text(json.dumps(rec))
    err = run_error(capsys, "export", results, "--out", tmp_path / "t.csv")
    assert f"run {rid} (runs/{rid}/record.json), column 'loss'" in err


# --------------------------------------------------------------------------------------
# Coefficients and fits (items 6, 7, 8, 13, 15)
# --------------------------------------------------------------------------------------
GOOD = {"a_S": 16.8, "b_S": 0.722, "c_S": 45.0, "b_N": 0.245, "a_D": 6.9e8, "b_D": 0.203, "c": 0.651}


@pytest.mark.parametrize("change, needle", [
    ({"a_S": -1.0}, "coefficient a_S must be positive, got -1"),
    ({"c": 0}, "coefficient c must be positive, got 0"),
    ({"b_N": 0.0}, "coefficient b_N must be positive"),  # item 15: ZeroDivisionError in gain
    ({"b_S": -0.5}, "coefficient b_S must be >= 0"),
    ({"c_S": "45"}, 'coefficient c_S must be a number, got "45"'),
    ({"b_D": True}, "coefficient b_D must be a number, got true"),
    ({"a_D": None}, "coefficient a_D must be a number, got null"),  # item 18: the key is named
])
@pytest.mark.parametrize("command", [["gain"], ["optimal", "--onset", "0.5"]])
def test_coefs_checked_like_fix(tmp_path, capsys, change, needle, command):
    """Item 7."""
    path = tmp_path / "coefs.json"
    path.write_text(json.dumps({**GOOD, **change}))
    assert needle in run_error(capsys, *command, "--coefs", path)


@pytest.mark.parametrize("fix, needle", [
    ("b_N=0", "--fix: b_N must be positive"),  # was ZeroDivisionError
    ("b_N=-1", "--fix: b_N must be positive"),  # was a crash formatting a non-finite gain
    ("a_S=-2", "--fix: a_S must be positive"),
])
def test_fix_rules(tmp_path, capsys, fix, needle):
    src = tidy_csv(tmp_path / "t.csv")
    assert needle in run_error(capsys, "fit", src, "--starts", "2", "--fix", fix)


def test_text_output_shows_non_finite_as_na():
    """Item 13: JSON carries a non-finite derived value as null; the text table prints n/a, not a crash."""
    from bigsparse_lib.commands import fit as cmd

    r = {"settings": {"method": "starts", "form": "eq3", "dense": False, "delta": 1e-3, "log": True, "seed": 0,
                      "best_rtol": 1e-6, "fixed": {}, "bootstrap": 0},
         "n_points": 48, "starts": 2, "objective": 1e-5, "converged_to_best": 1, "intervals": {"gain@0.5": [None, 2.0]},
         "coefs": GOOD, "derived": {"gain@0.5": None, "onset@0.5": 3.0},
         "predictions": [{"sparsity": 0.5, "nnz": 1e7, "data": 1e9, "loss": None, "lo": None, "hi": None,
                          "outside": {"log_N": 0.0, "log_D": 0.0}, "extrapolation": [None, None], "run": [None, None]}]}
    text = cmd._text(r)
    assert "gain@0.5" in text and "n/a" in text and "[          n/a,             2]" in text


@pytest.mark.parametrize("argv, needle", [
    (["--bootstrap", "1"], "--bootstrap must be 0 (none) or at least 40"),  # item 8
    (["--bootstrap", "39"], "at least 40"),
    (["--seed", "-1"], "--seed must be a non-negative integer, got -1"),  # item 13
])
def test_fit_argument_rules(tmp_path, capsys, argv, needle):
    src = tidy_csv(tmp_path / "t.csv")
    assert needle in run_error(capsys, "fit", src, "--starts", "2", *argv)


@pytest.mark.parametrize("shape, args, needle", [
    ({"n_S": 1}, [], "1 distinct sparsity (0) for the 3 free coefficient(s) a_S, b_S, c_S"),
    ({"n_S": 1}, [], "fit eq. 2 with --dense"),
    ({"n_S": 2}, [], "2 distinct sparsities (0, 0.5)"),
    ({"n_D": 2}, [], "2 distinct data amount(s) (data) for (a_D/D)^b_D + c; need at least 3"),
    ({"n_S": 1, "n_N": 2}, ["--dense"], "2 distinct size(s) (nnz) for the size term; need at least 3"),
    ({"n_S": 1, "n_N": 1, "n_D": 8}, [], "1 distinct size(s)"),
])
def test_fit_refuses_tables_that_cannot_identify_the_law(tmp_path, capsys, shape, args, needle):
    """Item 6: an all-dense table used to give confident gains of 10x-947x."""
    src = tidy_csv(tmp_path / "t.csv", **shape)
    assert needle in run_error(capsys, "fit", src, "--starts", "2", *args)


def test_identical_rows_refused(tmp_path, capsys):
    src = tmp_path / "same.csv"
    pd.DataFrame({"sparsity": [0.5] * 7, "nnz": [1e7] * 7, "data": [1e9] * 7, "loss": [3.0] * 7}).to_csv(src, index=False)
    assert "1 distinct (sparsity, nnz, data) point(s) for 7 free coefficient(s)" in run_error(capsys, "fit", src)


def test_fixed_coefficients_lower_what_is_needed(tmp_path, capsys):
    """With b_S fixed, two sparsities determine a_S and c_S; with the whole sparsity curve fixed, one does."""
    from bigsparse_lib.identify import problems

    S, N, D = np.meshgrid([0.0, 0.5], np.geomspace(1e6, 1e8, 3), np.geomspace(1e9, 1e11, 3))
    assert problems(S, N, D) and not problems(S, N, D, fixed={"b_S"})
    assert problems(S * 0, N, D) and not problems(S * 0, N, D, fixed={"a_S", "b_S", "c_S"})
    assert not problems(S * 0, N, D, dense=True)


# --------------------------------------------------------------------------------------
# optimal (item 5)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("compute", ["1e-300", "1e-200", "5.9e16"])
def test_optimal_refuses_under_one_unit_of_data_per_parameter(capsys, compute):
    err = run_error(capsys, "optimal", "--preset", "t5", "--nnz", "1e8", "--compute", compute)
    assert "under one unit of data (token/image) per parameter; give --compute >= 6 N^2 = 6e+16" in err


def test_optimal_nnz_below_one(capsys):
    assert "--nnz is a count" in run_error(capsys, "optimal", "--preset", "t5", "--nnz", "1e-300", "--compute", "1e300")


# --------------------------------------------------------------------------------------
# C4 shards and the SentencePiece model (items 4, 12)
# --------------------------------------------------------------------------------------
def good_line(i):
    return json.dumps({"text": f"document number {i} about the city", "url": f"u{i}"}) + "\n"


@pytest.mark.parametrize("kind, needle", [
    ("non-utf8", ":3: byte 0xff at column 10 is not UTF-8"),
    ("text not a string", ":2: 'text' must be a string, got int"),
    ("not json", ":2: not a JSON object"),
    ("corrupt gzip body", "cannot read C4 shard"),
    ("truncated gzip", "cannot read C4 shard"),
])
def test_c4_shard_faults_name_file_and_line(tmp_path, kind, needle):
    import gzip

    from bigsparse_lib.data.c4 import read_texts

    path = tmp_path / "c4-train.00000-of-00001.json.gz"
    body = (good_line(0) + good_line(1) + good_line(2)).encode()
    if kind == "non-utf8":
        lines = body.split(b"\n")
        lines[2] = lines[2][:9] + b"\xff" + lines[2][9:]
        body = b"\n".join(lines)
    elif kind == "text not a string":
        body = (good_line(0) + json.dumps({"text": 5}) + "\n").encode()
    elif kind == "not json":
        body = (good_line(0) + "{\"text\": \n").encode()
    blob = gzip.compress(body * (50 if kind.endswith("gzip") or kind.startswith("corrupt") else 1))
    if kind == "corrupt gzip body":
        blob = blob[:20] + bytes(b ^ 0x5A for b in blob[20:60]) + blob[60:]
    elif kind == "truncated gzip":
        blob = blob[: len(blob) // 2]
    path.write_bytes(blob)
    with pytest.raises(InputError) as e:
        read_texts(str(path))
    assert str(path) in str(e.value) and needle in str(e.value) and "\n" not in str(e.value)


def test_truncated_sentencepiece_model_refused(tmp_path):
    """Item 4: a model cut at a piece boundary parsed as a smaller vocabulary, and training ran on it."""
    import gzip

    from sentencepiece import sentencepiece_model_pb2 as pb

    from bigsparse_lib.data.c4 import C4Source, load_spm, train_sentencepiece

    shard = tmp_path / "c4-train.00000-of-00001.json.gz"
    shard.write_bytes(gzip.compress("".join(good_line(i) for i in range(300)).encode()))
    model = train_sentencepiece([str(shard)], str(tmp_path / "sp"), vocab_size=40)
    sp, _ = load_spm(C4Source(str(tmp_path), spm_model=model))  # the whole model loads
    assert sp.get_piece_size() == 40
    whole = pb.ModelProto()
    whole.ParseFromString(open(model, "rb").read())
    cut = pb.ModelProto()
    cut.pieces.extend(whole.pieces[:8])  # what the file's first bytes hold when cut after 8 pieces
    blob = cut.SerializeToString()
    assert open(model, "rb").read().startswith(blob)
    (tmp_path / "cut.model").write_bytes(blob)
    with pytest.raises(InputError, match="incomplete .truncated.*holds 8 pieces"):
        load_spm(C4Source(str(tmp_path), spm_model=str(tmp_path / "cut.model")))
    fewer = pb.ModelProto()
    fewer.CopyFrom(whole)
    del fewer.pieces[30:]
    (tmp_path / "fewer.model").write_bytes(fewer.SerializeToString())
    with pytest.raises(InputError, match="holds 30 pieces, but its trainer_spec says vocab_size 40"):
        load_spm(C4Source(str(tmp_path), spm_model=str(tmp_path / "fewer.model")))


# --------------------------------------------------------------------------------------
# train: output path and memory, before anything is written (items 14, 15)
# --------------------------------------------------------------------------------------
def test_train_out_file_refused(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert "--out: " in run_error(capsys, "train", "--family", "t5", "--preset", "smoke", "--out", f)
    assert f.read_text() == "x"


@pytest.mark.parametrize("family", ["t5", "vit"])
def test_train_model_too_large_refused_before_writing(tmp_path, capsys, family):
    out = tmp_path / "big"
    err = run_error(capsys, "train", "--family", family, "--preset", "smoke", "--nnz", "1e12", "--out", out)
    assert "parameters need at least" in err and "GiB" in err and "use a smaller --nnz" in err
    assert not out.exists()


def test_param_count_matches_the_allocated_model():
    """The estimate is the count of the model init allocates (smoke bases: cheap to allocate)."""
    import jax

    from bigsparse_lib import budget, models

    for family in ("t5", "vit"):
        fam = models.get_family(family)
        params = fam.init(fam.BASES["smoke"], jax.random.PRNGKey(0))
        assert budget.param_count(family, fam.BASES["smoke"]) == sum(x.size for x in jax.tree_util.tree_leaves(params))
    with pytest.raises(InputError, match="more than the 9.54e-07 GiB of the limit"):
        budget.check_fits("t5", models.get_family("t5").BASES["smoke"], limit=2**10)


# --------------------------------------------------------------------------------------
# Chapters' papermill parameter (item 16)
# --------------------------------------------------------------------------------------
def test_check_scale():
    from bigsparse_lib.book import check_scale

    assert check_scale("smoke") == "smoke"
    with pytest.raises(InputError, match="parameter scale must be one of 'smoke', 'toy', 'full', got 'huge'"):
        check_scale("huge")


@pytest.mark.parametrize("name", ["intro", "core_law", "optimal_sparsity", "limit_performance", "appendix"])
def test_chapter_checks_scale_before_using_it(name):
    """Papermill injects `-p scale` after the parameters cell: the next cell must check it before any use."""
    import jupytext

    from bigsparse_lib.book import ROOT

    cells = [c for c in jupytext.read(ROOT / "chapters" / f"{name}.md").cells if c.cell_type == "code"]
    i = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    first = cells[i + 1].source
    assert "check_scale(scale)" in first
    assert "scale" not in first[: first.index("check_scale(scale)")].replace("check_scale", "")


def test_papermill_bad_scale_names_the_allowed_values(tmp_path):
    """Item 16, end to end: `-p scale huge` used to stop at a bare KeyError: 'huge'."""
    from bigsparse_lib import book

    with pytest.raises(RuntimeError, match="InputError: parameter scale must be one of 'smoke', 'toy', 'full', "
                                           "got 'huge'"):
        book.execute_chapter("chapters/intro", "huge", tmp_path)
    assert not (tmp_path / "chapters" / "intro.ipynb").exists()
