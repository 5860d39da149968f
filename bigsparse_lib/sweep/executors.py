"""Where runs execute: in this process, a local process pool, Dask, or SLURM through submitit.

Every executor runs the same task, `run_one(results_dir, run_id, trainer)`, which reads the
run's config from the store, trains it in its own folder (resuming from its checkpoint),
and writes the record itself. So a result is safe on disk the moment its run ends,
whatever happens to the sweep process afterwards, and a worker that dies loses only
the run it was training (which resumes from its last checkpoint on the next attempt).

An executor's `run(tasks)` yields `(run_id, record)` pairs as runs finish, in any order.
The in-process executor can also train runs that share shapes and length as one vmapped
group (`run_group`, `sweep.group`); each run of a group still writes its own record.
"""
from __future__ import annotations

import importlib
import os
import shutil
import socket
import time
import traceback
from pathlib import Path
from typing import Callable, Iterator, Sequence

from bigsparse_lib.errors import InputError
from bigsparse_lib.sweep.store import DIVERGED, ERROR, OK, Store

DEFAULT_TRAINER = "bigsparse_lib.train:train"
MAX_WORKER_DEATHS = 3  # a run whose worker dies this often is recorded as failed, not retried forever


def resolve_trainer(spec: str | Callable) -> Callable:
    """'module:function' -> the function (a string travels to any worker; a function may not pickle)."""
    if callable(spec):
        return spec
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise InputError(f"trainer {spec!r} cannot be imported: {e}") from None


def resolve_init(store: Store, config: dict) -> dict:
    """A config whose `init` is '@<run id>' starts from that run's trained folder (§4.2)."""
    init = config.get("init")
    if isinstance(init, str) and init.startswith("@"):
        return {**config, "init": str(store.train_dir(init[1:]).resolve())}
    return config


def run_one(results_dir: str, rid: str, trainer: str | Callable = DEFAULT_TRAINER) -> dict:
    """Train one run of the store and record its outcome; returns the record.

    Status "ok" with the engine's result; "diverged" when the engine raises `Diverged`
    (NaN/inf loss: never fitted); "error" with the exception for any other failure. Which
    runs to (re)try is the caller's choice (`run_sweep`); a run recorded "ok" is never redone.
    """
    from bigsparse_lib import train as engine

    store = Store(results_dir)
    done = store.record(rid)
    if done is not None and done.get("status") == OK:
        return done  # another worker finished it (e.g. dask re-ran a task whose worker vanished late)
    cfg = store.config(rid)
    store.mark_running(rid)
    start = time.time()
    try:
        config = engine.TrainConfig.from_dict(resolve_init(store, cfg))
        result = resolve_trainer(trainer)(config, str(store.train_dir(rid)), progress=False)
        if not isinstance(result, dict) or result.get("status") != OK:
            got = result.get("status") if isinstance(result, dict) else type(result).__name__
            raise RuntimeError(f"the engine returned status {got!r}, not 'ok'")
        outcome = result
    except engine.Diverged as e:
        outcome = {"status": DIVERGED, "reason": str(e) or "loss became NaN/inf"}
    except Exception as e:  # noqa: BLE001 -- any failure of one run is recorded, the sweep goes on
        outcome = {"status": ERROR, "reason": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=-3)}
    return _write_outcome(store, rid, outcome, start)


def _write_outcome(store: Store, rid: str, outcome: dict, start: float, **extra) -> dict:
    """Record a run's outcome: the engine's result (status ok), or status diverged/error with a reason."""
    record = {"run_id": rid, "config": store.config(rid), "worker": f"{socket.gethostname()}:{os.getpid()}",
              **extra}
    if outcome.get("status") == OK:
        record.update(status=OK, reason=None, result=outcome)
    else:
        record.update(status=outcome["status"], reason=outcome.get("reason"), result=None)
        if "traceback" in outcome:
            record["traceback"] = outcome["traceback"]
    record["elapsed_s"] = time.time() - start
    record["finished"] = time.time()
    store.write_record(rid, record)
    store.clear_running(rid)
    return record


def run_group(results_dir: str, rids: Sequence[str]) -> Iterator[tuple[str, dict]]:
    """Train runs of the store as one compiled program (`sweep.group`) and record each as it ends;
    yields (rid, record).

    A run's record is written the moment its lane finishes it, so a sweep killed half-way through
    a group keeps every run the group finished. If the group as a whole fails (an exception, not a
    diverged run), each of its unfinished runs is recorded as an error with the cause, and the
    exception is logged on stderr: a bug in the grouped path surfaces instead of being hidden by a
    quiet retry one run at a time (the next `sweep` retries the failed runs).
    """
    import sys

    from bigsparse_lib import train as engine
    from bigsparse_lib.sweep import group

    store = Store(results_dir)
    rids = [rid for rid in rids if (store.record(rid) or {}).get("status") != OK]
    for rid in rids:
        store.mark_running(rid)
    start = time.time()
    written: dict[int, dict] = {}

    def record(i: int, outcome: dict) -> None:
        if outcome.get("status") not in (OK, DIVERGED):
            return  # "stopped": not an outcome
        written[i] = _write_outcome(store, rids[i], outcome, start, group=len(rids))

    try:
        configs = [engine.TrainConfig.from_dict(resolve_init(store, store.config(rid))) for rid in rids]
        group.train_group(configs, [store.train_dir(rid) for rid in rids], on_result=record)
    except Exception as e:  # noqa: BLE001 -- recorded per run, with the cause
        reason = f"{type(e).__name__} in a group of {len(rids)} runs: {e}"
        print(f"bigsparse: {reason}", file=sys.stderr)
        trace = traceback.format_exc(limit=-3)
        for i, rid in enumerate(rids):
            if i not in written:
                written[i] = _write_outcome(store, rid, {"status": ERROR, "reason": reason, "traceback": trace},
                                            start, group=len(rids))
    for i, rid in enumerate(rids):
        yield rid, written[i]


def _lost(store: Store, rid: str, why: str) -> dict:
    """Record a run whose worker vanished (the task never got to write its own record)."""
    record = {"run_id": rid, "config": store.config(rid), "status": ERROR, "reason": why, "result": None,
              "finished": time.time()}
    store.write_record(rid, record)
    store.clear_running(rid)
    return record


# Groups a grouped in-process sweep trains at once unless `workers` says otherwise. One toy group
# took 8.5 s a block on 2 cores and 10.7 s pinned to one, which promised ~1.6x from two groups side
# by side. End to end it is much less: the T5 toy main grid's two smallest widths (18 runs, 8,400
# run-steps, cold compilation cache) took 419.5 s / 420.7 s one group at a time and 387.9 s /
# 367.4 s two at a time, 1.08x and 1.15x in two measurements (`bench/side_by_side.py`): two
# programs contend for the same two cores, compiles included. The default stays one, the path
# every test and chapter exercises; `--workers 2` is there for whoever wants the ~10%.
GROUP_WORKERS = 1


class LocalExecutor:
    """In this process (the default; easy to debug), one run or one group of runs after another.

    `group=True` trains runs that share shapes and length as one vmapped program
    (`sweep.group`): at CPU scale, where compiling dominates a short run, that is faster.
    Only the engine's own trainer groups; any other trainer runs one run at a time.
    With `group=True` and `workers` > 1, that many groups train at once, each in a thread of
    this process (`_concurrently`); on 2 cores that gains only 8-15% (GROUP_WORKERS).
    """

    name = "local"

    def __init__(self, workers: int = GROUP_WORKERS, group: bool = False, **_):
        self.workers = max(1, int(workers))
        self.group = bool(group)

    def run(self, store: Store, tasks: Sequence[str], trainer) -> Iterator[tuple[str, dict]]:
        if not (self.group and trainer == DEFAULT_TRAINER):
            for rid in tasks:
                yield rid, run_one(str(store.root), rid, trainer)
            return
        from bigsparse_lib import train as engine
        from bigsparse_lib.sweep import group

        configs = [engine.TrainConfig.from_dict(resolve_init(store, store.config(rid))) for rid in tasks]
        groups = [[tasks[i] for i in members]
                  for members in group.plan(configs, [store.train_dir(rid) for rid in tasks])]
        if self.workers == 1:
            for rids in groups:
                yield from _group_or_run(str(store.root), rids, trainer)
            return
        # the costliest groups first, so that the last group to finish is a cheap one
        cost = {rid: group.cost(c) for rid, c in zip(tasks, configs)}
        groups.sort(key=lambda rids: -sum(cost[rid] for rid in rids))
        yield from _concurrently(store, groups, trainer, self.workers)


def _group_or_run(results_dir: str, rids: Sequence[str], trainer) -> list[tuple[str, dict]]:
    """One group of the store's runs (`run_group`), or one run alone (`run_one`); (rid, record) pairs."""
    if len(rids) == 1:
        return [(rids[0], run_one(results_dir, rids[0], trainer))]
    return list(run_group(results_dir, rids))


def _concurrently(store: Store, groups: Sequence[Sequence[str]], trainer, workers: int
                  ) -> Iterator[tuple[str, dict]]:
    """Train `groups` in up to `workers` threads at once; yield (rid, record) as each group ends.

    A signal (SIGINT, SIGTERM) reaches the main thread only. Here it asks every group in flight to
    checkpoint and stop (`train.STOP_REQUESTS`), starts no further group, waits for the groups in
    flight, and raises `train.Interrupted`: the same command resumes every run from its checkpoint.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from bigsparse_lib import train as engine

    engine.STOP_REQUESTS.clear()
    handlers = engine._catch_signals(engine.STOP_REQUESTS)  # the engine's own handler, noting into the shared list
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bigsparse-group")
    futures = [pool.submit(_group_or_run, str(store.root), rids, trainer) for rids in groups]
    interrupted: BaseException | None = None
    failure: BaseException | None = None
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            if engine.STOP_REQUESTS:  # groups not yet started never start
                pending = {f for f in pending if not f.cancel()}
            for f in done:
                if f.cancelled():
                    continue
                try:
                    outcomes = f.result()
                except engine.Interrupted as e:
                    interrupted = interrupted or e
                    continue
                except BaseException as e:  # noqa: BLE001 -- e.g. KeyboardInterrupt inside a group: stop the others too
                    failure = failure or e
                    engine.STOP_REQUESTS.append(type(e).__name__)
                    continue
                yield from outcomes
        if failure is not None:
            raise failure
        if engine.STOP_REQUESTS:
            raise interrupted or engine.Interrupted(f"{engine.STOP_REQUESTS[0]}: stopped before training more runs; "
                                                    "run the same command again to resume")
    finally:
        if any(not f.done() for f in futures):  # left early (the caller stopped iterating): stop the groups in flight
            engine.STOP_REQUESTS.append("stopped")
        pool.shutdown(wait=True, cancel_futures=True)
        engine._restore_signals(handlers)
        engine.STOP_REQUESTS.clear()


def _orphan_guard(poll_s: float = 1.0) -> None:
    """In a worker process: exit when the sweep process that started it is gone (e.g. SIGKILLed),
    so that a restarted sweep never finds an orphan still training the same run."""
    import threading

    parent = os.getppid()

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="orphan-guard").start()


def _worker_main(results_dir: str, rid: str, trainer) -> None:
    _orphan_guard()
    run_one(results_dir, rid, trainer)


class ProcessExecutor:
    """Up to `workers` local processes at once, one process per run (spawned: JAX is not fork-safe).

    One process per run, rather than a pool, means a worker that dies (killed, out of memory)
    takes only its own run with it: the run is started again (resuming from its checkpoint),
    and recorded as failed after MAX_WORKER_DEATHS deaths. Starting a process costs a second
    or two (importing JAX), small beside a run. `trainer` must be importable ("module:function").
    """

    name = "process"

    def __init__(self, workers: int = 2, **_):
        self.workers = max(1, int(workers))

    def run(self, store: Store, tasks: Sequence[str], trainer) -> Iterator[tuple[str, dict]]:
        import multiprocessing as mp
        from multiprocessing.connection import wait as wait_any

        ctx = mp.get_context("spawn")
        queue = list(tasks)
        deaths = {rid: 0 for rid in queue}
        running: dict[str, tuple] = {}
        try:
            while queue or running:
                while queue and len(running) < self.workers:
                    rid = queue.pop(0)
                    proc = ctx.Process(target=_worker_main, args=(str(store.root), rid, trainer),
                                       name=f"bigsparse-run-{rid}")
                    started = time.time()
                    proc.start()
                    running[rid] = (proc, started)
                wait_any([proc.sentinel for proc, _ in running.values()], timeout=5.0)
                for rid, (proc, started) in list(running.items()):
                    if proc.exitcode is None:
                        continue
                    proc.join()
                    del running[rid]
                    record = store.record(rid)
                    if record is not None and record.get("finished", 0) >= started:
                        yield rid, record
                        continue
                    deaths[rid] += 1
                    store.clear_running(rid)
                    if deaths[rid] >= MAX_WORKER_DEATHS:
                        yield rid, _lost(store, rid, f"its worker process died {deaths[rid]} times "
                                                     f"(last exit code {proc.exitcode})")
                    else:
                        queue.insert(0, rid)  # again, at once: it resumes from its checkpoint
        finally:
            for proc, _ in running.values():  # interrupted: stop our workers too
                proc.terminate()
                proc.join(10)


class DaskExecutor:
    """Dask distributed: a scheduler at `address`, or a LocalCluster of `workers` processes.

    Dask reschedules the task of a worker that dies; after its `allowed-failures` it gives
    up with KilledWorker, and the run is recorded as failed.
    """

    name = "dask"

    def __init__(self, workers: int = 2, address: str | None = None, processes: bool = True, **_):
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise InputError("{arg} dask needs Dask distributed: pip install 'dask[distributed]'", arg="executor") from None
        self.workers = max(1, int(workers))
        self.address = address
        self.processes = processes

    def run(self, store: Store, tasks: Sequence[str], trainer) -> Iterator[tuple[str, dict]]:
        from distributed import Client, LocalCluster, as_completed

        cluster = None
        if self.address:
            client = Client(self.address)
        else:
            # loopback only; threads (processes=False) talk in-process and take no host
            where = {"host": "127.0.0.1"} if self.processes else {}
            cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=self.processes,
                                   dashboard_address=None, **where)
            client = Client(cluster)
        try:
            futures = {}
            for rid in tasks:
                f = client.submit(run_one, str(store.root), rid, trainer, pure=False, key=f"run-{rid}")
                futures[f] = rid
            for f in as_completed(list(futures)):
                rid = futures[f]
                try:
                    yield rid, f.result()
                except Exception as e:  # KilledWorker, lost scheduler, ...
                    yield rid, _lost(store, rid, f"dask: {type(e).__name__}: {e}")
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


class SlurmExecutor:
    """SLURM through submitit: one job per run, in a job array (`cluster="local"` runs them as local jobs).

    `timeout_min`, `partition`, `gpus_per_node`, `cpus_per_task` go to submitit. The
    results directory must be on a file system the compute nodes share.
    """

    name = "slurm"

    def __init__(self, workers: int = 8, cluster: str = "slurm", partition: str | None = None,
                 timeout_min: int = 24 * 60, gpus_per_node: int | None = None, cpus_per_task: int | None = None,
                 **_):
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise InputError("{arg} slurm needs submitit: pip install submitit", arg="executor") from None
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise InputError("{arg} slurm: no SLURM on this machine (sbatch not found); "
                             "use --slurm-cluster local to run the jobs locally through submitit", arg="executor")
        self.workers = max(1, int(workers))
        self.cluster = cluster
        self.params = {"timeout_min": int(timeout_min)}
        if partition:
            self.params["slurm_partition"] = partition
        if gpus_per_node is not None:
            self.params["gpus_per_node"] = int(gpus_per_node)
        if cpus_per_task is not None:
            self.params["cpus_per_task"] = int(cpus_per_task)

    def run(self, store: Store, tasks: Sequence[str], trainer) -> Iterator[tuple[str, dict]]:
        import submitit
        from submitit.helpers import as_completed

        folder = Path(store.root) / "slurm" / "%j"
        executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        params = dict(self.params)
        if self.cluster == "slurm":
            params["slurm_array_parallelism"] = self.workers
        elif self.cluster == "local":
            params.pop("slurm_partition", None)
        executor.update_parameters(name="bigsparse-sweep", **params)
        with executor.batch():
            jobs = [executor.submit(run_one, str(store.root), rid, trainer) for rid in tasks]
        by_job = {job.job_id: rid for job, rid in zip(jobs, tasks)}
        for job in as_completed(jobs, poll_frequency=1.0):
            rid = by_job[job.job_id]
            try:
                yield rid, job.result()
            except Exception as e:  # UncompletedJobError (killed, timed out), FailedJobError
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                yield rid, _lost(store, rid, f"slurm job {job.job_id}: {type(e).__name__}: {msg}")


EXECUTORS = {"local": LocalExecutor, "process": ProcessExecutor, "dask": DaskExecutor, "slurm": SlurmExecutor}


def make_executor(name: str, workers: int | None = None, **options):
    """The executor called `name`; InputError for an unknown name or one whose package is missing."""
    if name not in EXECUTORS:
        raise InputError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
    kwargs = dict(options)
    if workers is not None:
        kwargs["workers"] = workers
    return EXECUTORS[name](**kwargs)
