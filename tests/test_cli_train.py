"""`bigsparse train`: arguments, exit codes, result.json, --save-params, resume/refuse, --init (§4.2)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bigsparse_lib import models, train
from bigsparse_lib.cli import main

ROOT = Path(__file__).resolve().parents[1]


def cli(capsys, *argv):
    code = main(["train", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, message", [
    (["--sparsity", "1.0"], "--sparsity must be in [0, 1)"),
    (["--sparsity", "1.5"], "--sparsity must be in [0, 1)"),
    (["--sparsity", "0.8", "--pattern", "2:4"], "above 1 - n/m = 0.5"),
    (["--sparsity", "0.5", "--pattern", "diagonal"], "--pattern"),
    (["--sparsity", "0.5", "--pattern", "4:2"], "--pattern"),
    (["--nnz", "10", "--sparsity", "0.5"], "nnz"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--init", "/no/such/dir"], "--init: no such directory"),
])
def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    code, stdout, stderr = cli(capsys, "--family", "vit", "--preset", "smoke", "--out", str(out), *argv)
    assert code == 2
    assert message in stderr and stderr.startswith("bigsparse train: error:")
    assert not out.exists()  # nothing written for a rejected config


def test_argparse_errors_exit_2_from_the_installed_command(tmp_path):
    exe = Path(sys.executable).parent / "bigsparse"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "bigsparse_lib"]
    proc = subprocess.run([*cmd, "train", "--family", "gpt", "--preset", "smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "--family" in proc.stderr


def test_train_json_save_params_resume_and_refuse(tmp_path, capsys):
    out, npz = tmp_path / "run", tmp_path / "kernels.npz"
    argv = ["--family", "vit", "--preset", "smoke", "--nnz", "5000", "--sparsity", "0.5", "--steps", "6",
            "--out", str(out), "--save-params", str(npz), "--json", "--no-progress"]
    code, stdout, _ = cli(capsys, *argv)
    assert code == 0
    res = json.loads(stdout)
    saved = json.loads((out / "result.json").read_text())
    assert res == {**saved, "params_file": str(npz)}
    for key in ("eval_loss", "nnz", "dense_params", "layer_sparsity", "data", "flops_dense", "flops_sparse"):
        assert key in saved
    # --nnz 5000 at S=0.5: the width whose sparsified layers hold ~10000 weights (config_for_nnz)
    mcfg = models.config_for_nnz("vit", "smoke", 5000, 0.5)
    assert saved["dense_params"] == models.vit.dense_count(mcfg)
    assert saved["nnz"] == pytest.approx(0.5 * saved["dense_params"], abs=len(saved["layer_sparsity"]))
    assert saved["steps"] == 6 and saved["data"] == 6 * train.RECIPES["vit"]["smoke"].batch_size

    # --save-params: every sparsified kernel under its path, in the model's [in, out] layout
    kernels = dict(np.load(npz))
    assert sorted(kernels) == sorted(saved["layer_sparsity"])
    params = train.load_params(out)
    for path, w in kernels.items():
        node = params
        for part in path.split("/"):
            node = node[part]
        np.testing.assert_array_equal(w, np.asarray(node))
        assert 1 - np.count_nonzero(w) / w.size == pytest.approx(saved["layer_sparsity"][path])
    assert any(path.endswith("key/kernel") for path in kernels)

    # the same command again: the finished result, nothing re-run or re-logged
    lines = (out / "log.jsonl").read_text()
    code, stdout, _ = cli(capsys, *argv)
    assert code == 0 and json.loads(stdout) == res and (out / "log.jsonl").read_text() == lines
    # another config in the same directory: refused
    code, _, stderr = cli(capsys, *[a if a != "0.5" else "0.75" for a in argv])
    assert code == 2 and "different config" in stderr


def test_init_prunes_a_pretrained_dense_model(tmp_path, capsys):
    """§4.2: train dense, then prune that checkpoint one-shot and finetune."""
    dense, pruned = tmp_path / "dense", tmp_path / "pruned"
    common = ["--family", "vit", "--preset", "smoke", "--steps", "4", "--json", "--no-progress"]
    code, stdout, _ = cli(capsys, *common, "--out", str(dense))
    assert code == 0 and json.loads(stdout)["sparsity"] == 0.0
    code, stdout, _ = cli(capsys, *common, "--sparsity", "0.5", "--method", "oneshot", "--init", str(dense),
                          "--out", str(pruned))
    assert code == 0
    res = json.loads(stdout)
    assert res["config"]["init"] == str(dense.resolve()) and res["config"]["schedule"]["start"] == 0.0
    assert res["sparsity"] == pytest.approx(0.5, abs=1e-2)
    # the first step trained the pretrained dense weights; the mask was in force from step 2 on
    log = [r for r in train.read_log(pruned) if "loss" in r]
    assert log[-1]["sparsity"] == pytest.approx(0.5, abs=1e-2)
    assert res["flops_sparse"] == pytest.approx(6 * res["data"] / 4 * (res["dense_params"] + 3 * res["nnz"]))
    # pruning started from the pretrained weights: surviving weights moved only by 4 steps of finetuning
    before, after = train.sparsified_params(dense, "vit"), train.sparsified_params(pruned, "vit")
    for path in before:
        kept = after[path] != 0
        close = np.isclose(after[path][kept], before[path][kept], rtol=0.2, atol=0.05)
        assert close.mean() > 0.8, path

    # a pretrained checkpoint of other shapes is refused before anything is written
    other = tmp_path / "other"
    code, _, stderr = cli(capsys, *common, "--nnz", "20000", "--sparsity", "0.5", "--init", str(dense),
                          "--out", str(other))
    assert code == 2 and "shapes do not match" in stderr and not other.exists()
