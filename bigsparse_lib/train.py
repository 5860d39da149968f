"""The training loop: one run of the sweep (§3.1, App. A), with exact resume.

A run trains a model of family "t5" or "vit" whose sparsified layers end with N
non-zeros at sparsity S, pruned during training by gradual magnitude pruning (GMP,
cubic, 25% -> 75% of training) or another method of `pruning.py`. It logs the loss,
the sparsity and the training FLOPs spent so far (dense and sparse costs of §3.3, see
`flops.py`), evaluates on the held-out stream, and writes `result.json`.

Reproducibility: the data stream is a pure function of the batch index, and the
randomness of step t is `fold_in(fold_in(key(seed), 1), t)` (the init key is
`fold_in(key(seed), 0)`), so a run killed and resumed from its orbax checkpoint computes
exactly what a run never stopped computes (tested on CPU, bit for bit).

Data parallelism: the batch is sharded along the "data" axis of a mesh over the local
devices and the parameters are replicated (`jax.sharding`); XLA inserts the all-reduce.

    from bigsparse_lib import train
    result = train.train(train.TrainConfig(family="t5", preset="smoke", sparsity=0.5), "runs/t5")
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from bigsparse_lib.errors import InputError
from bigsparse_lib.flops import Spent
from bigsparse_lib.schedule import GradualSchedule

# Per family: bump whenever a change alters the numbers that family's runs produce (the sweep
# store keys runs on it, so old results are never reused). ViT 2: toy images became motifs in
# patch-sized cells (`data.toy.MotifImages`), toy learning rate 1e-2.
RECIPE_VERSIONS = {"t5": "1", "vit": "2"}


def recipe_version(family: str) -> str:
    """The recipe version of `family`'s runs (RECIPE_VERSIONS)."""
    return RECIPE_VERSIONS[family]

FAMILIES = ("t5", "vit")
PRESET_NAMES = ("smoke", "toy", "full")
METHODS = ("gmp", "oneshot", "acdc", "none")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Diverged(RuntimeError):
    """The training loss became NaN or infinite; `result.json` says so with the reason."""


# --------------------------------------------------------------------------------------
# Recipes (App. A): the per-family, per-preset defaults of a run.
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """Defaults of one family at one scale.

    The optimizer and its learning-rate schedule are the paper's (`optim.for_family`: T5's
    sparsity-aware Adafactor with rsqrt decay, peak 1e-2; big_vision's Adafactor for ViT,
    peak 8e-4). `full` uses the paper's batch sizes: 128 sequences of 512 tokens for T5
    (App. A), 4096 images for ViT (440K steps x 4096 = the ~1.8B images of Table 1).
    `smoke` and `toy` keep the structure at CPU size; `learning_rate` None = the paper's peak.
    """

    batch_size: int
    steps: int
    learning_rate: float | None
    eval_batches: int
    log_every: int
    checkpoint_every: int


PAPER_PEAK_LR = {"t5": 1e-2, "vit": 8e-4}  # optim.for_family's defaults (T5: Raffel et al.; ViT: big_vision)

PRESETS: dict[str, dict[str, Recipe]] = {
    "t5": {
        "smoke": Recipe(batch_size=8, steps=40, learning_rate=None, eval_batches=2, log_every=5,
                        checkpoint_every=20),
        "toy": Recipe(batch_size=16, steps=600, learning_rate=None, eval_batches=8, log_every=20,
                      checkpoint_every=100),
        "full": Recipe(batch_size=128, steps=250_000, learning_rate=None, eval_batches=100, log_every=500,
                       checkpoint_every=5_000),
    },
    "vit": {
        "smoke": Recipe(batch_size=8, steps=40, learning_rate=3e-3, eval_batches=2, log_every=5,
                        checkpoint_every=20),
        "toy": Recipe(batch_size=32, steps=600, learning_rate=1e-2, eval_batches=8, log_every=20,
                      checkpoint_every=100),
        "full": Recipe(batch_size=4096, steps=55_000, learning_rate=None, eval_batches=20, log_every=500,
                       checkpoint_every=5_000),
    },
}


def mask_update_every(steps: int) -> int:
    """Steps between mask updates: the paper's 100 (App. A) for its 55K-1M step runs,
    and proportionally fewer (at least 1) for short runs, so that a run of any length
    gets ~200 updates or more over its schedule (Table 5: the frequency matters little)."""
    return int(min(100, max(1, steps // 200)))


def default_schedule(steps: int, pretrained: bool) -> GradualSchedule:
    """The paper's cubic 25% -> 75% schedule (App. A); from a pretrained checkpoint (§4.2) it
    starts at once (`pruning.pretrained_schedule`)."""
    from bigsparse_lib import pruning

    schedule = GradualSchedule(start=0.25, end=0.75, power=3.0, every=mask_update_every(steps))
    return pruning.pretrained_schedule(schedule) if pretrained else schedule


# --------------------------------------------------------------------------------------
# The run's configuration.
# --------------------------------------------------------------------------------------
def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """'unstructured' -> None; 'n:m' -> (n, m) with 0 < n < m (`pruning.parse_pattern`)."""
    from bigsparse_lib import pruning

    try:
        return pruning.parse_pattern(pattern)
    except InputError as e:
        raise InputError(f"--pattern: {e}") from None


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's numbers. None means "the preset's default" (PRESETS).

    nnz: N, the non-zeros of the sparsified layers at the end (None: the preset's base model
    at sparsity S). init: a previous run's output directory holding a dense checkpoint to
    prune from (§4.2). data_source: None (the preset's synthetic stream), "synthetic", or a
    folder of real data (C4 shards / images; `data.make`), needed at the full preset.
    """

    family: str
    preset: str = "smoke"
    nnz: int | None = None
    sparsity: float = 0.0
    pattern: str = "unstructured"
    method: str = "gmp"
    steps: int | None = None
    seed: int = 0
    batch_size: int | None = None
    learning_rate: float | None = None
    schedule: GradualSchedule | None = None
    init: str | None = None
    data_source: str | None = None
    dtype: str = "float32"
    eval_batches: int | None = None
    log_every: int | None = None
    checkpoint_every: int | None = None

    def validate(self) -> "TrainConfig":
        """Raise InputError, naming the argument, for a config no run can have; return self."""
        if self.family not in FAMILIES:
            raise InputError(f"--family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        if self.preset not in PRESET_NAMES:
            raise InputError(f"--preset must be one of {', '.join(PRESET_NAMES)}, got {self.preset!r}")
        S = self.sparsity
        if not (isinstance(S, (int, float)) and math.isfinite(S) and 0.0 <= S < 1.0):
            raise InputError(f"--sparsity must be in [0, 1), got {S}")
        nm = parse_pattern(self.pattern)
        if nm is not None and S > 1.0 - nm[0] / nm[1] + 1e-12:
            raise InputError(f"--sparsity {S} is above 1 - n/m = {1 - nm[0] / nm[1]:g}, "
                             f"the most an {self.pattern} pattern allows")
        if self.method not in METHODS:
            raise InputError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.method == "none" and S > 0:
            raise InputError(f"--method none trains dense; it cannot reach --sparsity {S}")
        if self.dtype not in DTYPES:
            raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name in ("nnz", "steps", "batch_size", "eval_batches", "log_every",
                     "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise InputError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.learning_rate is not None and not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise InputError(f"learning rate must be positive, got {self.learning_rate}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise InputError(f"--seed must be a non-negative integer, got {self.seed!r}")
        if self.init is not None and not Path(self.init).is_dir():
            raise InputError(f"--init: no such directory: {self.init}")
        return self

    def resolved(self) -> "TrainConfig":
        """The same config with every default filled in from PRESETS (what the run records)."""
        self.validate()
        recipe = PRESETS[self.family][self.preset]
        steps = int(self.steps or recipe.steps)
        pick = lambda name: getattr(self, name) if getattr(self, name) is not None else getattr(recipe, name)
        return dataclasses.replace(
            self,
            nnz=None if self.nnz is None else int(self.nnz),
            sparsity=float(self.sparsity),
            steps=steps,
            batch_size=int(pick("batch_size")),
            learning_rate=float(pick("learning_rate") or PAPER_PEAK_LR[self.family]),
            schedule=self.schedule or default_schedule(steps, pretrained=self.init is not None),
            init=None if self.init is None else str(Path(self.init).resolve()),
            data_source=(self.data_source if self.data_source in (None, "synthetic")
                         else str(Path(self.data_source).resolve())),
            eval_batches=int(pick("eval_batches")),
            log_every=int(min(pick("log_every"), steps)),
            checkpoint_every=int(pick("checkpoint_every")),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, keys in field order."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.schedule is not None:
            d["schedule"] = dataclasses.asdict(self.schedule)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise InputError(f"unknown training config key(s): {', '.join(unknown)}")
        d = dict(d)
        if isinstance(d.get("schedule"), dict):
            d["schedule"] = GradualSchedule(**d["schedule"])
        return cls(**d)


# --------------------------------------------------------------------------------------
# What the loop needs from the model family, the data and the pruning method.
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """A model family's functions bound to one model config, and its two data streams.

    loss_fn(params, batch, *, rng, dtype) -> scalar; sparsifiable(params) -> pytree of
    bool; targets: per-parameter target sparsity (pytree like params); the datasets have
    `batch(index, batch_size)`, a pure function of the index. `optimizer`, if given,
    replaces `make_optimizer` (tests use it to drive the loop with stand-ins).
    """

    model_config: Any
    init: Callable[[jax.Array], Any]
    loss_fn: Callable[..., jax.Array]
    sparsifiable: Callable[[Any], Any]
    targets: Any
    train_data: Any
    eval_data: Any
    units_per_example: int
    optimizer: Callable[["TrainConfig", "Task"], optax.GradientTransformation] | None = None


def model_config(config: TrainConfig):
    """The model shapes of a run: the preset's base, or the width that holds N/(1-S) weights."""
    from bigsparse_lib import models

    family = models.get_family(config.family)
    if config.nnz is None:
        return family.BASES[config.preset]
    return models.config_for_nnz(config.family, config.preset, int(config.nnz), float(config.sparsity))


def make_task(config: TrainConfig) -> Task:
    """Bind the family of `config` (models/, data/) to its model config."""
    from bigsparse_lib import data, models

    family = models.get_family(config.family)
    mcfg = model_config(config)
    # The streams' shapes (vocabulary, lengths, classes, image size) do not depend on the width,
    # so the preset names the stream even when `nnz` rescales the model.
    train_data = data.make(config.family, config.preset, seed=config.seed, split="train", source=config.data_source)
    eval_data = data.make(config.family, config.preset, seed=config.seed, split="eval", source=config.data_source)

    def loss_fn(params, batch, *, rng=None, dtype=jnp.float32):
        return family.loss_fn(params, batch, mcfg, rng=rng, dtype=dtype)

    return Task(
        model_config=mcfg,
        init=lambda key: family.init(mcfg, key),
        loss_fn=loss_fn,
        sparsifiable=family.sparsifiable,
        targets=family.target_sparsities(mcfg, float(config.sparsity)),
        train_data=train_data,
        eval_data=eval_data,
        units_per_example=int(train_data.units_per_example),
    )


def make_optimizer(config: TrainConfig, task: Task) -> optax.GradientTransformation:
    """The family's optimizer (App. A, A.1: `optim.for_family`) wrapped by the pruning method
    (`pruning.sparsify`), which keeps the masks and zeroes the pruned weights after every step."""
    from bigsparse_lib import optim, pruning

    inner = optim.for_family(config.family, int(config.steps), config.preset, learning_rate=config.learning_rate)
    prune = pruning.PruningConfig(method=config.method, pattern=config.pattern, schedule=config.schedule)
    return pruning.sparsify(inner, task.targets, int(config.steps), prune)


# --------------------------------------------------------------------------------------
# Small helpers: parameter paths, counting, sharding.
# --------------------------------------------------------------------------------------
def path_str(keypath) -> str:
    """('encoder', 'layers_0', 'mlp', 'wo', 'kernel') -> 'encoder/layers_0/mlp/wo/kernel' (as pruning.py)."""
    from bigsparse_lib import pruning

    return pruning.path_str(keypath)


def sparsified_kernels(params, sparsifiable) -> dict[str, Any]:
    """{path: array} of the sparsified layers, in the model's own layout."""
    flags = dict(jax.tree_util.tree_leaves_with_path(sparsifiable))
    return {path_str(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(params) if flags.get(p, False)}


def _flag_list(params, sparsifiable) -> list[bool]:
    flags = dict(jax.tree_util.tree_leaves_with_path(sparsifiable))
    return [bool(flags.get(p, False)) for p, _ in jax.tree_util.tree_leaves_with_path(params)]


def data_mesh(batch_size: int, devices=None) -> Mesh:
    """A 1-D mesh ("data",) over the most local devices that divide the batch evenly."""
    devices = list(devices if devices is not None else jax.devices())
    n = max(k for k in range(1, len(devices) + 1) if batch_size % k == 0)
    return Mesh(np.array(devices[:n]), ("data",))


def _atomic_write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Checkpoints (orbax).
# --------------------------------------------------------------------------------------
CHECKPOINT_DIR = "checkpoints"


def _manager(out_dir: Path, max_to_keep: int = 2):
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(
        (out_dir / CHECKPOINT_DIR).resolve(),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_handlers={"params": ocp.StandardCheckpointHandler(), "opt_state": ocp.StandardCheckpointHandler(),
                       "meta": ocp.JsonCheckpointHandler()},
    )


def _save(manager, step: int, params, opt_state, meta: dict) -> None:
    import orbax.checkpoint as ocp

    manager.save(step, args=ocp.args.Composite(
        params=ocp.args.StandardSave(params),
        opt_state=ocp.args.StandardSave(opt_state),
        meta=ocp.args.JsonSave(meta),
    ), force=True)


def _abstract(tree):
    import orbax.checkpoint as ocp

    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _restore(manager, step: int, params, opt_state):
    """Restore into the structure (and shardings) of the given templates."""
    import orbax.checkpoint as ocp

    r = manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(_abstract(params)),
        opt_state=ocp.args.StandardRestore(_abstract(opt_state)),
        meta=ocp.args.JsonRestore(),
    ))
    # orbax hands back containers (e.g. tuples for optax's NamedTuples); re-use the templates' structure.
    restored_params = jax.tree.unflatten(jax.tree.structure(params), jax.tree.leaves(r.params))
    restored_opt = jax.tree.unflatten(jax.tree.structure(opt_state), jax.tree.leaves(r.opt_state))
    return restored_params, restored_opt, r.meta


def load_params(run_dir: str | Path, like=None):
    """The parameters of the latest checkpoint of a run directory (a previous `train --out`).

    With `like` (a params pytree or its shapes), shapes must match: InputError otherwise.
    """
    import orbax.checkpoint as ocp

    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT_DIR).is_dir():
        raise InputError(f"{run_dir} holds no checkpoint (expected {run_dir / CHECKPOINT_DIR}/)")
    manager = _manager(run_dir)
    try:
        step = manager.latest_step()
        if step is None:
            raise InputError(f"{run_dir} holds no complete checkpoint")
        # Restore onto this process's first device, whatever topology the run was saved from.
        meta = manager.item_metadata(step)["params"]
        meta = getattr(meta, "tree", meta)
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device), meta)
        restored = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target))).params
    finally:
        manager.close()
    restored = jax.tree.map(np.asarray, restored)
    if like is not None:
        want = {path_str(p): tuple(np.shape(x)) for p, x in jax.tree_util.tree_leaves_with_path(like)}
        got = {path_str(p): tuple(np.shape(x)) for p, x in jax.tree_util.tree_leaves_with_path(restored)}
        if want != got:
            diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))[:3]
            raise InputError(f"--init {run_dir}: checkpoint shapes do not match this model "
                             f"(first differences: {', '.join(f'{k}: {got.get(k)} vs {want.get(k)}' for k in diff)})")
        restored = jax.tree.unflatten(jax.tree.structure(like), _leaves_by_path(restored, like))
    return restored


def sparsified_params(run_dir: str | Path, family: str) -> dict[str, np.ndarray]:
    """{path: kernel} of the sparsified layers of a run's latest checkpoint, in the model's own
    layout ([in, out]), e.g. "encoder/layers_0/attention/query/kernel" (`train --save-params`)."""
    from bigsparse_lib import models

    params = load_params(run_dir)
    return {k: np.asarray(v) for k, v in sparsified_kernels(params, models.get_family(family).sparsifiable(params)).items()}


def _leaves_by_path(tree, like) -> list:
    """Leaves of `tree` in the order of `like`'s leaves, matched by path string."""
    by_path = {path_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree)}
    return [by_path[path_str(p)] for p, _ in jax.tree_util.tree_leaves_with_path(like)]


# --------------------------------------------------------------------------------------
# The log.
# --------------------------------------------------------------------------------------
LOG_FILE = "log.jsonl"


def read_log(out_dir: str | Path) -> list[dict]:
    """The records of `out_dir/log.jsonl` (a partly written last line is skipped)."""
    path = Path(out_dir) / LOG_FILE
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _truncate_log(out_dir: Path, step: int) -> None:
    """Drop records after `step` (a killed run may have logged past its last checkpoint), and the
    final evaluation's record at `step`, which the resumed run writes again."""
    path = out_dir / LOG_FILE
    if not path.exists():
        return
    keep = [r for r in read_log(out_dir)
            if r.get("step", 0) < step or (r.get("step", 0) == step and "eval_loss" not in r)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, path)


def _append_log(out_dir: Path, record: dict) -> None:
    with open(out_dir / LOG_FILE, "a") as f:
        f.write(json.dumps(record, allow_nan=True) + "\n")
        f.flush()


# --------------------------------------------------------------------------------------
# The loop.
# --------------------------------------------------------------------------------------
def _check_config(out_dir: Path, config: TrainConfig) -> None:
    """Refuse (InputError) to resume a directory that holds a run of another config."""
    path = out_dir / "config.json"
    if path.exists():
        saved = json.loads(path.read_text())
        theirs = saved.get("config", saved)
        mine = json.loads(json.dumps(config.to_dict()))
        if theirs != mine:
            diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
            raise InputError(f"--out {out_dir} holds a run of a different config (differs in {', '.join(diff)}); "
                             f"choose another directory")
    else:
        _atomic_write_json(path, {"config": config.to_dict(), "recipe_version": recipe_version(config.family)})


def _make_step(task: Task, tx, flags: list[bool], dtype, mesh: Mesh, seed: int):
    """The jit-compiled train step and eval loss: batch sharded over "data", params replicated.

    The step returns the non-zero count of each sparsified kernel it trained with (`flags`
    marks them), so the loop can price it without a second pass over the weights.
    """
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))
    base_key = jax.random.fold_in(jax.random.key(seed), 1)

    def nnz(params):
        leaves = [x for x, f in zip(jax.tree.leaves(params), flags) if f]
        return jnp.stack([jnp.count_nonzero(x) for x in leaves]) if leaves else jnp.zeros((0,), jnp.int32)

    def step(params, opt_state, batch, t):
        rng = jax.random.fold_in(base_key, t)
        loss, grads = jax.value_and_grad(task.loss_fn)(params, batch, rng=rng, dtype=dtype)
        updates, opt_state = tx.update(grads, opt_state, params)
        # nnz of the weights this step trained with: the sparse cost of the step (§3.3 (b)).
        return optax.apply_updates(params, updates), opt_state, loss, nnz(params)

    def eval_loss(params, batch):
        return task.loss_fn(params, batch, rng=None, dtype=dtype)

    step_fn = jax.jit(step, in_shardings=(replicated, replicated, batch_sharding, replicated),
                      out_shardings=(replicated, replicated, replicated, replicated), donate_argnums=(0, 1))
    eval_fn = jax.jit(eval_loss, in_shardings=(replicated, batch_sharding), out_shardings=replicated)
    return step_fn, eval_fn, batch_sharding


def _finished_result(out_dir: Path, config: TrainConfig) -> dict | None:
    """The result of a run of this config that already finished in out_dir, else None."""
    try:
        saved = json.loads((out_dir / "config.json").read_text())["config"]
        result = json.loads((out_dir / "result.json").read_text())
    except (OSError, ValueError, KeyError):
        return None
    same = saved == json.loads(json.dumps(config.to_dict()))
    return result if same and result.get("status") == "ok" and result.get("steps") == config.steps else None


def evaluate(eval_fn, dataset, params, batch_size: int, batches: int, batch_sharding) -> float:
    """Mean loss over the first `batches` batches of the held-out stream (the same at every call)."""
    losses = [eval_fn(params, jax.device_put(dataset.batch(i, batch_size), batch_sharding)) for i in range(batches)]
    return float(np.mean([float(x) for x in losses]))


def _diverged(out_dir: Path, config: TrainConfig, steps: int, reason: str):
    """Record a diverged run in out_dir/result.json and raise `Diverged`."""
    _atomic_write_json(out_dir / "result.json", {"status": "diverged", "reason": reason, "steps": steps,
                                                 "config": config.to_dict(),
                                                 "recipe_version": recipe_version(config.family)})
    raise Diverged(reason)


def _finish(out_dir: Path, config: TrainConfig, sparsifiable, host_params, eval_loss: float, spent: Spent,
            dense: int, *, units_per_example: int, devices: int) -> dict:
    """Write (and return) the result.json of a run that trained all its steps."""
    from bigsparse_lib import pruning

    if not math.isfinite(eval_loss):
        _diverged(out_dir, config, spent.steps, f"eval loss is {eval_loss} after {spent.steps} steps")
    kernels = sparsified_kernels(host_params, sparsifiable)
    nnz = int(sum(np.count_nonzero(v) for v in kernels.values()))
    result = {
        "status": "ok",
        "eval_loss": eval_loss,
        "nnz": nnz,
        "dense_params": dense,
        "sparsity": 1.0 - nnz / dense if dense else 0.0,
        "layer_sparsity": {k: float(v) for k, v in pruning.layer_sparsity(host_params, sparsifiable).items()},
        "data": spent.data,
        "data_unit": "tokens" if units_per_example > 1 else "examples",
        "steps": spent.steps,
        "flops_dense": spent.flops_dense,
        "flops_sparse": spent.flops_sparse,
        "devices": devices,
        "config": config.to_dict(),
        "recipe_version": recipe_version(config.family),
    }
    _append_log(out_dir, {"step": spent.steps, "eval_loss": eval_loss})
    _atomic_write_json(out_dir / "result.json", result)
    return result


def train(config: TrainConfig, out_dir: str | Path, *, progress: bool = True, stop_after: int | None = None,
          task: Task | None = None, devices=None) -> dict:
    """Train (or resume) the run `config` in `out_dir`; return (and write) its result.

    Resumes from the latest orbax checkpoint in `out_dir` if there is one. `stop_after`
    ends the process's share of the run after that many steps in total (checkpointed,
    status "stopped", no result.json): a later call resumes it. Raises `Diverged` if the
    loss becomes NaN/inf (after writing result.json with status "diverged").
    """
    from tqdm.auto import tqdm

    config = config.resolved()
    out_dir = Path(out_dir)
    finished = _finished_result(out_dir, config)
    if finished is not None:
        return finished

    # Everything that can reject the config (nnz too small, a mismatched --init) runs before
    # anything is written to out_dir.
    task = task or make_task(config)
    tx = task.optimizer(config, task) if task.optimizer else make_optimizer(config, task)
    dtype = DTYPES[config.dtype]
    mesh = data_mesh(config.batch_size, devices)
    replicated = NamedSharding(mesh, P())
    key0 = jax.random.fold_in(jax.random.key(config.seed), 0)
    on_mesh = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), tree)
    params_shape = on_mesh(jax.eval_shape(task.init, key0))
    opt_shape = on_mesh(jax.eval_shape(tx.init, params_shape))
    sparsifiable = task.sparsifiable(params_shape)
    flags = _flag_list(params_shape, sparsifiable)
    dense = int(sum(np.prod(x.shape, dtype=np.int64) for x, f in zip(jax.tree.leaves(params_shape), flags) if f))
    pretrained = load_params(config.init, like=params_shape) if config.init is not None else None

    out_dir.mkdir(parents=True, exist_ok=True)
    _check_config(out_dir, config)
    step_fn, eval_fn, batch_sharding = _make_step(task, tx, flags, dtype, mesh, config.seed)
    data_per_step = config.batch_size * task.units_per_example
    spent = Spent()
    manager = _manager(out_dir)
    try:
        last = manager.latest_step()
        if last is None:
            # Compiled init: one program rather than one dispatch per initializer op (seconds on CPU).
            if pretrained is None:
                params = jax.jit(task.init, out_shardings=replicated)(key0)
            else:
                params = jax.device_put(pretrained, replicated)
            opt_state = jax.jit(tx.init, out_shardings=replicated)(params)
        else:
            params, opt_state, meta = _restore(manager, last, params_shape, opt_shape)
            spent = Spent.from_dict(meta["spent"])
            assert spent.steps == last, (spent, last)
        _truncate_log(out_dir, spent.steps)

        end = config.steps if stop_after is None else min(config.steps, int(stop_after))
        bar = tqdm(total=config.steps, initial=spent.steps, disable=not progress, unit="step",
                   desc=f"{config.family}/{config.preset} S={config.sparsity:g}", dynamic_ncols=True)
        pending: list[tuple[jax.Array, jax.Array]] = []

        def flush():
            """Account the steps run since the last flush; log; stop on divergence."""
            nonlocal spent
            losses = []
            for loss, nnz in pending:
                loss, nnz = float(loss), int(np.sum(np.asarray(nnz, dtype=np.int64)))
                if not math.isfinite(loss):
                    _diverged(out_dir, config, spent.steps, f"training loss became {loss} at step {spent.steps + 1}")
                spent = spent.add_step(nnz, dense, data_per_step)
                losses.append(loss)
            pending.clear()
            record = {"step": spent.steps, "loss": float(np.mean(losses)), "sparsity": 1.0 - nnz / dense if dense else 0.0,
                      "nnz": nnz, **{k: v for k, v in spent.to_dict().items() if k != "steps"}}
            _append_log(out_dir, record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", S=f"{record['sparsity']:.3f}")

        for t in range(spent.steps, end):
            batch = jax.device_put(task.train_data.batch(t, config.batch_size), batch_sharding)
            params, opt_state, loss, nnz = step_fn(params, opt_state, batch, jnp.asarray(t, jnp.int32))
            pending.append((loss, nnz))
            bar.update(1)
            done = t + 1
            if done % config.log_every == 0 or done == end:
                flush()
            if done % config.checkpoint_every == 0 or done == end:
                if pending:
                    flush()
                _save(manager, done, params, opt_state, {"spent": spent.to_dict()})
        bar.close()
        manager.wait_until_finished()

        if spent.steps < config.steps:
            return {"status": "stopped", "steps": spent.steps, "config": config.to_dict(),
                    "recipe_version": recipe_version(config.family)}

        eval_loss = evaluate(eval_fn, task.eval_data, params, config.batch_size, config.eval_batches, batch_sharding)
        return _finish(out_dir, config, sparsifiable, jax.device_get(params), eval_loss, spent, dense,
                       units_per_example=task.units_per_example, devices=int(mesh.size))
    finally:
        manager.close()
