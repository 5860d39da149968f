"""Sweeps (§3.1, App. A): grids of runs, a crash-proof result store, executors, and the tidy export.

    grid = make_grid("t5", "toy", "main")            # Table 1 at toy size: a tuple of TrainConfigs
    summary = run_sweep(grid, "results/t5-toy")     # trains what is not recorded yet; resumable
    df = export(Store("results/t5-toy"))            # sparsity, nnz, data, loss (+ metadata)

`grids` holds the grids, `store` the results directory, `executors` where runs execute.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from bigsparse_lib.errors import InputError
from bigsparse_lib.sweep.executors import DEFAULT_TRAINER, EXECUTORS, make_executor, run_one
from bigsparse_lib.sweep.grids import (FAMILIES, GRIDS, NM_PATTERNS, PRESETS, Grid, MainSpec, PretrainedSpec,
                                       main_grid, make_grid, nm_grid, pretrained_grid)
from bigsparse_lib.sweep.store import DIVERGED, ERROR, OK, RunState, Store, SweepLock, run_id

__all__ = [
    "FAMILIES", "GRIDS", "PRESETS", "NM_PATTERNS", "EXECUTORS", "Grid", "MainSpec", "PretrainedSpec",
    "Store", "RunState", "SweepSummary", "make_grid", "main_grid", "nm_grid", "pretrained_grid",
    "open_store", "run_sweep", "run_sweeps", "run_one", "status", "export", "run_id",
]


@dataclass
class SweepSummary:
    """What a `run_sweep` call did: counts over the whole grid after it returns."""

    total: int
    skipped: int  # recorded before this call
    done: int = 0
    failed: list[str] = field(default_factory=list)  # run ids recorded as diverged/error (by this call or before)

    @property
    def complete(self) -> bool:
        return self.done + self.skipped == self.total


def open_store(grid: Grid, results: str | Path) -> tuple[Store, list[str]]:
    """Create/check the results directory for `grid` and plan its runs; returns (store, run ids)."""
    from bigsparse_lib.train import recipe_version

    recipe = recipe_version(grid.family)
    store = Store.open(results, {**grid.identity, "recipe_version": recipe})
    ids = store.plan([cfg.to_dict() for cfg in grid.runs], recipe)
    return store, ids


def _stages(store: Store, ids: list[str]) -> list[list[str]]:
    """Runs grouped so that a run whose init is '@parent' comes in a later stage than its parent."""
    depth: dict[str, int] = {}

    def level(rid: str) -> int:
        if rid not in depth:
            init = store.config(rid).get("init")
            parent = init[1:] if isinstance(init, str) and init.startswith("@") else None
            depth[rid] = 0 if parent is None else level(parent) + 1
        return depth[rid]

    out: dict[int, list[str]] = {}
    for rid in ids:
        out.setdefault(level(rid), []).append(rid)
    return [out[k] for k in sorted(out)]


def run_sweep(grid: Grid, results: str | Path, *, executor: str = "local", workers: int | None = None,
              trainer: str | Callable = DEFAULT_TRAINER, progress: bool = True, retry_failed: bool = False,
              group: bool | None = None, **executor_options) -> SweepSummary:
    """Train every run of `grid` that `results` has no record of; returns a SweepSummary.

    Recorded runs are skipped; runs recorded as "error" (an exception, or a worker that
    died) are tried again; "diverged" runs only with `retry_failed`. Killing this function
    at any point loses at most the runs in flight, which resume from their checkpoints.
    `group`: train runs that share shapes and length as one vmapped program (`sweep.group`;
    in-process executor only). None: on for the smoke and toy presets, where it is faster
    (`bench/sweep.py`), off at full scale. Grouped, `workers` groups train side by side in
    threads (default `executors.GROUP_WORKERS`).
    """
    from tqdm.auto import tqdm

    if group is None:
        group = executor == "local" and grid.preset != "full"
    if group and executor != "local":
        raise InputError(f"grouping runs needs the in-process executor (--executor local), not {executor!r}")
    if executor == "local":
        executor_options = {**executor_options, "group": bool(group)}
    ex = make_executor(executor, workers, **executor_options)  # before touching the directory
    store, ids = open_store(grid, results)
    # A sweep with nothing left to train reads its records without the lock (records are written
    # atomically and a finished one never changes), so chapters that only read a finished sweep
    # can execute side by side (`book.schedule`); one with runs to train takes it.
    todo = _todo(store, ids, retry_failed)
    with SweepLock(store.root) if todo else contextlib.nullcontext():
        if todo:  # read again under the lock: another sweep may have recorded some of them since
            todo = _todo(store, ids, retry_failed)
        summary = SweepSummary(total=len(ids), skipped=len(ids) - len(todo))
        todo_set = set(todo)
        bar = tqdm(total=len(ids), initial=summary.skipped, desc=f"sweep {grid.family}/{grid.preset}/{grid.name}",
                   unit="run", disable=not progress, file=sys.stderr)
        try:
            for stage in _stages(store, ids):
                ready, blocked = [], []
                for rid in stage:
                    if rid not in todo_set:
                        continue
                    parent = _parent(store, rid)
                    (blocked if parent and (store.record(parent) or {}).get("status") != OK else ready).append(rid)
                for rid in blocked:
                    _record_blocked(store, rid)
                    summary.failed.append(rid)
                    bar.update(1)
                for rid, record in ex.run(store, ready, trainer):
                    if record.get("status") == OK:
                        summary.done += 1
                    else:
                        summary.failed.append(rid)
                        bar.write(f"run {rid} failed ({record.get('status')}): {record.get('reason')}", file=sys.stderr)
                    bar.update(1)
        finally:
            bar.close()
    summary.failed += [rid for rid in ids if rid not in todo_set and (store.record(rid) or {}).get("status") != OK]
    return summary


def _timed_sweep(grid: Grid, results: str, kwargs: dict) -> tuple[SweepSummary, float]:
    t0 = time.perf_counter()
    summary = run_sweep(grid, results, **kwargs)
    return summary, time.perf_counter() - t0


def run_sweeps(jobs, *, parallel: int | None = None, **kwargs) -> list[tuple[SweepSummary, float]]:
    """`run_sweep` on each (grid, results) of `jobs`, several at once in their own processes.

    Returns (summary, wall seconds) per job, in order. `parallel`: how many sweeps train at
    once. None: every job at once when no grid is at full scale and this machine has 2 or more
    cores, else one after another (at full scale the sweeps would share one accelerator).
    Why: a toy program keeps about 1.5 of 2 cores busy, so the two families' toy main grids
    side by side took 826 s against 893 s one after the other (`bench/sweep.py`). Each
    process is a `run_sweep`, so killing this loses at most the runs in flight, which resume.
    """
    jobs = [(grid, str(results)) for grid, results in jobs]
    if parallel is None:
        parallel = len(jobs) if (os.cpu_count() or 1) >= 2 and all(g.preset != "full" for g, _ in jobs) else 1
    if parallel < 1:
        raise InputError(f"{{arg}} must be >= 1, got {parallel}", arg="parallel")
    # Only sweeps with runs left to train are worth a process of their own (a rebuild finds
    # every run recorded); opening the stores here also reports a wrong directory at once.
    retry = bool(kwargs.get("retry_failed", False))
    pending = [bool(_todo(store, ids, retry)) for store, ids in (open_store(grid, results) for grid, results in jobs)]
    if parallel == 1 or sum(pending) < 2:
        return [_timed_sweep(grid, results, kwargs) for grid, results in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: a forked child would inherit this process's JAX runtime and its threads
    with ProcessPoolExecutor(max_workers=min(parallel, len(jobs)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_timed_sweep, grid, results, kwargs) for grid, results in jobs]
        return [f.result() for f in futures]


def _todo(store: Store, ids: list[str], retry_failed: bool) -> list[str]:
    """The runs of `ids` that a sweep would (re)train now, in order."""
    return [rid for rid in ids if _needs_run(store.record(rid), retry_failed)]


def _needs_run(record: dict | None, retry_failed: bool) -> bool:
    if record is None:
        return True
    status = record.get("status")
    return status == ERROR or (retry_failed and status != OK)


def _parent(store: Store, rid: str) -> str | None:
    init = store.config(rid).get("init")
    return init[1:] if isinstance(init, str) and init.startswith("@") else None


def _record_blocked(store: Store, rid: str) -> None:
    import time

    store.write_record(rid, {"run_id": rid, "config": store.config(rid), "status": ERROR,
                             "reason": f"its pretraining run {_parent(store, rid)} has no successful record",
                             "result": None, "finished": time.time()})


def status(results: str | Path) -> dict:
    """Counts and per-run states of a results directory: done, running, failed, left."""
    store = Store(results)
    manifest = store.manifest()
    states = store.status()
    counts = {k: sum(s.state == k for s in states) for k in ("done", "running", "failed", "left")}
    return {"results": str(store.root), "family": manifest.get("family"), "preset": manifest.get("preset"),
            "grid": manifest.get("grid"), "recipe_version": manifest.get("recipe_version"),
            "total": len(states), **counts, "runs": [_row(s) for s in states]}


def _row(s: RunState) -> dict:
    cfg = s.config
    row = {"run_id": s.run_id, "state": s.state, "nnz": cfg.get("nnz"), "sparsity": cfg.get("sparsity"),
           "pattern": cfg.get("pattern"), "steps": cfg.get("steps"), "seed": cfg.get("seed")}
    if s.record is not None:
        res = s.record.get("result") or {}
        row["loss"] = res.get("eval_loss")
        row["status"] = s.record.get("status")
        row["reason"] = s.record.get("reason")
    return row


# Columns taken from the engine's result, then from the config, into the tidy table's metadata.
RESULT_COLUMNS = ("steps", "dense_params", "flops_dense", "flops_sparse", "recipe_version")
CONFIG_COLUMNS = ("pattern", "method", "seed", "preset", "init", "batch_size", "dtype", "acdc_phase")


def export(results: str | Path, *, warn: Callable[[str], None] | None = None,
           grid: Grid | None = None) -> pd.DataFrame:
    """The tidy table of a results directory: `sparsity, nnz, data, loss` + metadata, one row per ok run.

    Failed runs (diverged, error) are left out with a warning naming each; runs not yet
    finished are left out with one warning counting them. Never fits a failed run. `grid`:
    only that grid's runs (a directory keeps every run ever planned in it, e.g. AC/DC runs
    of an earlier phase length).
    """
    from bigsparse_lib.train import recipe_version

    warn = warn or (lambda msg: warnings.warn(msg, stacklevel=2))
    store = Store(results)
    manifest = store.manifest()
    mine = None if grid is None else {run_id(c.to_dict(), recipe_version(grid.family)) for c in grid.runs}
    rows, failed, unfinished = [], [], 0
    floors: dict[tuple, float | None] = {}
    for s in store.status():
        if mine is not None and s.run_id not in mine:
            continue
        if s.state == "failed":
            failed.append(s)
            continue
        if s.state != "done":
            unfinished += 1
            continue
        res = s.record["result"]
        cfg = s.config
        row = {"sparsity": float(cfg.get("sparsity", 0.0)), "nnz": res["nnz"], "data": res["data"],
               "loss": res["eval_loss"], "family": manifest.get("family"), "grid": manifest.get("grid")}
        for k in RESULT_COLUMNS:
            if k in res:
                row[k] = res[k]
        for k in CONFIG_COLUMNS:
            if k in cfg and k not in row:
                row[k] = cfg[k]
        row["nnz_target"] = cfg.get("nnz")
        row["irreducible_loss"] = _irreducible(floors, manifest.get("family"), cfg)
        row["run_id"] = s.run_id
        rows.append(row)
    for s in failed:
        warn(f"left out failed run {s.run_id} ({s.record.get('status')}: {s.record.get('reason')})")
    if unfinished:
        warn(f"left out {unfinished} run(s) not finished yet; see `bigsparse sweep-status {store.root}`")
    if not rows:
        raise InputError(f"{store.root}: no finished runs to export")
    table = pd.DataFrame(rows)
    if table["irreducible_loss"].isna().all():
        table = table.drop(columns="irreducible_loss")
    return table


def _irreducible(cache: dict, family: str | None, cfg: dict) -> float | None:
    """The irreducible loss of a run's data stream, if the stream knows it (the synthetic ones do:
    `data.toy`); None for real data (C4, image folders), whose floor nobody knows."""
    source = cfg.get("data_source")
    preset = cfg.get("preset")
    if source not in (None, "synthetic") or family is None or preset is None:
        return None
    if (family, preset) not in cache:
        from bigsparse_lib import data

        try:
            stream = data.make(family, preset, seed=0, split="eval", source="synthetic")
            cache[family, preset] = getattr(stream, "irreducible_loss", None)
        except Exception:  # noqa: BLE001 -- a floor we cannot compute is simply not reported
            cache[family, preset] = None
    return cache[family, preset]
