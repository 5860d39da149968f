"""The training loop (`train.py`, `flops.py`): config, FLOP accounting (eq. 4 / App. D),
exact resume after a stop and after SIGKILL, data parallelism, divergence, and the real
families at smoke size.

Most tests drive the loop with a stand-in task (a two-layer MLP on a synthetic
regression stream, with a stand-in magnitude pruner), so they check the loop itself
in a second; `test_real_*` use models/, data/, pruning.py and optim.py.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bigsparse_lib import law, train
from bigsparse_lib.errors import InputError
from bigsparse_lib.flops import Spent
from bigsparse_lib.schedule import GradualSchedule

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# --------------------------------------------------------------------------------------
# The stand-in task.
# --------------------------------------------------------------------------------------
class RegressionStream:
    """y = tanh(x W*) + noise; batch i is a pure function of (seed, split, i)."""

    units_per_example = 3  # pretend each example is 3 tokens, so that D != examples
    irreducible_loss = None

    def __init__(self, seed: int, split: str, delay: float = 0.0):
        self.seed, self.split_code, self.delay = seed, {"train": 0, "eval": 1}[split], delay
        self.teacher = np.random.default_rng(1234).normal(size=(8, 4)).astype(np.float32)

    def batch(self, index: int, batch_size: int) -> dict[str, np.ndarray]:
        if self.delay:
            time.sleep(self.delay)
        rng = np.random.default_rng([self.seed, self.split_code, index])
        x = rng.normal(size=(batch_size, 8)).astype(np.float32)
        y = np.tanh(x @ self.teacher) + 0.1 * rng.normal(size=(batch_size, 4)).astype(np.float32)
        return {"x": x, "y": y.astype(np.float32)}


def standin_init(key):
    k0, k1 = jax.random.split(key)
    return {"dense_0": {"kernel": jax.random.normal(k0, (8, 32)) / np.sqrt(8), "bias": jnp.zeros(32)},
            "dense_1": {"kernel": jax.random.normal(k1, (32, 4)) / np.sqrt(32), "bias": jnp.zeros(4)}}


def standin_loss(params, batch, *, rng=None, dtype=jnp.float32):
    x = batch["x"].astype(dtype)
    h = jnp.tanh(x @ params["dense_0"]["kernel"].astype(dtype) + params["dense_0"]["bias"].astype(dtype))
    if rng is not None:  # a little dropout, so that the per-step key matters for exact resume
        h = h * jax.random.bernoulli(rng, 0.9, h.shape) / 0.9
    out = h @ params["dense_1"]["kernel"].astype(dtype) + params["dense_1"]["bias"].astype(dtype)
    return jnp.mean((out.astype(jnp.float32) - batch["y"]) ** 2)


def standin_sparsifiable(params):
    return jax.tree_util.tree_map_with_path(lambda p, _: p[-1].key == "kernel", params)


def standin_pruner(inner, targets, total_steps, schedule):
    """Magnitude pruning to schedule.sparsity_at_step(t): pruned weights are exactly zero."""

    def init(params):
        return (inner.init(params), jnp.zeros((), jnp.int32))

    def update(grads, state, params):
        inner_state, t = state
        updates, inner_state = inner.update(grads, inner_state, params)
        new = optax.apply_updates(params, updates)

        def prune(w, S):
            S_t = schedule.sparsity_at_step(t + 1, total_steps, jnp.float32(S))
            keep = jnp.round((1.0 - S_t) * w.size).astype(jnp.int32)
            rank = jnp.argsort(jnp.argsort(-jnp.abs(w).ravel())).reshape(w.shape)
            return jnp.where(rank < keep, w, 0.0)

        new = jax.tree.map(lambda w, S: prune(w, S) if S > 0 else w, new, targets)
        return jax.tree.map(lambda n, p: n - p, new, params), (inner_state, t + 1)

    return optax.GradientTransformation(init, update)


def standin_task(seed: int = 0, S: float = 0.0, delay: float = 0.0, lr: float | None = None,
                 real_optimizer: bool = False) -> train.Task:
    """The stand-in model and data; with real_optimizer, the project's optimizer and pruning
    (`train.make_optimizer`: optim.for_family wrapped by pruning.sparsify)."""
    params = standin_init(jax.random.key(0))
    targets = jax.tree_util.tree_map_with_path(lambda p, _: S if p[-1].key == "kernel" else 0.0, params)

    def optimizer(config, task):
        inner = optax.adam(lr or config.learning_rate)
        return standin_pruner(inner, task.targets, config.steps, config.schedule)

    return train.Task(model_config=None, init=standin_init, loss_fn=standin_loss,
                      sparsifiable=standin_sparsifiable, targets=targets,
                      train_data=RegressionStream(seed, "train", delay), eval_data=RegressionStream(seed, "eval"),
                      units_per_example=RegressionStream.units_per_example,
                      optimizer=None if real_optimizer else optimizer)


def small_config(**kw) -> train.TrainConfig:
    base = dict(family="t5", preset="smoke", steps=30, batch_size=8, learning_rate=1e-2,
                log_every=5, checkpoint_every=10, eval_batches=2, sparsity=0.5,
                schedule=GradualSchedule(start=0.25, end=0.75, every=2))
    base.update(kw)
    return train.TrainConfig(**base)


def run(config, out, real_optimizer=False, **kw):
    seed, S = config.seed, config.sparsity
    task = kw.pop("task", None) or standin_task(seed, S, real_optimizer=real_optimizer)
    return train.train(config, out, progress=False, task=task, **kw)


def params_of(out):
    return train.load_params(out)


def assert_trees_equal(a, b):
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (p, x), (_, y) in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=train.path_str(p))


# --------------------------------------------------------------------------------------
# Config.
# --------------------------------------------------------------------------------------
def test_config_round_trip_and_defaults():
    c = train.TrainConfig(family="vit", preset="toy", sparsity=0.75, pattern="2:8", seed=3)
    r = c.resolved()
    recipe = train.RECIPES["vit"]["toy"]
    assert (r.steps, r.batch_size, r.learning_rate) == (recipe.steps, recipe.batch_size, recipe.learning_rate)
    assert r.schedule == GradualSchedule(0.25, 0.75, 3.0, train.mask_update_every(recipe.steps))
    d = json.loads(json.dumps(r.to_dict()))
    # every field in field order, except the newer ones that stay out while None (stored runs keep their ids)
    assert list(d) == [f.name for f in dataclasses.fields(train.TrainConfig) if f.name != "acdc_phase"]
    assert train.OMITTED_WHEN_NONE == ("acdc_phase",)
    assert train.TrainConfig.from_dict(d) == r
    assert train.TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(InputError, match="unknown"):
        train.TrainConfig.from_dict({**d, "bogus": 1})


def test_mask_update_frequency_is_the_papers_at_full_length():
    assert train.mask_update_every(55_000) == 100  # App. A: every 100 steps
    assert train.mask_update_every(1_000_000) == 100
    assert train.mask_update_every(40) == 1
    assert train.mask_update_every(1000) == 5


def test_pretrained_schedule_starts_at_once(tmp_path):
    r = train.TrainConfig(family="t5", preset="smoke", sparsity=0.5, init=str(tmp_path)).resolved()
    assert r.schedule.start == 0.0  # §4.2: sparsify immediately from a pretrained checkpoint
    assert r.init == str(tmp_path.resolve())


@pytest.mark.parametrize("kw, message", [
    (dict(sparsity=1.0), "sparsity"),
    (dict(sparsity=-0.1), "sparsity"),
    (dict(sparsity=0.8, pattern="2:4"), "1 - n/m"),
    (dict(sparsity=0.5, pattern="2-4"), "pattern"),
    (dict(sparsity=0.5, pattern="4:2"), "0 < n < m"),
    (dict(method="rigl"), "method"),
    (dict(family="gpt"), "family"),
    (dict(preset="huge"), "preset"),
    (dict(steps=0), "steps"),
    (dict(nnz=-5), "nnz"),
    (dict(dtype="float16"), "dtype"),
    (dict(init="/no/such/dir"), "init"),
    (dict(method="none", sparsity=0.5), "dense"),
])
def test_validate_rejects_bad_arguments(kw, message):
    with pytest.raises(InputError, match=message):
        train.TrainConfig(**{"family": "t5", "preset": "smoke", **kw}).validate()


def test_nm_at_its_limit_is_fine():
    train.TrainConfig(family="t5", sparsity=0.5, pattern="2:4").validate()
    train.TrainConfig(family="t5", sparsity=0.75, pattern="2:8").validate()


# --------------------------------------------------------------------------------------
# FLOP accounting (eq. 4 / App. D).
# --------------------------------------------------------------------------------------
def test_spent_adds_six_n_d_per_step():
    s = Spent().add_step(nnz=10, dense=40, data_per_step=7).add_step(nnz=5, dense=40, data_per_step=7)
    assert s.to_dict() == {"steps": 2, "data": 14, "flops_dense": 6 * 40 * 14, "flops_sparse": 6 * (10 + 5) * 7}
    assert Spent.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("S, real_optimizer", [(0.5, False), (0.875, False), (0.75, True)])
def test_run_flops_match_eq4_for_the_paper_schedule(tmp_path, S, real_optimizer):
    """Summed per-step FLOPs of a run = law.training_flops(N, D, S) up to the discreteness of
    mask updates. The schedule is the paper's 25%->75% cubic one; the pruner is the stand-in
    or the project's (pruning.sparsify around optim.for_family)."""
    steps, every = 400, 2
    cfg = small_config(steps=steps, sparsity=S, schedule=GradualSchedule(0.25, 0.75, 3.0, every),
                       log_every=100, checkpoint_every=400)
    res = run(cfg, tmp_path, real_optimizer=real_optimizer)
    N, D, dense = res["nnz"], res["data"], res["dense_params"]
    assert D == steps * 8 * RegressionStream.units_per_example
    assert N == round((1 - S) * 8 * 32) + round((1 - S) * 32 * 4)
    # dense cost: the base model of N/(1-S) weights every step (§3.3 (a)); exact up to rounding N.
    assert res["flops_dense"] == 6 * dense * D
    assert res["flops_dense"] == pytest.approx(law.training_flops(N, D, S, cost="dense"), rel=1e-2)
    # sparse cost: eq. 4 for the paper schedule; the mask changes every `every` steps, lagging the
    # continuous schedule by < every/steps of training.
    expected = law.training_flops(N, D, S, cost="sparse")
    assert expected == pytest.approx(6 * N * D * law.c_mul_eq4(S), rel=1e-9)  # eq. 4 as printed
    assert res["flops_sparse"] == pytest.approx(expected, rel=2 * every / steps + 1e-2 * (N / dense != 1 - S))
    # And it is sparser than dense: c_mul(S) < 1/(1-S).
    assert res["flops_sparse"] < res["flops_dense"]
    log = train.read_log(tmp_path)
    assert log[-2]["flops_sparse"] == res["flops_sparse"] and log[-1]["eval_loss"] == res["eval_loss"]
    assert log[0]["sparsity"] == 0.0 and log[-2]["sparsity"] == pytest.approx(1 - N / dense)


def test_dense_run_sparse_flops_equal_dense_flops(tmp_path):
    res = run(small_config(sparsity=0.0, steps=10), tmp_path)
    assert res["flops_sparse"] == res["flops_dense"] == 6 * res["dense_params"] * res["data"]
    assert res["layer_sparsity"] == {"dense_0/kernel": 0.0, "dense_1/kernel": 0.0}


# --------------------------------------------------------------------------------------
# Checkpoints and exact resume.
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("real_optimizer", [False, True])
def test_stop_and_resume_in_process_is_exact(tmp_path, real_optimizer):
    """Stop after 13 steps, resume: the same parameters, eval loss, FLOPs and log as a run never
    stopped. With the project's optimizer, the restored state includes the pruning masks."""
    cfg = small_config()
    full = run(cfg, tmp_path / "full", real_optimizer)
    stopped = run(cfg, tmp_path / "split", real_optimizer, stop_after=13)  # saves at 13
    assert stopped["status"] == "stopped" and stopped["steps"] == 13
    assert not (tmp_path / "split" / "result.json").exists()
    resumed = run(cfg, tmp_path / "split", real_optimizer)
    assert resumed["eval_loss"] == full["eval_loss"]  # bitwise
    for k in ("nnz", "data", "flops_dense", "flops_sparse", "layer_sparsity"):
        assert resumed[k] == full[k], k
    assert_trees_equal(params_of(tmp_path / "full"), params_of(tmp_path / "split"))
    log_full, log_split = train.read_log(tmp_path / "full"), train.read_log(tmp_path / "split")
    steps = [r["step"] for r in log_split]
    assert len(steps) == len(set(steps)) + 1  # step 30: one train record and one eval record
    assert [r["step"] for r in log_full] == [5, 10, 15, 20, 25, 30, 30]
    assert steps == [5, 10, 13, 15, 20, 25, 30, 30]
    # the log windows after the stop cover the same steps, so they hold the same numbers
    train_full = {r["step"]: r for r in log_full if "eval_loss" not in r}
    train_split = {r["step"]: r for r in log_split if "eval_loss" not in r}
    for step in (20, 25, 30):
        assert train_split[step] == train_full[step]
    assert log_split[-1] == log_full[-1] == {"step": 30, "eval_loss": full["eval_loss"]}


def test_a_finished_run_returns_its_result(tmp_path):
    cfg = small_config(steps=10)
    first = run(cfg, tmp_path)
    again = run(cfg, tmp_path)
    assert again == first
    assert len(train.read_log(tmp_path)) == 3  # steps 5, 10 and the eval record, not repeated


def test_different_config_in_the_same_directory_is_refused(tmp_path):
    run(small_config(steps=10), tmp_path)
    with pytest.raises(InputError, match="different config.*sparsity"):
        run(small_config(steps=10, sparsity=0.75), tmp_path)


def test_a_checkpoint_of_another_config_is_refused_without_config_json(tmp_path):
    """Identity lives with the data: a copied run folder whose config.json is gone still holds a
    checkpoint that names its config, and a run of another config refuses it before writing."""
    import shutil

    run(small_config(steps=30), tmp_path / "a", stop_after=20)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / "config.json").unlink()
    with pytest.raises(InputError, match="checkpoint at step 20 belongs to a run of a different config.*sparsity"):
        run(small_config(steps=30, sparsity=0.75), tmp_path / "b")
    assert not (tmp_path / "b" / "config.json").exists()  # nothing written


@pytest.mark.parametrize("item", ["params", "opt_state", "meta"])
def test_a_corrupt_latest_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(tmp_path, capfd, item):
    """Each item of the latest checkpoint (weights, optimizer state, metadata) corrupted in turn."""
    cfg = small_config(steps=30)
    full = run(cfg, tmp_path / "full")
    run(cfg, tmp_path / "cut", stop_after=20)  # checkpoints at 10 and 20
    for f in (tmp_path / "cut" / "checkpoints" / "20" / item).rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0garbage")
    resumed = run(cfg, tmp_path / "cut")
    err = capfd.readouterr().err
    assert "checkpoint 20 of" in err and "unreadable" in err and "resuming from the previous checkpoint" in err
    assert resumed["eval_loss"] == full["eval_loss"]  # resumed from step 10: the same numbers
    aside = list((tmp_path / "cut" / "checkpoints-set-aside").iterdir())
    assert len(aside) == 1 and aside[0].name.startswith("20-")  # kept, not deleted


TERM_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_train import small_config, standin_task
from bigsparse_lib import train
cfg = small_config(steps=600, checkpoint_every=300, log_every=3)
try:
    train.train(cfg, {out!r}, progress=False, task=standin_task(cfg.seed, cfg.sparsity, delay=0.02))
except train.Interrupted as e:
    print("INTERRUPTED", e)
    sys.exit(130)
"""


def test_sigterm_checkpoints_the_last_block_and_says_how_to_resume(tmp_path):
    """SIGTERM ends a run cleanly: its last finished block is checkpointed (not only the last
    periodic checkpoint), a line says how to resume, and resuming gives a never-stopped run's numbers."""
    import signal
    import time as _time

    out = tmp_path / "termed"
    proc = subprocess.Popen([sys.executable, "-c", TERM_SCRIPT.format(tests=str(HERE), out=str(out))], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    deadline = _time.time() + 240
    while _time.time() < deadline and not any(r.get("step", 0) >= 30 for r in train.read_log(out)):
        _time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr[-2000:]
    assert "INTERRUPTED SIGTERM: checkpointed" in stdout and "run the same command again to resume" in stdout
    saved = train._manager(out).latest_step()
    assert saved is not None and 30 <= saved < 300  # the block it was in, not a periodic checkpoint
    cfg = small_config(steps=600, checkpoint_every=300, log_every=3)
    resumed = run(cfg, out)
    full = run(cfg, tmp_path / "full")
    assert resumed["eval_loss"] == full["eval_loss"]


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_train import small_config, standin_task
from bigsparse_lib import train
cfg = small_config(steps=60, checkpoint_every=10, log_every=3)
train.train(cfg, {out!r}, progress=False, task=standin_task(cfg.seed, cfg.sparsity, delay={delay}))
print("FINISHED")
"""


def test_sigkill_mid_run_then_resume_is_exact(tmp_path):
    """Kill a training subprocess with SIGKILL after its first checkpoints, resume, and compare
    with a run never stopped: bitwise equal parameters and eval loss, no duplicated log lines."""
    out = tmp_path / "killed"
    script = KILL_SCRIPT.format(tests=str(HERE), out=str(out), delay=0.1)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        ckpts = [p for p in (out / "checkpoints").glob("*") if p.name.isdigit()] if (out / "checkpoints").exists() else []
        if any(int(p.name) >= 20 for p in ckpts):
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    stdout, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL and b"FINISHED" not in stdout
    assert not (out / "result.json").exists()
    logged = [r["step"] for r in train.read_log(out)]
    assert logged and max(logged) < 60

    cfg = small_config(steps=60, checkpoint_every=10, log_every=3)
    resumed = run(cfg, out)
    full = run(cfg, tmp_path / "full")
    assert resumed["eval_loss"] == full["eval_loss"]
    assert resumed["flops_sparse"] == full["flops_sparse"] and resumed["data"] == full["data"]
    assert_trees_equal(params_of(out), params_of(tmp_path / "full"))
    assert train.read_log(out) == train.read_log(tmp_path / "full")  # nothing duplicated or lost


# --------------------------------------------------------------------------------------
# Data parallelism, precision, divergence.
# --------------------------------------------------------------------------------------
PARALLEL_SCRIPT = """
import json, sys, jax
sys.path.insert(0, {tests!r})
from test_train import small_config, standin_task
from bigsparse_lib import train
cfg = small_config(steps=12)
two = train.train(cfg, {out!r} + "/two", progress=False, task=standin_task(0, cfg.sparsity))
one = train.train(cfg, {out!r} + "/one", progress=False, task=standin_task(0, cfg.sparsity), devices=jax.devices()[:1])
print(json.dumps({{"n": len(jax.devices()), "two": two, "one": one}}))
"""


def test_data_parallel_on_two_cpu_devices_matches_one(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run([sys.executable, "-c", PARALLEL_SCRIPT.format(tests=str(HERE), out=str(tmp_path))],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["n"] == 2 and got["two"]["devices"] == 2 and got["one"]["devices"] == 1
    assert got["two"]["eval_loss"] == pytest.approx(got["one"]["eval_loss"], rel=1e-5)
    assert got["two"]["nnz"] == got["one"]["nnz"] and got["two"]["flops_sparse"] == got["one"]["flops_sparse"]
    p2, p1 = train.load_params(tmp_path / "two"), train.load_params(tmp_path / "one")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), p2, p1)


def test_data_mesh_uses_devices_that_divide_the_batch():
    devs = ["d0", "d1", "d2", "d3"]
    assert train.data_mesh(8, devs).size == 4
    assert train.data_mesh(6, devs).size == 3
    assert train.data_mesh(7, devs).size == 1


def test_bfloat16_compute(tmp_path):
    f32 = run(small_config(steps=10), tmp_path / "f32")
    bf16 = run(small_config(steps=10, dtype="bfloat16"), tmp_path / "bf16")
    assert np.isfinite(bf16["eval_loss"]) and bf16["eval_loss"] != f32["eval_loss"]
    assert bf16["eval_loss"] == pytest.approx(f32["eval_loss"], rel=0.1)
    # parameters stay float32; only the compute is bfloat16
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(params_of(tmp_path / "bf16")))


def test_diverged_run_raises_and_records(tmp_path):
    cfg = small_config(steps=20, sparsity=0.0, learning_rate=1e30)
    with pytest.raises(train.Diverged, match="loss became"):
        run(cfg, tmp_path, task=standin_task(0, 0.0, lr=1e30))
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["status"] == "diverged" and "loss became" in res["reason"]


# --------------------------------------------------------------------------------------
# The real families (models/, data/, pruning.py, optim.py) at smoke size.
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["t5", "vit"])
def test_real_family_smoke_run(tmp_path, family):
    from bigsparse_lib import data, models, pruning

    S, steps = 0.5, 8
    cfg = train.TrainConfig(family=family, preset="smoke", sparsity=S, steps=steps)
    res = train.train(cfg, tmp_path, progress=False)
    assert res["status"] == "ok" and np.isfinite(res["eval_loss"])
    params = train.load_params(tmp_path)
    fam = models.get_family(family)
    flags = fam.sparsifiable(params)
    assert models.count(params, flags) == (res["dense_params"], res["nnz"])
    sizes = [np.size(x) for x, f in zip(jax.tree.leaves(params), jax.tree.leaves(flags)) if f]
    assert res["nnz"] == sum(pruning.keep_count(S, n) for n in sizes)  # exactly S on every kernel at the end
    assert len(res["layer_sparsity"]) == len(sizes)
    assert all(v == pytest.approx(S, abs=1e-2) for v in res["layer_sparsity"].values())
    units = data.make(family, "smoke", seed=0).units_per_example
    B = train.RECIPES[family]["smoke"].batch_size
    assert res["data"] == steps * B * units
    assert res["data_unit"] == ("tokens" if family == "t5" else "examples")
    assert res["flops_dense"] == 6 * res["dense_params"] * res["data"]
    assert res["nnz"] * 6 * res["data"] < res["flops_sparse"] < res["flops_dense"]
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved == json.loads(json.dumps(res))
    if family == "t5":  # the token embedding is pruned too (App. A), but not counted in N
        emb = np.asarray(params["token_embedder"]["embedding"])
        assert 1 - np.count_nonzero(emb) / emb.size == pytest.approx(fam.embedding_sparsity(S), abs=1e-2)


@pytest.mark.parametrize("family", ["t5", "vit"])
def test_every_seed_is_evaluated_on_the_same_held_out_set(family):
    """EVAL_SEED: seeds differ in their training data, never in the set they are scored on, and
    that set is disjoint from every seed's training batches (they come from another split)."""
    a = train.make_task(train.TrainConfig(family=family, preset="smoke", seed=0).resolved())
    b = train.make_task(train.TrainConfig(family=family, preset="smoke", seed=3).resolved())
    for x, y in zip(jax.tree.leaves(a.eval_data.batch(2, 8)), jax.tree.leaves(b.eval_data.batch(2, 8))):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a.train_data.batch(2, 8)),
                                                         jax.tree.leaves(b.train_data.batch(2, 8))))
    def rows(data, i):  # each example's input as bytes (token rows, or images)
        first = jax.tree.leaves(data.batch(i, 8))[0]
        return {np.asarray(r).tobytes() for r in first}

    held = set().union(*(rows(a.eval_data, i) for i in range(4)))
    assert len(held) == 32  # distinct examples, so an overlap would show
    for task in (a, b):
        for i in range(4):
            assert not held & rows(task.train_data, i)


def test_checkpoints_saved_from_several_threads_at_once_all_land(tmp_path):
    """Three runs checkpointing from three threads at once (the threaded group runner): every save
    lands and restores. orbax's asynchronous save keeps process-wide state, and without
    `train._SAVE_LOCK` this test failed in 3 runs of 3 (FileExistsError and the like)."""
    import threading

    errors = []

    def work(k):
        try:
            manager = train._manager(tmp_path / f"run{k}")
            p = {"w": jnp.full((16, 16), float(k))}
            for step in range(1, 25):
                train._save(manager, step, p, p, {"k": k})
            manager.wait_until_finished()
            assert manager.all_steps() == list(range(1, 25))[-len(manager.all_steps()):]
            assert manager.latest_step() == 24
            got, _, meta = train._restore(manager, 24, p, p)
            assert meta == {"k": k} and float(got["w"][0, 0]) == k
            manager.close()
        except Exception as e:  # noqa: BLE001 -- reported below, with its thread
            errors.append(f"run{k}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a save hung"
    assert errors == []
