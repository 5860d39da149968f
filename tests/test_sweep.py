"""Sweeps: grids (Table 1, §4.1, §4.2), the result store, executors, export.

Store and executor logic is tested with `fake_train`, a stand-in for `train.train` that is
a pure function of the config (loss from Table 7's law at the run's N, S, D, plus a
config-hash wobble), so these tests take seconds. Smoke runs of the real engine are at
the end, marked slow.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bigsparse_lib import sweep
from bigsparse_lib.errors import InputError
from bigsparse_lib.schedule import GradualSchedule
from bigsparse_lib.sweep import grids, store as store_mod
from bigsparse_lib.sweep.store import Store

HERE = Path(__file__).resolve().parent
FAKE = "test_sweep:fake_train"  # importable in workers: tests/ is on sys.path (set for subprocesses below)


# ------------------------------------------------------------------------------------------------
# The fake engine. Environment variables steer it, so it behaves the same in any worker:
#   FAKE_DIVERGE_S   a sparsity whose runs diverge (raise train.Diverged)
#   FAKE_SLEEP       seconds per fake "chunk" (5 chunks a run; a checkpoint after each)
#   FAKE_LEDGER      a file: one line per run that finished (to count how often each ran)
#   FAKE_DIE_ONCE    a folder: the first attempt of each run kills its own process (os._exit)
# ------------------------------------------------------------------------------------------------
CHUNKS = 5


def fake_loss(config) -> tuple[float, int, float]:
    """(loss, N, D) of a config: Table 7's T5 law plus a deterministic wobble from the config hash."""
    from bigsparse_lib.law import SparseLaw

    law = SparseLaw(a_S=16.8, b_S=0.722, c_S=45.0, b_N=0.245, a_D=6.9e8, b_D=0.203, c=0.651)
    N = int(config.nnz)
    D = float(config.steps) * 4096.0
    h = int(hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:8], 16)
    wobble = 1.0 + 1e-3 * ((h % 1000) / 500.0 - 1.0)
    return float(law.loss(config.sparsity, N, D)) * wobble, N, D


def fake_train(config, out_dir, *, progress=False):
    from bigsparse_lib import train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "starts.log", "a") as f:
        f.write(f"{os.getpid()}\n")
    die = os.environ.get("FAKE_DIE_ONCE")
    if die:
        marker = Path(die) / f"{out.parent.name}.died"
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("x")
            os._exit(3)
    ckpt = out / "ckpt.json"
    done = json.loads(ckpt.read_text())["done"] if ckpt.exists() else 0
    for i in range(done, CHUNKS):
        time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
        tmp = out / "ckpt.tmp"
        tmp.write_text(json.dumps({"done": i + 1}))
        os.replace(tmp, ckpt)
    if os.environ.get("FAKE_DIVERGE_S") and float(os.environ["FAKE_DIVERGE_S"]) == config.sparsity:
        raise train.Diverged("training loss became nan at step 3")
    loss, N, D = fake_loss(config)
    result = {"status": "ok", "eval_loss": loss, "nnz": N, "dense_params": int(N / (1 - config.sparsity)),
              "data": D, "steps": config.steps, "flops_dense": 6.0 * N * D, "flops_sparse": 6.0 * N * D,
              "config": config.to_dict(), "recipe_version": train.recipe_version(config.family), "resumed_from": done}
    if os.environ.get("FAKE_LEDGER"):
        with open(os.environ["FAKE_LEDGER"], "a") as f:
            f.write(out.parent.name + "\n")
    (out / "result.json").write_text(json.dumps(result))
    return result


@pytest.fixture(autouse=True)
def _importable_fake(monkeypatch):
    """Workers in other processes (spawned pool, dask, submitit) import `test_sweep` from tests/."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    if str(HERE) not in sys.path:
        monkeypatch.syspath_prepend(str(HERE))


def small_grid(n: int = 3) -> sweep.Grid:
    """The first n runs of the T5 smoke grid: executors that start processes cost seconds per run."""
    g = sweep.make_grid("t5", "smoke", "main")
    return sweep.Grid(g.family, g.preset, g.name, g.runs[:n])


def losses(results) -> dict[str, float]:
    df = sweep.export(results, warn=lambda m: None)
    return dict(zip(df["run_id"], df["loss"]))


# ------------------------------------------------------------------------------------------------
# Grids
# ------------------------------------------------------------------------------------------------
def test_full_main_grids_have_table1_counts_and_values():
    vit = sweep.make_grid("vit", "full", "main")
    t5 = sweep.make_grid("t5", "full", "main")
    assert len(vit) == 112 and len(t5) == 48  # Table 1, "Total #runs"
    assert sorted({c.steps for c in vit}) == [55_000, 110_000, 220_000, 440_000]
    assert sorted({c.steps for c in t5}) == [250_000, 500_000, 1_000_000]
    # Table 1's sizes, as nominal N (0.66M ... 42.4M in 2x steps; 1.3M ... 85M in 4x steps)
    vit_n = sorted(grids.VIT_FULL.sizes)
    assert vit_n[0] == pytest.approx(0.66e6, rel=0.01) and vit_n[-1] == pytest.approx(42.4e6, rel=0.01)
    assert np.allclose(np.diff(np.log2(vit_n)), 1.0)
    t5_n = sorted(grids.T5_FULL.sizes)
    assert t5_n[0] == pytest.approx(1.3e6, rel=0.03) and t5_n[-1] == pytest.approx(85e6, rel=0.01)
    assert np.allclose(np.diff(np.log(t5_n)) / np.log(4), 1.0)
    assert {c.sparsity for c in t5} == {0.0, 0.5, 0.75, 0.875}
    for c in list(vit) + list(t5):
        c.validate()
    # T5's exact backbone count is 7/6 of the released normaliser (decoder cross-attention)
    assert {c.nnz for c in t5 if c.sparsity == 0} == {round(n * 7 / 6) for n in t5_n}
    assert {c.nnz for c in vit if c.sparsity == 0} == set(vit_n)


@pytest.mark.parametrize("family", ["vit", "t5"])
def test_full_main_grid_matches_the_released_runs(family, released):
    """Every released run is a grid point and vice versa: same (scale, S) pairs and lengths."""
    df = released(family)
    base = grids.BASE_NNZ[family]
    if family == "vit":
        # 225M, 450M, 900M, 1.8B images for 55K ... 440K steps (~4091 images a step)
        got_steps = [int(round(x * 55_000 / 225e6)) for x in df["data"]]
    else:
        got_steps = df["steps"].astype(int).tolist()
    released_points = sorted(zip(np.round(df["scale"], 8), df["sparsity"].round(6), got_steps))
    grid = sweep.make_grid(family, "full", "main")
    spec = grids.MAIN[family, "full"]
    nominal = {grids.to_exact(family, N): N for N in spec.sizes}
    ours = sorted((round(nominal[c.nnz] / (1 - c.sparsity) / base, 8), round(c.sparsity, 6), c.steps)
                  for c in grid)
    assert ours == released_points


def test_nm_grid_is_the_fewest_steps_or_smallest_model():
    grid = sweep.make_grid("t5", "full", "nm")
    spec = grids.T5_FULL
    assert len(grid) == 4 * (len(spec.sizes) + len(spec.steps) - 1) == 24
    assert {c.pattern for c in grid} == {"2:4", "1:4", "4:8", "2:8"}
    S = {"2:4": 0.5, "1:4": 0.75, "4:8": 0.5, "2:8": 0.75}
    for p in S:
        runs = [c for c in grid if c.pattern == p]
        smallest = min(c.nnz for c in runs)
        # N moves to a width whose kernels split into groups of m: at most ~13% here
        assert abs(math.log(smallest / grids.to_exact("t5", spec.sizes[0]))) < math.log(1.15)
        for c in runs:
            assert c.sparsity == S[p]
            assert c.steps == min(spec.steps) or c.nnz == smallest
            c.validate()
        # every length appears at the smallest size, every size at the fewest steps
        assert {c.steps for c in runs if c.nnz == smallest} == set(spec.steps)
        assert len({c.nnz for c in runs if c.steps == min(spec.steps)}) == 4


@pytest.mark.parametrize("family", ["t5", "vit"])
@pytest.mark.parametrize("preset,near", [("smoke", 1.5), ("toy", 1.2)])
def test_nm_grid_widths_split_into_groups_of_m(family, preset, near):
    from bigsparse_lib import models, train

    import jax

    fam = models.get_family(family)
    sizes = grids.MAIN[family, preset].sizes
    for c in sweep.make_grid(family, preset, "nm"):
        m = int(c.pattern.split(":")[1])
        mcfg = train.model_config(c)  # the model the engine trains for this run
        shapes = jax.eval_shape(lambda k: fam.init(mcfg, k), jax.random.key(0))
        flags = jax.tree.leaves(fam.sparsifiable(shapes))
        assert all(x.shape[0] % m == 0 for x, f in zip(jax.tree.leaves(shapes), flags) if f)
        assert round(fam.dense_count(mcfg) * (1 - c.sparsity)) == c.nnz  # N is that model's exact count
        # and N stays near one of the main grid's sizes (T5's n:8 models once drifted to 2.3x the largest)
        nearest = min(sizes, key=lambda n: abs(math.log(c.nnz / n)))
        assert abs(math.log(c.nnz / nearest)) < math.log(near)


@pytest.mark.parametrize("family", ["vit", "t5"])
def test_toy_main_grid_meets_issue_11_shape(family):
    """>= 4 sizes and >= 3 lengths in 2x steps, S in {0, .5, .75, .875}; every size at S = 0 and
    0.5 (the sparsity comparison), every S at >= 2 sizes (a slope in N); no dense width above 2x
    the largest size; a second seed at some sizes (every S and length there), and the sweep's
    seed offsets the extra seeds."""
    spec = grids.MAIN[family, "toy"]
    assert len(spec.sizes) >= 4 and len(spec.steps) >= 3
    assert all(b == 2 * a for a, b in zip(spec.sizes, spec.sizes[1:]))
    assert all(b == 2 * a for a, b in zip(spec.steps, spec.steps[1:]))
    assert set(spec.sparsities) == {0.0, 0.5, 0.75, 0.875}
    runs = sweep.make_grid(family, "toy", "main", seed=5)
    base = [c for c in runs if c.seed == 5]
    extra = [c for c in runs if c.seed != 5]
    points = {(c.nnz, c.sparsity) for c in base}
    # the width cap, counted by hand: N0..8N0 at S=0 and .5, N0..4N0 at .75, N0..2N0 at .875
    N = spec.sizes
    assert points == {(n, S) for S, ns in ((0.0, N), (0.5, N), (0.75, N[:3]), (0.875, N[:2])) for n in ns}
    assert {(c.nnz, c.sparsity, c.steps) for c in base} == {(n, S, t) for n, S in points for t in spec.steps}
    assert max(n / (1 - S) for n, S in points) == 2 * max(N)
    assert {c.seed for c in extra} == {5 + k for k in spec.extra_seeds}
    assert {(c.nnz, c.sparsity, c.steps) for c in extra} == {
        (c.nnz, c.sparsity, c.steps) for c in base if c.nnz in {spec.sizes[k] for k in spec.seed_sizes}}
    # the two smallest sizes keep all four sparsities, so the seeds cover every S
    assert {c.sparsity for c in extra} == {0.0, 0.5, 0.75, 0.875} and len(extra) == 2 * 4 * len(spec.steps)


def test_widest_caps_the_dense_width_and_main_grid_of_ones_own_drops_it():
    spec = grids.MainSpec(sizes=(10, 20, 40), steps=(1,), sparsities=(0.0, 0.5, 0.75), widest=1.0)
    assert spec.points() == [(10, 0.0), (20, 0.0), (40, 0.0), (10, 0.5), (20, 0.5), (10, 0.75)]
    assert len(grids.MainSpec(sizes=(10, 20, 40), steps=(1,), sparsities=(0.0, 0.5, 0.75)).points()) == 9
    own = sweep.main_grid("t5", "toy", sizes=(14_000, 28_000), sparsities=(0.0, 0.875))
    assert {(c.nnz, c.sparsity) for c in own.runs} == {(n, S) for n in (14_000, 28_000) for S in (0.0, 0.875)}
    steps_only = sweep.main_grid("t5", "toy", steps=(100, 200, 400))
    assert {(c.nnz, c.sparsity) for c in steps_only.runs} == set(grids.MAIN["t5", "toy"].points())


def test_pretrained_grid_structure():
    grid = sweep.make_grid("vit", "full", "pretrained")
    spec = grids.PRETRAINED["vit", "full"]
    from bigsparse_lib.train import recipe_version

    ids = {store_mod.run_id(c.to_dict(), recipe_version(c.family)): c for c in grid}
    dense = [c for c in grid if c.init is None and c.sparsity == 0]
    pruned = [c for c in grid if c.init is not None]
    scratch = [c for c in grid if c.init is None and c.sparsity > 0]
    assert len(dense) == 3 and len(pruned) == 9 and len(scratch) == 9 * len(spec.scratch_multiples)
    # S/16, M/16, B/16: widths 384, 512, 768 of ViT-B's shape
    assert sorted(c.nnz for c in dense) == [round(84934656 * (w / 768) ** 2) for w in (384, 512, 768)]
    assert all(c.steps == 16_000_000_000 // 4096 for c in dense)  # 4 epochs of JFT-4B, batch 4096
    for c in pruned:
        parent = ids[c.init[1:]]
        assert parent.sparsity == 0 and parent in dense
        assert c.steps == round(0.056 * parent.steps)  # 5.6% of the pretraining budget
        assert c.nnz == round(parent.nnz * (1 - c.sparsity))
    assert {c.sparsity for c in pruned} == {0.5, 0.75, 0.875}
    prune_steps = pruned[0].steps
    assert sorted({c.steps / prune_steps for c in scratch}) == pytest.approx(spec.scratch_multiples, rel=1e-3)


@pytest.mark.parametrize("family", ["vit", "t5"])
@pytest.mark.parametrize("preset", ["smoke", "toy"])
def test_small_grids_build_valid_models(family, preset):
    from bigsparse_lib import models

    for name in ("main", "pretrained"):
        grid = sweep.make_grid(family, preset, name)
        for c in grid:
            models.config_for_nnz(family, preset, c.nnz, c.sparsity)  # raises if too small
        assert len({(c.nnz, c.sparsity, c.steps, c.init, c.seed) for c in grid}) == len(grid)
    main = sweep.make_grid(family, preset, "main")
    assert {c.sparsity for c in main} >= {0.0, 0.5}
    assert len({c.steps for c in main}) >= 2 and len({c.nnz for c in main if c.sparsity == 0}) >= 2


@pytest.mark.parametrize("args", [("vit", "huge", "main"), ("bert", "toy", "main"), ("t5", "toy", "moon")])
def test_unknown_grid_names_are_input_errors(args):
    with pytest.raises(InputError):
        sweep.make_grid(*args)


# ------------------------------------------------------------------------------------------------
# The store
# ------------------------------------------------------------------------------------------------
def test_run_id_keys_on_config_and_recipe():
    a = {"family": "t5", "nnz": 10, "sparsity": 0.5}
    assert store_mod.run_id(a, "1") == store_mod.run_id(dict(reversed(list(a.items()))), "1")
    assert store_mod.run_id(a, "1") != store_mod.run_id(a, "2")
    assert store_mod.run_id(a, "1") != store_mod.run_id({**a, "seed": 1}, "1")


def test_write_json_is_atomic_on_failure(tmp_path):
    path = tmp_path / "x.json"
    store_mod.write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        store_mod.write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind


def test_incompatible_results_directory_is_refused(tmp_path):
    grid = sweep.make_grid("t5", "smoke", "main")
    sweep.open_store(grid, tmp_path / "r")
    for other in (sweep.make_grid("vit", "smoke", "main"), sweep.make_grid("t5", "smoke", "nm")):
        with pytest.raises(InputError, match="holds a sweep with"):
            sweep.open_store(other, tmp_path / "r")
    manifest = json.loads((tmp_path / "r" / "sweep.json").read_text())
    store_mod.write_json(tmp_path / "r" / "sweep.json", {**manifest, "recipe_version": "0-old"})
    with pytest.raises(InputError, match="recipe_version"):
        sweep.open_store(grid, tmp_path / "r")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        sweep.open_store(grid, tmp_path / "junk")


# ------------------------------------------------------------------------------------------------
# Sweeps with the fake engine
# ------------------------------------------------------------------------------------------------
def test_sweep_records_every_run_once_and_resume_skips(tmp_path, monkeypatch):
    ledger = tmp_path / "ledger"
    monkeypatch.setenv("FAKE_LEDGER", str(ledger))
    grid = sweep.make_grid("t5", "smoke", "main")
    s1 = sweep.run_sweep(grid, tmp_path / "r", trainer=FAKE, progress=False)
    assert (s1.total, s1.skipped, s1.done, s1.failed) == (len(grid), 0, len(grid), [])
    s2 = sweep.run_sweep(grid, tmp_path / "r", trainer=FAKE, progress=False)
    assert (s2.skipped, s2.done) == (len(grid), 0)
    lines = ledger.read_text().split()
    assert len(lines) == len(set(lines)) == len(grid)
    # the records hold what the engine returned for exactly that config
    df = sweep.export(tmp_path / "r")
    assert len(df) == len(grid)
    from bigsparse_lib.train import TrainConfig

    for _, row in df.iterrows():
        cfg = TrainConfig.from_dict(Store(tmp_path / "r").config(row["run_id"]))
        assert row["loss"] == pytest.approx(fake_loss(cfg)[0], rel=1e-12)
        assert (row["sparsity"], row["nnz"], row["steps"]) == (cfg.sparsity, cfg.nnz, cfg.steps)


def test_unfinished_run_resumes_from_its_checkpoint(tmp_path):
    grid = sweep.make_grid("vit", "smoke", "main")
    store, ids = sweep.open_store(grid, tmp_path / "r")
    # a run killed after 3 of 5 chunks: its folder has a checkpoint, no record
    tdir = store.train_dir(ids[2])
    tdir.mkdir(parents=True)
    (tdir / "ckpt.json").write_text(json.dumps({"done": 3}))
    sweep.run_sweep(grid, tmp_path / "r", trainer=FAKE, progress=False)
    rec = store.record(ids[2])
    assert rec["status"] == "ok" and rec["result"]["resumed_from"] == 3
    assert all(store.record(i)["result"]["resumed_from"] == 0 for i in ids if i != ids[2])


def test_diverged_run_is_failed_in_status_and_left_out_of_export(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_DIVERGE_S", "0.5")
    grid = sweep.make_grid("t5", "smoke", "main")
    summary = sweep.run_sweep(grid, tmp_path / "r", trainer=FAKE, progress=False)
    n_bad = sum(c.sparsity == 0.5 for c in grid)
    assert n_bad > 0 and len(summary.failed) == n_bad and summary.done == len(grid) - n_bad
    st = sweep.status(tmp_path / "r")
    assert (st["done"], st["failed"], st["left"], st["running"]) == (len(grid) - n_bad, n_bad, 0, 0)
    assert all("nan" in r["reason"] for r in st["runs"] if r["state"] == "failed")
    warnings = []
    df = sweep.export(tmp_path / "r", warn=warnings.append)
    assert len(df) == len(grid) - n_bad and (df["sparsity"] != 0.5).all()
    assert len(warnings) == n_bad and all("diverged" in w for w in warnings)
    # a diverged run is final: resuming does not train it again ...
    monkeypatch.delenv("FAKE_DIVERGE_S")
    again = sweep.run_sweep(grid, tmp_path / "r", trainer=FAKE, progress=False)
    assert again.done == 0 and len(again.failed) == n_bad
    # ... unless asked to
    retried = sweep.run_sweep(grid, tmp_path / "r", trainer=FAKE, progress=False, retry_failed=True)
    assert retried.done == n_bad and retried.failed == []


def test_an_exception_is_recorded_as_error_and_retried_next_time(tmp_path):
    grid = sweep.make_grid("t5", "smoke", "main")
    s = sweep.run_sweep(grid, tmp_path / "r", trainer="test_sweep:no_such_function", progress=False)
    assert len(s.failed) == len(grid) and not s.complete
    assert sweep.status(tmp_path / "r")["failed"] == len(grid)
    s = sweep.run_sweep(grid, tmp_path / "r", trainer=FAKE, progress=False)
    assert s.done == len(grid) and s.complete


def test_pretrained_grid_runs_parents_first_and_passes_their_folder(tmp_path):
    grid = sweep.make_grid("vit", "smoke", "pretrained")
    seen = []

    def spy(config, out_dir, *, progress=False):
        seen.append(config)
        return fake_train(config, out_dir, progress=progress)

    summary = sweep.run_sweep(grid, tmp_path / "r", trainer=spy, progress=False)
    assert summary.complete and summary.failed == []
    pruned = [c for c in seen if c.init is not None]
    assert pruned and all(Path(c.init).name == "train" and (Path(c.init) / "result.json").is_file() for c in pruned)
    from bigsparse_lib.train import recipe_version

    order = {store_mod.run_id(c.to_dict(), recipe_version(c.family)): i for i, c in enumerate(seen) if c.init is None}
    for c in pruned:
        parent = Path(c.init).parent.name
        assert order[parent] < seen.index(c)  # the dense parent trained first
        assert Store(tmp_path / "r").config(parent)["sparsity"] == 0.0


@pytest.mark.parametrize("executor,options", [
    ("process", {"workers": 2}),
    ("dask", {"workers": 2, "processes": False}),
    ("slurm", {"cluster": "local", "workers": 2}),
])
def test_executors_give_the_same_records_as_in_process(tmp_path, executor, options):
    grid = small_grid(3)
    sweep.run_sweep(grid, tmp_path / "local", trainer=FAKE, progress=False)
    workers = options.pop("workers")
    s = sweep.run_sweep(grid, tmp_path / executor, executor=executor, workers=workers, trainer=FAKE,
                        progress=False, **options)
    assert s.complete and s.failed == []
    assert losses(tmp_path / executor) == losses(tmp_path / "local")


def test_a_dead_worker_loses_only_its_run(tmp_path, monkeypatch):
    """Each run's first attempt kills its worker process; it is started again, and every run ends recorded once."""
    monkeypatch.setenv("FAKE_DIE_ONCE", str(tmp_path / "deaths"))
    ledger = tmp_path / "ledger"
    monkeypatch.setenv("FAKE_LEDGER", str(ledger))
    grid = small_grid(2)
    s = sweep.run_sweep(grid, tmp_path / "r", executor="process", workers=2, trainer=FAKE, progress=False)
    assert s.complete and s.failed == []
    lines = ledger.read_text().split()
    assert len(lines) == len(set(lines)) == len(grid)
    assert len(list((tmp_path / "deaths").iterdir())) == len(grid)  # each did die once


def test_a_worker_that_always_dies_is_recorded_failed(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep.executors, "MAX_WORKER_DEATHS", 1)
    monkeypatch.setenv("FAKE_DIE_ONCE", str(tmp_path / "deaths"))
    s = sweep.run_sweep(small_grid(1), tmp_path / "r", executor="process", workers=1, trainer=FAKE, progress=False)
    assert len(s.failed) == 1
    assert "died 1 times" in sweep.status(tmp_path / "r")["runs"][0]["reason"]


def test_missing_executor_package_is_an_input_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import now raises ImportError
    monkeypatch.setitem(sys.modules, "submitit", None)
    grid = sweep.make_grid("t5", "smoke", "main")
    with pytest.raises(InputError, match="dask"):
        sweep.run_sweep(grid, tmp_path / "r", executor="dask", trainer=FAKE, progress=False)
    with pytest.raises(InputError, match="submitit"):
        sweep.run_sweep(grid, tmp_path / "r", executor="slurm", trainer=FAKE, progress=False)
    assert not (tmp_path / "r").exists()  # refused before touching the directory


def test_slurm_without_sbatch_is_an_input_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InputError, match="sbatch"):
        sweep.executors.make_executor("slurm")


def test_a_live_sweep_locks_its_directory(tmp_path):
    grid = sweep.make_grid("t5", "smoke", "main")
    store, _ = sweep.open_store(grid, tmp_path / "r")
    with store_mod.SweepLock(store.root):
        with pytest.raises(InputError, match="in use"):
            sweep.run_sweep(grid, tmp_path / "r", trainer=FAKE, progress=False)
    # a lock left by a dead process is taken over
    store_mod.write_json(store.root / "sweep.lock", {"host": os.uname().nodename, "pid": 2**22 + 12345})
    assert sweep.run_sweep(grid, tmp_path / "r", trainer=FAKE, progress=False).complete


def test_a_finished_sweep_is_read_while_another_holds_the_lock(tmp_path):
    """Chapters that only read a finished sweep execute side by side (book.schedule): with nothing
    left to train, run_sweep does not take the lock; with a run left, it still refuses."""
    grid = sweep.make_grid("t5", "smoke", "main")
    assert sweep.run_sweep(grid, tmp_path / "r", trainer=FAKE, progress=False).complete
    store = Store(tmp_path / "r")
    with store_mod.SweepLock(store.root):
        s = sweep.run_sweep(grid, tmp_path / "r", trainer=FAKE, progress=False)
        assert s.complete and s.skipped == s.total == len(grid.runs)
        (store.run_dir(store.run_ids()[0]) / "record.json").unlink()  # one run left to train
        with pytest.raises(InputError, match="in use"):
            sweep.run_sweep(grid, tmp_path / "r", trainer=FAKE, progress=False)


# ------------------------------------------------------------------------------------------------
# The real engine
# ------------------------------------------------------------------------------------------------
def test_real_engine_run_is_recorded_and_exported(tmp_path):
    """One smoke run through the real `train.train`: the record holds its result, the export its N, D, loss."""
    g = sweep.make_grid("vit", "smoke", "main")
    grid = sweep.Grid(g.family, g.preset, g.name, tuple(c for c in g.runs if c.sparsity == 0.5)[:1])
    s = sweep.run_sweep(grid, tmp_path / "r", progress=False)
    assert s.complete and s.failed == []
    store = Store(tmp_path / "r")
    (rid,) = store.run_ids()
    engine_result = json.loads((store.train_dir(rid) / "result.json").read_text())
    df = sweep.export(tmp_path / "r")
    row = df.iloc[0]
    assert (row["loss"], row["nnz"], row["data"]) == (engine_result["eval_loss"], engine_result["nnz"],
                                                      engine_result["data"])
    cfg = grid.runs[0]
    assert row["data"] == cfg.steps * 8  # smoke ViT: batch 8 images a step
    assert abs(row["nnz"] / cfg.nnz - 1) < 0.2 and math.isfinite(row["loss"])
    # resuming finds it recorded and does not train again
    assert sweep.run_sweep(grid, tmp_path / "r", progress=False).skipped == 1


@pytest.mark.slow
def test_real_engine_nm_and_pretrained_smoke_grids(tmp_path):
    """The §4.1 and §4.2 smoke grids run end to end on the real engine (n:m widths, init from a parent)."""
    for name in ("nm", "pretrained"):
        grid = sweep.make_grid("t5", "smoke", name)
        s = sweep.run_sweep(grid, tmp_path / name, progress=False)
        assert s.complete and s.failed == [], sweep.status(tmp_path / name)
        df = sweep.export(tmp_path / name)
        assert len(df) == len(grid)
        if name == "nm":
            assert set(df["pattern"]) == {"2:4", "1:4", "4:8", "2:8"}
            # n of every m kept in every group of the model the grid sized: N is exactly the planned count
            assert (df["nnz"] == df["nnz_target"]).all(), df[["pattern", "nnz", "nnz_target"]]


# ------------------------------------------------------------------------------------------------
# Grouping: runs that share shapes and length train as one vmapped program
# ------------------------------------------------------------------------------------------------
def _cfg(**kw):
    from bigsparse_lib import train

    return train.TrainConfig(**{"family": "vit", "preset": "smoke", "steps": 16, **kw})


def test_group_plan_joins_runs_of_one_width_whatever_their_length_seed_or_step(tmp_path):
    from bigsparse_lib.sweep import group

    runs = [_cfg(nnz=6000, method="none"), _cfg(nnz=3000, sparsity=0.5), _cfg(nnz=1500, sparsity=0.75, seed=2),
            _cfg(nnz=3000, method="none"),  # another width
            _cfg(nnz=3000, sparsity=0.5, steps=8),  # another length: the same program
            _cfg(nnz=3000, sparsity=0.5, pattern="2:4"),  # another pattern
            _cfg(nnz=3000, sparsity=0.5, method="acdc"),  # AC/DC: GMP's program on its own timetable (Table 6)
            # another pruning window (Table 5): data of the program, so the same group ...
            _cfg(nnz=1500, sparsity=0.75, schedule=GradualSchedule(start=0.475, end=0.625, every=2)),
            # ... but another ramp shape is another program
            _cfg(nnz=1500, sparsity=0.75, schedule=GradualSchedule(power=2.0, every=2)),
            _cfg(nnz=1500, sparsity=0.75, pattern="1:4"),  # n is data: with the 2:4 run of its width (§4.1)
            _cfg(nnz=3000, sparsity=0.5, pattern="4:8"),  # m shapes the program: another group
            _cfg(nnz=3000, sparsity=0.5, method="oneshot")]  # one-shot runs train alone
    dirs = [tmp_path / str(i) for i in range(len(runs))]
    assert group.plan(runs, dirs) == [[0, 1, 2, 4, 6, 7], [3], [5, 9], [8], [10], [11]]
    # a run already checkpointed at another step joins too: its lane resumes it from there
    (dirs[1] / "checkpoints" / "8").mkdir(parents=True)
    assert group.plan(runs[:3], dirs[:3]) == [[0, 1, 2]]
    assert group.steps_left(runs[1], dirs[1]) == 8 and group.steps_left(runs[0], dirs[0]) == 16


@pytest.mark.parametrize("work, loads", [
    ([4, 4, 2, 2, 1, 1, 1, 1], [4, 4, 4, 4]),  # lengths L, 2L, 4L of two runs each pack into equal lanes
    ([7, 3, 3, 1], [7, 7]),
    ([5], [5]),
    ([2, 2, 2], [2, 2, 2]),
    ([4, 3, 3, 2], [3, 4, 5]),  # 3 lanes (12 / 4): the best packing has a lane of 5
])
def test_lanes_pack_runs_into_lanes_of_equal_work(work, loads):
    from bigsparse_lib.sweep import group

    got = group.lanes(work)
    assert sorted(i for lane in got for i in lane) == list(range(len(work)))
    assert sorted(sum(work[i] for i in lane) for lane in got) == loads  # no lane idles, none runs long
    assert len(group.lanes(list(range(1, 40)), max_lanes=4)) == 4


@pytest.mark.slow
@pytest.mark.parametrize("family, kind", [("vit", "gmp"), ("t5", "gmp"), ("t5", "acdc"), ("vit", "nm")])
def test_grouped_runs_equal_single_runs(family, kind, tmp_path):
    """A dense, a 50% and a 75% run on one width, with different seeds, lengths and pruning
    windows, two of them sharing a lane: the group gives each run what training it alone gives (losses to 1e-5;
    non-zeros, FLOPs and layer sparsities exactly), and writes the single-run files. "acdc": the
    50% run is AC/DC (Table 6's GMP and AC/DC runs share one program); "nm": the sparse runs are
    2:4 and 1:4 (n is the program's data, §4.1)."""
    from bigsparse_lib import train

    extra = {"acdc": [{"method": "acdc", "acdc_phase": 2}, {}], "nm": [{"pattern": "2:4"}, {"pattern": "1:4"}]}
    e50, e75 = extra.get(kind, [{}, {}])
    runs = [_cfg(family=family, nnz=6000, method="none"), _cfg(family=family, nnz=3000, sparsity=0.5, steps=8, **e50),
            _cfg(family=family, nnz=1500, sparsity=0.75, seed=3, steps=8,  # its own pruning window (Table 5)
                 schedule=GradualSchedule(start=0.125, end=0.625, every=1), **e75)]
    if kind == "nm":  # every run on the width whose kernels split into groups of 4
        runs[0] = _cfg(family=family, nnz=6000, method="none", pattern="2:4")
    assert len({train.group_signature(c) for c in runs}) == 1
    dirs = [tmp_path / "g" / str(i) for i in range(3)]
    grouped = train.train_runs(runs, dirs, lanes=[[0], [1, 2]], progress=False)
    for i, (cfg, g) in enumerate(zip(runs, grouped)):
        alone = train.train(cfg, tmp_path / "s" / str(i), progress=False)
        assert g["status"] == "ok" and g["eval_loss"] == pytest.approx(alone["eval_loss"], rel=1e-5)
        for k in ("nnz", "dense_params", "data", "steps", "flops_dense", "flops_sparse", "layer_sparsity"):
            assert g[k] == alone[k], k
        assert [r["step"] for r in train.read_log(dirs[i])] == [r["step"] for r in train.read_log(tmp_path / "s" / str(i))]
        # the run's own folder resumes as a finished single run
        assert train.train(cfg, dirs[i], progress=False) == g


@pytest.mark.slow
def test_scanned_blocks_and_device_batches_equal_one_step_per_dispatch(tmp_path):
    """K steps in one lax.scan with batches made on the device = K dispatches of one step each,
    with batches made on the host (the engine without scan or device streams)."""
    from bigsparse_lib import train

    cfg = _cfg(nnz=3000, sparsity=0.5)
    scanned = train.train_runs([cfg], [tmp_path / "scan"], progress=False)[0]
    stepwise = train.train_runs([cfg], [tmp_path / "step"], progress=False, block=1, device_data=False)[0]
    assert scanned["eval_loss"] == pytest.approx(stepwise["eval_loss"], rel=1e-6)
    assert scanned["nnz"] == stepwise["nnz"]
    losses = lambda d: [r["loss"] for r in train.read_log(d) if "loss" in r]  # noqa: E731
    np.testing.assert_allclose(losses(tmp_path / "scan"), losses(tmp_path / "step"), rtol=1e-6)


@pytest.mark.slow
def test_a_group_killed_inside_a_block_resumes_grouped_or_alone(tmp_path, monkeypatch):
    """A group killed after a checkpoint, half-way through the next scanned block, resumes from
    that checkpoint, as a group or run by run, to the numbers of a group never stopped."""
    from bigsparse_lib import train
    from bigsparse_lib.sweep import group

    runs = [_cfg(nnz=3000, sparsity=0.5, checkpoint_every=8), _cfg(nnz=1500, sparsity=0.75, checkpoint_every=8)]
    whole = group.train_group(runs, [tmp_path / "whole" / str(i) for i in range(2)])
    real = train._append_log

    def dies_at_10(out_dir, record):  # block 8..16 ran, its results are being logged: kill
        if record.get("step") == 10:
            raise KeyboardInterrupt("killed")
        return real(out_dir, record)

    for name in ("grouped", "alone"):
        dirs = [tmp_path / name / str(i) for i in range(2)]
        monkeypatch.setattr(train, "_append_log", dies_at_10)
        with pytest.raises(KeyboardInterrupt):
            group.train_group(runs, dirs)
        monkeypatch.setattr(train, "_append_log", real)
        assert not (dirs[0] / "result.json").exists() and group.steps_left(runs[0], dirs[0]) == 8
        if name == "grouped":
            resumed = group.train_group(runs, dirs)
            assert [r["eval_loss"] for r in resumed] == [r["eval_loss"] for r in whole]
        else:  # the group's checkpoints are single-run checkpoints
            resumed = [train.train(c, d, progress=False) for c, d in zip(runs, dirs)]
            assert [r["eval_loss"] for r in resumed] == pytest.approx([r["eval_loss"] for r in whole], rel=1e-5)
        assert [r["nnz"] for r in resumed] == [r["nnz"] for r in whole]
        assert [r["step"] for r in train.read_log(dirs[0])] == [r["step"] for r in train.read_log(tmp_path / "whole" / "0")]


def test_seeds_live_side_by_side_in_one_results_directory(tmp_path):
    """`sweep --seed 1` on a finished directory adds its runs beside the seed-0 ones; status and
    export show both."""
    g0, g1 = sweep.make_grid("t5", "smoke", "main", seed=0), sweep.make_grid("t5", "smoke", "main", seed=1)
    store, ids0 = sweep.open_store(g0, tmp_path)
    _, ids1 = sweep.open_store(g1, tmp_path)
    assert not set(ids0) & set(ids1)
    assert Store(tmp_path).run_ids() == ids0 + ids1
    assert len(sweep.status(tmp_path)["runs"]) == len(g0) + len(g1)


@pytest.mark.slow
def test_sweep_groups_below_full_scale_and_records_each_run(tmp_path):
    g = sweep.make_grid("vit", "smoke", "main")
    s = sweep.run_sweep(g, tmp_path / "r", progress=False)  # smoke: grouped by default
    assert s.complete and s.failed == []
    store = Store(tmp_path / "r")
    sizes = [store.record(rid).get("group", 1) for rid in store.run_ids()]
    assert max(sizes) > 1 and len(sweep.export(tmp_path / "r")) == len(g)
    with pytest.raises(InputError, match="in-process"):
        sweep.run_sweep(g, tmp_path / "p", executor="process", group=True, progress=False)


def test_main_grid_takes_its_own_sizes_lengths_and_sparsities():
    """main_grid(sizes=, steps=, sparsities=): every (N, S) pair at every length, the extra
    seed at the same size positions as the preset's; bad lists are refused by name."""
    from bigsparse_lib.errors import InputError

    spec = grids.MAIN["vit", "toy"]
    g = sweep.main_grid("vit", "toy", sizes=(5_000, 10_000, 20_000), steps=(50, 100),
                        sparsities=(0.0, 0.5, 0.9375))
    seed0 = [c for c in g.runs if c.seed == 0]
    assert {(c.nnz, c.sparsity, c.steps) for c in seed0} == {
        (N, S, t) for N in (5_000, 10_000, 20_000) for S in (0.0, 0.5, 0.9375) for t in (50, 100)}
    extra = {c.nnz for c in g.runs if c.seed != 0}
    assert extra == {(5_000, 10_000, 20_000)[k] for k in spec.seed_sizes}
    assert all(c.method == ("none" if c.sparsity == 0 else "gmp") for c in g.runs)
    assert len(sweep.main_grid("vit", "toy").runs) == len(sweep.make_grid("vit", "toy", "main").runs)
    for bad in (dict(sizes=(10_000, 5_000)), dict(steps=()), dict(sparsities=(0.5, 1.0))):
        with pytest.raises(InputError, match=next(iter(bad))):
            sweep.main_grid("vit", "toy", **bad)


@pytest.mark.slow
def test_groups_trained_side_by_side_record_what_one_at_a_time_records(tmp_path, monkeypatch):
    """workers=2 trains two groups at once in threads: the same records as one group after another.
    A signal to the sweep (here: a stop request raised inside one group's training) checkpoints the
    groups in flight, starts no other, raises Interrupted; the same sweep then resumes to the same numbers."""
    from bigsparse_lib import train

    grid = sweep.make_grid("t5", "smoke", "main")
    one = sweep.run_sweep(grid, tmp_path / "one", workers=1, progress=False)
    assert one.complete and not one.failed
    ref = sweep.export(tmp_path / "one").set_index("run_id").sort_index()
    assert len({train.group_signature(c) for c in grid}) >= 3  # several groups to run side by side

    two = sweep.run_sweep(grid, tmp_path / "two", workers=2, progress=False)
    assert two.complete and not two.failed
    got = sweep.export(tmp_path / "two").set_index("run_id").sort_index()
    assert list(got.index) == list(ref.index)
    np.testing.assert_array_equal(got["loss"].to_numpy(), ref["loss"].to_numpy())
    sizes = [Store(tmp_path / "two").record(rid).get("group", 1) for rid in got.index]
    assert max(sizes) > 1

    real = train._append_log

    def signalled_at_step_8(out_dir, record):  # as the main thread's handler does on SIGTERM
        if record.get("step") == 8 and not train.STOP_REQUESTS:
            train.STOP_REQUESTS.append("SIGTERM")
        return real(out_dir, record)

    monkeypatch.setattr(train, "_append_log", signalled_at_step_8)
    with pytest.raises(train.Interrupted, match="SIGTERM"):
        sweep.run_sweep(grid, tmp_path / "three", workers=2, progress=False)
    monkeypatch.setattr(train, "_append_log", real)
    assert train.STOP_REQUESTS == []  # cleared for the next sweep of this process
    status = sweep.status(tmp_path / "three")
    assert status["done"] < len(grid)
    resumed = sweep.run_sweep(grid, tmp_path / "three", workers=2, progress=False)
    assert resumed.complete and not resumed.failed
    again = sweep.export(tmp_path / "three").set_index("run_id").sort_index()
    np.testing.assert_allclose(again["loss"].to_numpy(), ref["loss"].to_numpy(), rtol=1e-5)


def _grid(family: str, n: int) -> sweep.Grid:
    g = sweep.make_grid(family, "smoke", "main")
    return sweep.Grid(g.family, g.preset, g.name, g.runs[:n])


def test_run_sweeps_side_by_side_records_what_one_after_another_records(tmp_path, monkeypatch):
    """Two families' sweeps in two processes at once: the same records as `run_sweep` on each,
    trained outside this process, in two different processes; a second call starts no process."""
    jobs = [(_grid("t5", 2), tmp_path / "t5"), (_grid("vit", 2), tmp_path / "vit")]
    for grid, results in jobs:
        sweep.run_sweep(grid, tmp_path / "alone" / results.name, trainer=FAKE, progress=False)
    out = sweep.run_sweeps(jobs, parallel=2, trainer=FAKE, progress=False)
    assert [s.complete and s.done == len(g) for (s, _), (g, _) in zip(out, jobs)] == [True, True]
    assert all(w > 0 for _, w in out)
    for grid, results in jobs:
        assert losses(results) == losses(tmp_path / "alone" / results.name)
    pids = {grid.family: {int(p) for f in results.rglob("starts.log") for p in f.read_text().split()}
            for grid, results in jobs}
    assert os.getpid() not in pids["t5"] | pids["vit"] and not pids["t5"] & pids["vit"]

    import concurrent.futures

    class NoPool:
        def __init__(self, *a, **k):
            raise AssertionError("a rebuild must not start processes")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", NoPool)
    again = sweep.run_sweeps(jobs, parallel=2, trainer=FAKE, progress=False)
    assert [s.skipped for s, _ in again] == [len(g) for g, _ in jobs]


def test_run_sweeps_rejects_a_parallel_below_one(tmp_path):
    with pytest.raises(InputError, match="parallel must be >= 1"):
        sweep.run_sweeps([(_grid("t5", 1), tmp_path / "r")], parallel=0, trainer=FAKE)
