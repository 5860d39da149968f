"""Grouping: runs that share shapes and length train together as one vmapped program.

At CPU scale most of a short run's time is compilation, not steps, and a Table 1 grid
holds several runs on each dense width: (N, S) pairs with the same N / (1 - S) (6K at 50%,
3K at 75% and 12K dense all train a 12K-weight model), and seeds. Such runs differ only
in their sparsity targets and seed. Here those enter the step as data, so one program,
`jax.vmap`ped over the runs and compiled once, trains them all:

* per-leaf targets S and final non-zero counts (computed in float64 on the host, as a
  single run does) are vmapped inputs of `pruning.sparsify_leaves`; a leaf is prunable in
  the group if any run prunes it, and a run whose target for it is 0 keeps every weight
  (a dense run is GMP with target 0: the same updates as `--method none`);
* each run keeps its own initialisation, batches (its seed's stream) and dropout keys.

Each run still has its own folder with the single-run layout: config, log, orbax
checkpoints (saved in the single-run format, so either path resumes them) and
result.json. A group is formed only from runs at the same step (fresh, or checkpointed
together), and a run that diverges is recorded and dropped while the others go on.
Numbers agree with training each run alone to float32 rounding, not bit for bit
(batched matrix products sum in another order).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bigsparse_lib import optim, pruning, train
from bigsparse_lib.flops import Spent

MAX_GROUP = 8  # runs per program: memory grows with the group, compile time does not
_PER_RUN = ("seed", "sparsity", "nnz", "method")


def key(config: train.TrainConfig) -> str | None:
    """Runs with equal keys can train as one group; None for a run that never groups.

    Equal: everything of the resolved config but seed, sparsity and nnz, and the model
    shapes. Dense runs (`method="none"`) group with GMP runs. Runs that start from a
    checkpoint (`init`) do not group.
    """
    c = config.resolved()
    if c.init is not None or c.method not in ("gmp", "none"):
        return None
    d = {k: v for k, v in c.to_dict().items() if k not in _PER_RUN}
    d["model"] = train.model_config(c).to_dict()
    return json.dumps(d, sort_keys=True, default=str)


def _latest_step(out_dir: Path) -> int:
    ckpt = Path(out_dir) / train.CHECKPOINT_DIR
    steps = [int(p.name) for p in ckpt.iterdir() if p.name.isdigit()] if ckpt.is_dir() else []
    return max(steps, default=0)


def plan(configs: Sequence[train.TrainConfig], out_dirs: Sequence[str | Path],
         max_group: int = MAX_GROUP) -> list[list[int]]:
    """Indices of `configs` in groups (lists of 1 or more), in first-appearance order.

    Runs group when their `key` and their checkpointed step agree; groups hold at most
    `max_group` runs.
    """
    groups: dict[tuple, list[list[int]]] = {}
    order: list[list[int]] = []
    for i, (c, out) in enumerate(zip(configs, out_dirs)):
        try:
            k = key(c)
        except Exception:  # noqa: BLE001 -- a run that cannot even be planned fails alone, with its reason
            k = None
        if k is None:
            order.append([i])
            continue
        k = (k, _latest_step(Path(out)))
        open_groups = groups.setdefault(k, [])
        if open_groups and len(open_groups[-1]) < max_group:
            open_groups[-1].append(i)
        else:
            open_groups.append([i])
            order.append(open_groups[-1])
    return order


def train_group(configs: Sequence[train.TrainConfig], out_dirs: Sequence[str | Path], *,
                progress: bool = False) -> list[dict]:
    """Train runs with one `key` (and one checkpointed step) together; one result per run.

    A result is what `train.train` returns for the run: the result dict (status "ok"), or
    {"status": "diverged", "reason": ...} for a run whose loss became NaN/inf (its
    result.json says so, as a single run's does).
    """
    from tqdm.auto import tqdm

    configs = [c.resolved() for c in configs]
    out_dirs = [Path(o) for o in out_dirs]
    keys = {key(c) for c in configs}
    if len(configs) < 1 or None in keys or len(keys) != 1:
        raise ValueError("train_group needs runs that share one grouping key (see group.key)")
    steps0 = {_latest_step(o) for o in out_dirs}
    if len(steps0) != 1:
        raise ValueError(f"runs of a group must be at the same step, got {sorted(steps0)}")
    R, c0 = len(configs), configs[0]
    if steps0 == {c0.steps}:  # trained to the end already (killed before its record): finish each alone
        return [train.train(c, o, progress=False) for c, o in zip(configs, out_dirs)]
    tasks = [train.make_task(c) for c in configs]
    task = tasks[0]  # same model, loss and shapes for every run; data streams are per run
    dtype = train.DTYPES[c0.dtype]
    device = jax.devices()[0]
    mesh = train.data_mesh(c0.batch_size, [device])
    single = jax.sharding.SingleDeviceSharding(device)
    batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))

    # Per-run, per-leaf targets and final counts; a leaf is prunable if any run prunes it.
    params_shape = jax.eval_shape(task.init, jax.random.key(0))
    target_def = jax.tree_util.tree_structure(params_shape)
    flat_S = np.array([[0.0 if c.method == "none" else float(S) for S in jax.tree_util.tree_leaves(t.targets)]
                       for c, t in zip(configs, tasks)])  # (R, leaves)
    sizes = [int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params_shape)]
    prunable = flat_S.max(axis=0) > 0.0
    cols = np.flatnonzero(prunable)
    S_in = jnp.asarray(flat_S[:, cols], jnp.float32)  # (R, prunable leaves)
    k_in = jnp.asarray([[pruning.keep_count(S, sizes[j]) if S > 0 else sizes[j] for j, S in zip(cols, row[cols])]
                        for row in flat_S], jnp.int32)
    inner = optim.for_family(c0.family, c0.steps, c0.preset, learning_rate=c0.learning_rate)
    prune_cfg = pruning.PruningConfig(method="gmp", pattern=c0.pattern, schedule=c0.schedule)

    def tx_for(S_row, k_row):
        S_leaves, k_leaves = [0.0] * len(sizes), list(sizes)
        for n, j in enumerate(cols):
            S_leaves[j], k_leaves[j] = S_row[n], k_row[n]
        return pruning.sparsify_leaves(inner, target_def, S_leaves, k_leaves, c0.steps, prune_cfg)

    sparsifiable = task.sparsifiable(params_shape)
    flags = train._flag_list(params_shape, sparsifiable)
    dense = int(sum(s for s, f in zip(sizes, flags) if f))

    def nnz(params):
        leaves = [x for x, f in zip(jax.tree.leaves(params), flags) if f]
        return jnp.stack([jnp.count_nonzero(x) for x in leaves]) if leaves else jnp.zeros((0,), jnp.int32)

    def one_step(params, opt_state, batch, base_key, t, S_row, k_row):
        loss, grads = jax.value_and_grad(task.loss_fn)(params, batch, rng=jax.random.fold_in(base_key, t), dtype=dtype)
        updates, opt_state = tx_for(S_row, k_row).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, nnz(params)

    step_fn = jax.jit(jax.vmap(one_step, in_axes=(0, 0, 0, 0, None, 0, 0)), donate_argnums=(0, 1))
    eval_fn = jax.jit(lambda p, b: task.loss_fn(p, b, rng=None, dtype=dtype))
    init_tx = tx_for(S_in[0], k_in[0])
    # Checkpoints hold the single-run state: a run's mask is a scalar on the leaves it does not prune.
    solo_masks = [[bool(prunable[j]) and flat_S[i, j] <= 0.0 for j in range(len(sizes))] for i in range(R)]

    def to_solo(i, opt_state):
        masks = target_def.flatten_up_to(opt_state.masks)
        masks = [np.ones((), bool) if solo_masks[i][j] else m for j, m in enumerate(masks)]
        return opt_state._replace(masks=target_def.unflatten(masks))

    def from_solo(opt_state, params):
        masks = target_def.flatten_up_to(opt_state.masks)
        shapes = jax.tree.leaves(params)
        masks = [np.ones(p.shape, bool) if prunable[j] and m.ndim == 0 else m
                 for j, (m, p) in enumerate(zip(masks, shapes))]
        return opt_state._replace(masks=target_def.unflatten(masks))

    managers = []
    for c, o in zip(configs, out_dirs):
        o.mkdir(parents=True, exist_ok=True)
        train._check_config(o, c)
        managers.append(train._manager(o))
    try:
        start = steps0.pop()
        if start == 0:
            # one compiled program initialises every run (vmapped random draws equal per-key ones)
            keys0 = jnp.stack([jax.random.fold_in(jax.random.key(c.seed), 0) for c in configs])
            params, opt_state = jax.jit(jax.vmap(lambda k: (lambda p: (p, init_tx.init(p)))(task.init(k))))(keys0)
            spent = [Spent() for _ in configs]
        else:
            params_list, opt_list, spent = [], [], []
            for i, (c, t) in enumerate(zip(configs, tasks)):
                solo_tx = train.make_optimizer(c, t)
                p_shape = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=single), params_shape)
                o_shape = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=single),
                                       jax.eval_shape(solo_tx.init, params_shape))
                p, o, meta = train._restore(managers[i], start, p_shape, o_shape)
                params_list.append(jax.device_get(p))
                opt_list.append(jax.device_get(from_solo(o, p)))
                spent.append(Spent.from_dict(meta["spent"]))
            stack = lambda trees: jax.tree.map(lambda *x: np.stack(x), *trees)
            params, opt_state = jax.device_put((stack(params_list), stack(opt_list)), single)
            del params_list, opt_list
        for o in out_dirs:
            train._truncate_log(o, start)
        base_keys = jnp.stack([jax.random.fold_in(jax.random.key(c.seed), 1) for c in configs])
        results: list[dict | None] = [None] * R
        alive = np.ones(R, bool)
        data_per_step = c0.batch_size * task.units_per_example
        pending: list[tuple[jax.Array, jax.Array]] = []

        def flush():
            losses = [[] for _ in range(R)]
            last_nnz = [0] * R
            for loss, counts in pending:
                loss = np.asarray(loss, np.float64)
                counts = np.asarray(counts, np.int64).sum(axis=-1)
                for i in np.flatnonzero(alive):
                    if not math.isfinite(loss[i]):
                        try:
                            train._diverged(out_dirs[i], configs[i], spent[i].steps,
                                            f"training loss became {loss[i]} at step {spent[i].steps + 1}")
                        except train.Diverged as e:
                            results[i] = {"status": "diverged", "reason": str(e)}
                        alive[i] = False
                        continue
                    spent[i] = spent[i].add_step(int(counts[i]), dense, data_per_step)
                    losses[i].append(loss[i])
                    last_nnz[i] = int(counts[i])
            pending.clear()
            for i in np.flatnonzero(alive):
                train._append_log(out_dirs[i], {
                    "step": spent[i].steps, "loss": float(np.mean(losses[i])),
                    "sparsity": 1.0 - last_nnz[i] / dense if dense else 0.0, "nnz": last_nnz[i],
                    **{k: v for k, v in spent[i].to_dict().items() if k != "steps"}})

        bar = tqdm(total=c0.steps, initial=start, disable=not progress, unit="step",
                   desc=f"{c0.family}/{c0.preset} group of {R}", dynamic_ncols=True)
        for t in range(start, c0.steps):
            batch = _stacked_batch(tasks, t, c0.batch_size)
            params, opt_state, loss, counts = step_fn(params, opt_state, batch, base_keys,
                                                      jnp.asarray(t, jnp.int32), S_in, k_in)
            pending.append((loss, counts))
            bar.update(1)
            done = t + 1
            if done % c0.log_every == 0 or done == c0.steps:
                flush()
            if done % c0.checkpoint_every == 0 or done == c0.steps:
                if pending:
                    flush()
                host_p, host_o = jax.device_get((params, opt_state))  # slice on the host: no per-leaf programs
                for i in np.flatnonzero(alive):
                    p_i = jax.tree.map(lambda x: x[i], host_p)
                    o_i = to_solo(i, jax.tree.map(lambda x: x[i], host_o))
                    train._save(managers[i], done, p_i, o_i, {"spent": spent[i].to_dict()})
        bar.close()
        for m in managers:
            m.wait_until_finished()

        host = host_p  # the last step always checkpoints: these are the final weights
        for i in np.flatnonzero(alive):
            p_i = jax.tree.map(lambda x: x[i], host)
            eval_loss = train.evaluate(eval_fn, tasks[i].eval_data, p_i, c0.batch_size, c0.eval_batches,
                                       batch_sharding)
            try:
                results[i] = train._finish(out_dirs[i], configs[i], sparsifiable, p_i, eval_loss, spent[i], dense,
                                           units_per_example=task.units_per_example, devices=1)
            except train.Diverged as e:
                results[i] = {"status": "diverged", "reason": str(e)}
        return results
    finally:
        for m in managers:
            m.close()


def _stacked_batch(tasks, t: int, batch_size: int) -> dict[str, np.ndarray]:
    """Step t's batch of every run (each from its own stream), stacked along a new run axis."""
    batches = [task.train_data.batch(t, batch_size) for task in tasks]
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}
