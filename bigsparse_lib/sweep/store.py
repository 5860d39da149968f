"""The result store: a directory that a sweep fills one run at a time, and that survives being killed.

Layout (all JSON is written to a temporary file and moved into place with `os.replace`,
so a reader never sees half a file, whatever kills the writer):

    DIR/sweep.json               what the directory holds: family, preset, grid, recipe version, run ids
    DIR/runs/<id>/config.json    the run's TrainConfig (`to_dict()`), written when the sweep is planned
    DIR/runs/<id>/running.json   host, pid, start time: present while a worker trains the run
    DIR/runs/<id>/train/         the engine's own directory (orbax checkpoints, result.json): resume point
    DIR/runs/<id>/record.json    the outcome, written once at the end: "ok", "diverged" or "error"

A run's id is a hash of its full config and its family's `train.recipe_version`, so the same grid point
always lands in the same folder, and a changed recipe never reuses an old number. A run
that is recorded is never trained again; a run that was killed half-way resumes from its
checkpoint. A directory planned for another family, preset, grid or recipe is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from bigsparse_lib.errors import InputError

MANIFEST = "sweep.json"
STORE_FORMAT = 1
OK, DIVERGED, ERROR = "ok", "diverged", "error"  # record statuses; the last two are "failed"


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write: temp file in the same folder, fsync, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def _read(path: Path, what: str, fix: str) -> Any:
    """A store file's JSON, or InputError naming the file, what it is, what is wrong and what to do."""
    try:
        return read_json(path)
    except FileNotFoundError:
        raise InputError(f"{path}: missing ({what}); {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: unreadable {what} ({e}); {fix}") from None


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def run_id(config: Mapping[str, Any], recipe_version: str) -> str:
    """Key of a run: sha256 of its config dict (stable key order) and the recipe version, 16 hex digits."""
    blob = json.dumps({"config": config, "recipe_version": recipe_version}, sort_keys=True,
                      separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class RunState:
    """What `Store.status()` reports for one run."""

    run_id: str
    state: str  # "done", "failed", "running", "left"
    config: dict
    record: dict | None = None
    running: dict | None = None


class Store:
    """A results directory. `Store.open(path, identity)` creates or checks it; `Store(path)` just reads it."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # ---- the manifest: what this directory is for -------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def manifest(self) -> dict:
        if not self.manifest_path.is_file():
            raise InputError(f"{self.root}: not a sweep results directory (no {MANIFEST})")
        fix = "it lists the directory's runs; restore it from a backup, or start a new --results directory"
        m = _read(self.manifest_path, "sweep manifest", fix)
        if not isinstance(m, dict):
            raise InputError(f"{self.manifest_path}: expected a JSON object (the sweep manifest); {fix}")
        runs = m.get("runs", [])
        if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
            raise InputError(f"{self.manifest_path}: key 'runs' must be a list of run ids; {fix}")
        return m

    @classmethod
    def open(cls, root: str | os.PathLike, identity: Mapping[str, Any]) -> "Store":
        """Create the directory for `identity` (family, preset, grid, recipe_version), or check it matches.

        A directory written by an incompatible sweep raises InputError naming the field
        that differs, so results of different recipes are never mixed.
        """
        store = cls(root)
        if store.root.exists() and not store.root.is_dir():
            raise InputError(f"{store.root} exists and is not a directory", arg="results")
        if store.manifest_path.is_file():
            old = store.manifest()
            if old.get("format") != STORE_FORMAT:
                raise InputError(f"{store.root}: results written by store format {old.get('format')!r}; "
                                 f"this version reads format {STORE_FORMAT}")
            for key, value in identity.items():
                if old.get(key) != value:
                    raise InputError(
                        f"{store.root} holds a sweep with {key}={old.get(key)!r}, not {value!r}; "
                        f"use another --results directory (results of different sweeps are never mixed)")
        elif store.root.is_dir() and any(store.root.iterdir()):
            raise InputError(f"{store.root} is not empty and is not a sweep results directory", arg="results")
        else:
            write_json(store.manifest_path, {"format": STORE_FORMAT, **identity, "runs": []})
        return store

    def plan(self, configs: Iterable[Mapping[str, Any]], recipe_version: str) -> list[str]:
        """Write each run's config (once) and add the run ids to the manifest; returns the ids in order.

        The manifest keeps every run ever planned here: a sweep of another seed (the seed is part
        of a run's config, hence of its id) adds its runs beside the finished ones, and
        `status` and `export` report them all."""
        ids = []
        for cfg in configs:
            rid = run_id(cfg, recipe_version)
            path = self.run_dir(rid) / "config.json"
            if not path.is_file():
                write_json(path, {"run_id": rid, "recipe_version": recipe_version, "config": dict(cfg)})
            ids.append(rid)
        if len(set(ids)) != len(ids):
            raise ValueError("the grid holds the same run twice")
        manifest = self.manifest()
        known = list(manifest.get("runs", []))
        merged = known + [rid for rid in ids if rid not in set(known)]
        if merged != known:
            write_json(self.manifest_path, {**manifest, "runs": merged})
        return ids

    # ---- one run ----------------------------------------------------------------------------------
    def run_dir(self, rid: str) -> Path:
        return self.root / "runs" / rid

    def train_dir(self, rid: str) -> Path:
        return self.run_dir(rid) / "train"

    def config(self, rid: str) -> dict:
        path = self.run_dir(rid) / "config.json"
        replan = f"run `bigsparse sweep` with this directory's arguments to write it again"
        if not self.run_dir(rid).is_dir():
            raise InputError(f"{self.run_dir(rid)}: the directory of run {rid} (listed in {self.manifest_path}) "
                             f"is missing; {replan}")
        obj = _read(path, f"config of run {rid}", f"remove it and {replan}")
        cfg = obj.get("config") if isinstance(obj, dict) else None
        if not isinstance(cfg, dict):
            raise InputError(f"{path}: expected a JSON object with a 'config' object; remove it and {replan}")
        for key in ("sparsity", "nnz", "steps", "seed"):
            if cfg.get(key) is not None and not _number(cfg[key]):
                raise InputError(f"{path}: key 'config.{key}' must be a number, got {json.dumps(cfg[key])}; "
                                 f"remove it and {replan}")
        return cfg

    def record(self, rid: str) -> dict | None:
        """The run's outcome, or None if it has none yet; a record that is not a valid outcome is an InputError.

        A valid record: an object with "status" "ok" (and a "result" object with numbers
        nnz, data, eval_loss), "diverged" or "error".
        """
        path = self.run_dir(rid) / "record.json"
        if not path.is_file():
            return None
        retrain = "remove it to train the run again"
        rec = _read(path, f"record of run {rid}", retrain)
        if not isinstance(rec, dict):
            raise InputError(f"{path}: expected a JSON object (the run's record); {retrain}")
        status = rec.get("status")
        if status not in (OK, DIVERGED, ERROR):
            raise InputError(f"{path}: key 'status' is {json.dumps(status)}, not one of "
                             f"{OK!r}, {DIVERGED!r}, {ERROR!r}; {retrain}")
        if status == OK:
            res = rec.get("result")
            if not isinstance(res, dict):
                raise InputError(f"{path}: status 'ok' but no 'result' object; {retrain}")
            for key in ("nnz", "data", "eval_loss"):
                if not _number(res.get(key)):
                    raise InputError(f"{path}: key 'result.{key}' must be a number, got "
                                     f"{json.dumps(res.get(key))}; {retrain}")
        return rec

    def write_record(self, rid: str, record: Mapping[str, Any]) -> None:
        write_json(self.run_dir(rid) / "record.json", dict(record))

    def mark_running(self, rid: str) -> None:
        write_json(self.run_dir(rid) / "running.json",
                   {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()})

    def clear_running(self, rid: str) -> None:
        try:
            os.unlink(self.run_dir(rid) / "running.json")
        except FileNotFoundError:
            pass

    def running(self, rid: str) -> dict | None:
        """The running marker if its worker still lives (same host: pid checked; other hosts: trusted)."""
        path = self.run_dir(rid) / "running.json"
        fix = "remove it if no worker is training this run"
        try:
            info = read_json(path)
        except FileNotFoundError:  # no worker (or it just finished)
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: unreadable running marker of run {rid} ({e}); {fix}") from None
        pid = info.get("pid") if isinstance(info, dict) else None
        if not isinstance(info.get("host") if isinstance(info, dict) else None, str) or not (
                isinstance(pid, int) and not isinstance(pid, bool) and pid > 0):
            raise InputError(f"{path}: expected a JSON object with 'host' (text) and 'pid' (positive integer); {fix}")
        if info["host"] == socket.gethostname() and not _pid_alive(info["pid"]):
            return None  # killed: the run is left (it resumes from its checkpoint)
        return info

    # ---- the whole sweep --------------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        return list(self.manifest().get("runs", []))

    def status(self) -> list[RunState]:
        out = []
        for rid in self.run_ids():
            rec = self.record(rid)
            if rec is not None:
                state = "done" if rec.get("status") == OK else "failed"
                out.append(RunState(rid, state, self.config(rid), record=rec))
                continue
            info = self.running(rid)
            out.append(RunState(rid, "running" if info else "left", self.config(rid), running=info))
        return out


class SweepLock:
    """One sweep process per results directory: a lock file naming the live owner (host, pid).

    A lock left by a killed sweep on this host is taken over; a live one is refused.
    """

    def __init__(self, root: Path):
        self.path = Path(root) / "sweep.lock"

    def __enter__(self):
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    owner = read_json(self.path)
                except (FileNotFoundError, json.JSONDecodeError):
                    owner = {}
                same_host = owner.get("host") == me["host"]
                if owner and (not same_host or _pid_alive(int(owner.get("pid", -1)))):
                    where = "" if same_host else f" on {owner.get('host')}"
                    raise InputError(f"{self.path.parent} is in use by another sweep (pid {owner.get('pid')}"
                                     f"{where}); remove {self.path} if that sweep is gone")
                try:
                    os.unlink(self.path)  # stale: its owner was killed
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return self
        raise InputError(f"could not lock {self.path}")

    def __exit__(self, *exc):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        return False
