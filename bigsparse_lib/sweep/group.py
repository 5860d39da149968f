"""Grouping: which runs of a sweep train together, and how they pack into lanes.

At CPU scale a short run's time used to go to compilation and to the host, not to steps.
A Table 1 grid holds many runs on each dense width: (N, S) pairs with the same N / (1 - S)
(6K at 50%, 3K at 75% and 12K dense all train a 12K-weight model), every length, every seed.
Such runs differ only in data the engine feeds its compiled program (`train.LaneInputs`:
seed, length and pruning timetable, whether it is AC/DC, per-leaf targets, the n of an n:m
pattern, whose m alone shapes the program), so `train.train_runs` trains them all
with ONE compilation: a `jax.vmap` over lanes of a `lax.scan` over steps.

A lane trains its runs one after another, so runs of different lengths pack into lanes of
about equal work (`lanes`): with lengths L, 2L, 4L the 4L runs fill a lane each, the 2L runs
two to a lane, and so on, and no lane idles while others train.

`plan` splits a sweep's runs into such groups (by `train.group_signature`); `lanes` packs
one group. Each run keeps its own folder with the single-run layout (config, log, orbax
checkpoints, result.json), so a run trained in a group resumes alone and the other way round.
Numbers agree with training each run alone to float32 rounding, not bit for bit (batched
matrix products may sum in another order).
"""
from __future__ import annotations

import heapq
from pathlib import Path
from typing import Sequence

from bigsparse_lib import train

MAX_LANES = 16  # lanes per program: memory grows with the lanes, compile time does not


def plan(configs: Sequence[train.TrainConfig], out_dirs: Sequence[str | Path] | None = None,
         max_lanes: int = MAX_LANES) -> list[list[int]]:
    """Indices of `configs` in groups (lists of 1 or more) that share a `train.group_signature`,
    in first-appearance order. A run that never groups (signature None, or one that cannot even
    be planned: it then fails alone, with its reason) is a group of its own. `out_dirs` is
    accepted for symmetry with `train.train_runs`; where a run stands does not matter (lanes
    resume each run from its own checkpoint)."""
    groups: dict[str, list[int]] = {}
    order: list[list[int]] = []
    for i, c in enumerate(configs):
        try:
            sig = train.group_signature(c)
        except Exception:  # noqa: BLE001 -- reported when the run itself is trained
            sig = None
        if sig is None:
            order.append([i])
        elif sig in groups:
            groups[sig].append(i)
        else:
            groups[sig] = [i]
            order.append(groups[sig])
    return order


def lanes(work: Sequence[int], max_lanes: int = MAX_LANES) -> list[list[int]]:
    """Pack runs with `work[i]` steps left into lanes (lists of indices) of about equal total.

    As many lanes as the longest run allows without idling (total work / longest run, rounded
    up), at most `max_lanes`; longest runs first, each into the lane with the least work so far
    (LPT scheduling, within 4/3 of the best packing).
    """
    if not work:
        return []
    longest = max(max(work), 1)
    count = max(1, min(max_lanes, len(work), -(-sum(work) // longest)))
    heap = [(0, lane) for lane in range(count)]
    out: list[list[int]] = [[] for _ in range(count)]
    for i in sorted(range(len(work)), key=lambda i: (-work[i], i)):
        load, lane = heapq.heappop(heap)
        out[lane].append(i)
        heapq.heappush(heap, (load + work[i], lane))
    return [lane for lane in out if lane]


def steps_left(config: train.TrainConfig, out_dir: str | Path) -> int:
    """Steps a run still has to train: its length minus its latest checkpoint's step."""
    ckpt = Path(out_dir) / train.CHECKPOINT_DIR
    done = max((int(p.name) for p in ckpt.iterdir() if p.name.isdigit()), default=0) if ckpt.is_dir() else 0
    return max(0, int(config.resolved().steps) - done)


def train_group(configs: Sequence[train.TrainConfig], out_dirs: Sequence[str | Path], *,
                progress: bool = False, on_result=None, max_lanes: int = MAX_LANES) -> list[dict]:
    """Train runs of one group as one program, packed into lanes; one result per run."""
    work = [steps_left(c, o) for c, o in zip(configs, out_dirs)]
    return train.train_runs(configs, out_dirs, lanes=lanes(work, max_lanes), progress=progress,
                            on_result=on_result)


def cost(config: train.TrainConfig) -> float:
    """A run's training cost in weight-steps: its length times its dense width's weight count,
    N / (1 - S) (a sparse run trains its dense width under masks); 1 per step if N is not given.
    Orders groups costliest first when several train at once (`executors.LocalExecutor`)."""
    c = config.resolved()
    width = 1.0 if c.nnz is None else c.nnz / (1.0 - c.sparsity)
    return float(c.steps) * width
