"""The sweep grids: Table 1 (main), the §4.1 n:m subset, and the §4.2 pretrained-pruning grid.

A grid is a plain value: a frozen `Grid` holding a tuple of `train.TrainConfig`, one per
run. The `full` preset is the paper's; `toy` and `smoke` keep the same structure (sizes in
2x/4x steps, several lengths, the same sparsities) at CPU sizes.

Sizes are N, the non-zeros of the sparsified backbone layers; the engine picks the dense
width that holds N / (1 - S) weights (`models.config_for_nnz`). The full grids are written
in the released data's nominal N = BASE * scale * (1 - S), BASE = n_blocks * 12 * 768^2
(data README), and converted to our exact count by `to_exact` (x1 for ViT, x7/6 for T5),
so that each run trains the width the paper trained. toy/smoke sizes are exact counts.

Table 1 versus the released data. Table 1 lists ViT sparsities {0, 0.5, 0.75, 0.875} at
7 sizes and 4 lengths, 112 runs. The released ViT runs are also 112, but their (size, S)
pairs differ: S = 0.875 exists only at the 5 smallest sizes (0.66M-10.6M), and S = 0.9375
runs fill the two smallest sizes instead (the two dense widths 0.875 would have needed,
scale 2 and 4, were not trained). The `full` grid follows the released runs, so our own
full sweep lines up point by point with the data the paper fitted. T5's released runs are
exactly Table 1 (4 sizes x 4 sparsities x 3 lengths = 48).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

from bigsparse_lib.errors import InputError

from bigsparse_lib.vocab import FAMILIES, NM_PATTERNS, PRESETS, nm_sparsity, pattern_group
GRIDS = ("main", "nm", "pretrained")

# Backbone linear weights of the paper's base models (data README): 12 ViT-B blocks, 12+12 t5-base blocks.
BASE_NNZ = {"vit": 12 * (12 * 768**2), "t5": 24 * (12 * 768**2)}
PRETRAIN_FRACTION = 0.056  # §4.2: pruning runs for 5.6% of the pretraining budget
PRETRAINED_SPARSITIES = (0.5, 0.75, 0.875)


@dataclass(frozen=True)
class MainSpec:
    """One family's main grid at one preset: sizes N_k, lengths, and which (size, S) pairs exist."""

    sizes: tuple[int, ...]  # N (non-zeros), ascending
    steps: tuple[int, ...]  # training lengths, ascending
    sparsities: tuple[float, ...]
    # sparsity -> indices of the sizes it is run at; None = every size at every sparsity
    pairs: tuple[tuple[float, tuple[int, ...]], ...] | None = None
    paper_units: bool = False  # sizes in the released data's nominal N (see `to_exact`)
    # extra seeds (offsets added to the sweep's seed) run at these size indices, every S and
    # length: the run-to-run noise the chapters compare with the effect of size (issue 11)
    extra_seeds: tuple[int, ...] = ()
    seed_sizes: tuple[int, ...] = ()
    # Run (N, S) only where its dense width N / (1 - S) is at most `widest` x the largest N
    # (None: no cap). A sparse run costs its dense width's FLOPs (masks, not sparse kernels), so
    # the high-S runs of the largest sizes are the costliest of a grid; the paper's released ViT
    # grid leaves out the same corner (S = 0.875 only at its 5 smallest sizes).
    widest: float | None = None

    def points(self) -> list[tuple[int, float]]:
        """(N, S) pairs in a stable order: by sparsity, then size."""
        allowed = dict(self.pairs) if self.pairs is not None else None
        cap = None if self.widest is None else self.widest * max(self.sizes) * (1 + 1e-9)
        out = []
        for S in self.sparsities:
            ks = range(len(self.sizes)) if allowed is None else allowed.get(S, ())
            out.extend((self.sizes[k], S) for k in ks if cap is None or self.sizes[k] / (1 - S) <= cap)
        return out


@dataclass(frozen=True)
class PretrainedSpec:
    """§4.2: dense models pretrained for `pretrain_steps`, then pruned for 5.6% of that at each S."""

    dense_sizes: tuple[int, ...]  # N of the dense pretrained models (ViT S/16, M/16, B/16 at full)
    pretrain_steps: int
    sparsities: tuple[float, ...] = PRETRAINED_SPARSITIES
    scratch_multiples: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)  # from-scratch lengths, x the pruning length
    paper_units: bool = False

    @property
    def prune_steps(self) -> int:
        return max(1, round(PRETRAIN_FRACTION * self.pretrain_steps))


def to_exact(family: str, N: float) -> int:
    """Nominal N of the released data -> our exact count of the same model's sparsified weights.

    The released data count BASE * scale with BASE = n_blocks * 12 d^2. That is exact for ViT;
    for T5 it leaves out the decoder's cross-attention, so the real backbone holds 7/6 as many
    (`models.t5`). Scaling by dense_count / paper_normaliser of the full base gives the width
    the paper trained, which is what the engine's `config_for_nnz` then picks.
    """
    from bigsparse_lib import models

    fam = models.get_family(family)
    base = fam.BASES["full"]
    return int(round(N * fam.dense_count(base) / fam.paper_normaliser(base)))


def _geometric(n0: float, ratio: int, count: int) -> tuple[int, ...]:
    return tuple(int(round(n0 * ratio**k)) for k in range(count))


# ---- full: Table 1 -------------------------------------------------------------------------------
# ViT: N = BASE/128 * 2^k, k = 0..6 (0.66M ... 42.5M); 55K-440K steps (225M-1.8B images at batch 4096).
VIT_FULL = MainSpec(
    sizes=_geometric(BASE_NNZ["vit"] / 128, 2, 7),
    steps=(55_000, 110_000, 220_000, 440_000),
    sparsities=(0.0, 0.5, 0.75, 0.875, 0.9375),
    pairs=((0.0, (0, 1, 2, 3, 4, 5, 6)), (0.5, (0, 1, 2, 3, 4, 5, 6)), (0.75, (0, 1, 2, 3, 4, 5, 6)),
           (0.875, (0, 1, 2, 3, 4)), (0.9375, (0, 1))),
    paper_units=True,
)
# T5: N = BASE/128 * 4^k, k = 0..3 (1.3M ... 85M); 250K-1M steps at batch 128 x 512 tokens.
T5_FULL = MainSpec(
    sizes=_geometric(BASE_NNZ["t5"] / 128, 4, 4),
    steps=(250_000, 500_000, 1_000_000),
    sparsities=(0.0, 0.5, 0.75, 0.875),
    paper_units=True,
)

# ---- toy and smoke: the same structure at CPU sizes -----------------------------------------------
# Sizes are non-zeros of the tiny presets' backbones (models.BASES["toy"/"smoke"]). Toy grids
# (issue 11): 4 sizes N0..8 N0 and 3 lengths in 2x steps, S in {0, .5, .75, .875}, a second seed at
# the two smallest sizes, and dense widths of at most 2x the largest size (`widest`): every size
# runs at S = 0 and 0.5, S = 0.75 at the 3 smallest, S = 0.875 at the 2 smallest. That is 13 + 8
# (N, S) points, 63 runs per family on 5 dense widths N0 ... 16 N0. The full square (72 runs on 7
# widths) took 43 min for T5 alone on 2 cores (BENCHMARKS.md); its two widest widths (448K, 896K
# for T5) were 31% of that time and, re-scored without them, every claim of issue 11 §3 measured
# the same (monotone, fit, held-out size, gains, seed 1). Batches: train.RECIPES' toy recipe.
VIT_TOY = MainSpec(sizes=_geometric(6_000, 2, 4), steps=(250, 500, 1000), sparsities=(0.0, 0.5, 0.75, 0.875),
                   extra_seeds=(1,), seed_sizes=(0, 1), widest=2.0)
T5_TOY = MainSpec(sizes=_geometric(14_000, 2, 4), steps=(200, 400, 800), sparsities=(0.0, 0.5, 0.75, 0.875),
                  extra_seeds=(1,), seed_sizes=(0, 1), widest=2.0)
VIT_SMOKE = MainSpec(sizes=_geometric(3_000, 2, 2), steps=(8, 16), sparsities=(0.0, 0.5))
T5_SMOKE = MainSpec(sizes=_geometric(3_000, 4, 2), steps=(8, 16), sparsities=(0.0, 0.5))

MAIN = {
    ("vit", "full"): VIT_FULL, ("t5", "full"): T5_FULL,
    ("vit", "toy"): VIT_TOY, ("t5", "toy"): T5_TOY,
    ("vit", "smoke"): VIT_SMOKE, ("t5", "smoke"): T5_SMOKE,
}

# §4.2 (the paper: ViT only; the T5 entries are our analogue). ViT S/16, M/16, B/16 are widths 384, 512, 768 of B/16's shape = scales 1/4, 4/9, 1 of BASE;
# 4 epochs of JFT-4B = 16B images = 3.9M steps at batch 4096.
PRETRAINED = {
    ("vit", "full"): PretrainedSpec(dense_sizes=tuple(int(round(BASE_NNZ["vit"] * (w / 768) ** 2))
                                                      for w in (384, 512, 768)),
                                    pretrain_steps=16_000_000_000 // 4096, paper_units=True),
    # T5 (ours): the three largest main-grid dense sizes, pretrained 2x the longest main run
    ("t5", "full"): PretrainedSpec(dense_sizes=T5_FULL.sizes[1:], pretrain_steps=2_000_000, paper_units=True),
    # toy: one dense model of 24K non-zeros, pretrained 1600 steps (2x the longest T5 toy main run, as T5 full),
    # so that pruning for 5.6% of it (90 steps, mask moved every step from step 0 to 75%) makes 68 mask
    # updates (issue 12: >= 50); two from-scratch lengths keep the extra runs within the book's budget
    ("vit", "toy"): PretrainedSpec(dense_sizes=(24_000,), pretrain_steps=1600, scratch_multiples=(2.0, 8.0)),
    ("t5", "toy"): PretrainedSpec(dense_sizes=(24_000,), pretrain_steps=1600, scratch_multiples=(2.0, 8.0)),
    ("vit", "smoke"): PretrainedSpec(dense_sizes=(3_000,), pretrain_steps=36, sparsities=(0.5,),
                                     scratch_multiples=(1.0, 2.0)),
    ("t5", "smoke"): PretrainedSpec(dense_sizes=(3_000,), pretrain_steps=36, sparsities=(0.5,),
                                    scratch_multiples=(1.0, 2.0)),
}


@dataclass(frozen=True)
class Grid:
    """A sweep: which family/preset/grid it is, and its runs (TrainConfigs) in execution order.

    A run whose `init` is "@<run id>" starts from that earlier run of the same grid (§4.2);
    the store resolves it to that run's folder when it trains.
    """

    family: str
    preset: str
    name: str
    runs: tuple[Any, ...]

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self):
        return iter(self.runs)

    @property
    def identity(self) -> dict:
        return {"family": self.family, "preset": self.preset, "grid": self.name}


def _check(family: str, preset: str, name: str) -> None:
    if family not in FAMILIES:
        raise InputError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}", arg="family")
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}", arg="preset")
    if name not in GRIDS:
        raise InputError(f"unknown grid {name!r}; choose from {', '.join(GRIDS)}", arg="grid")


def _config(family: str, preset: str, **fields):
    from bigsparse_lib.train import TrainConfig

    return TrainConfig(family=family, preset=preset, **fields)


def main_grid(family: str, preset: str, *, seed: int = 0, sizes: Sequence[int] | None = None,
              steps: Sequence[int] | None = None, sparsities: Sequence[float] | None = None) -> Grid:
    """Table 1 (or its toy/smoke image): every (N, S) point of the spec at every length, unstructured GMP.

    `sizes`, `steps`, `sparsities` replace the preset's (MAIN[family, preset]) to sweep a
    grid of one's own with the same structure: every pair at every length, and the extra
    seeds at the same size positions. With `sizes` or `sparsities` given, a preset's `pairs`
    (which sizes each S runs at, by position) and its width cap (`widest`) no longer apply:
    every S runs at every size.
    """
    _check(family, preset, "main")
    spec = MAIN[family, preset]
    changes = {}
    if sizes is not None:
        changes.update(sizes=_ascending("sizes", sizes, int), pairs=None)
    if steps is not None:
        changes["steps"] = _ascending("steps", steps, int)
    if sparsities is not None:
        bad = [S for S in sparsities if not 0.0 <= float(S) < 1.0]
        if bad or not sparsities:
            raise InputError(f"sparsities must be a non-empty list of values in [0, 1), got {list(sparsities)}")
        changes["sparsities"] = tuple(float(S) for S in sparsities)
        if spec.pairs is not None and sizes is None:
            changes["pairs"] = None
    if sizes is not None or sparsities is not None:  # one's own (N, S) plane: every S at every size
        changes["widest"] = None
    if changes:
        spec = dataclasses.replace(spec, **changes)
        spec = dataclasses.replace(spec, seed_sizes=tuple(k for k in spec.seed_sizes if k < len(spec.sizes)))
    size = (lambda N: to_exact(family, N)) if spec.paper_units else int
    extra = {spec.sizes[k] for k in spec.seed_sizes}
    runs = tuple(
        _config(family, preset, nnz=size(N), sparsity=S, steps=t, seed=seed + offset,
                method="gmp" if S > 0 else "none")
        for offset in (0,) + tuple(spec.extra_seeds) for t in spec.steps for N, S in spec.points()
        if offset == 0 or N in extra
    )
    return Grid(family, preset, "main", runs)


def _ascending(name: str, values: Sequence, cast) -> tuple:
    try:
        out = tuple(cast(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be positive integers, got {list(values)}") from None
    if not out or any(v < 1 for v in out) or list(out) != sorted(set(out)):
        raise InputError(f"{name} must be a non-empty list of distinct positive integers in ascending order, "
                         f"got {list(values)}")
    return out


def nm_compatible_nnz(family: str, preset: str, N: int, S: float, m: int) -> int:
    """The exact non-zero count, at S, of the n:m model (group size m) nearest to N.

    Algorithm 1 groups weights along axis 0 of each kernel, so every sparsified kernel's input
    dimension must be a multiple of m: `models.config_for_nnz(..., group=m)` picks such a model
    (the one the engine trains for a run with this pattern, `train.model_config`), and its count
    maps back to that very model.
    """
    from bigsparse_lib import models

    fam = models.get_family(family)
    return int(round(fam.dense_count(models.config_for_nnz(family, preset, N, S, group=m)) * (1 - S)))


def nm_distinct_nnz(family: str, preset: str, sizes, S: float, m: int) -> tuple[int, ...]:
    """`nm_compatible_nnz` of each size, moved up to the next n:m width where two sizes would share
    one (at the smallest CPU widths a width step of lcm(heads, m) can be as large as a 2x size step)."""
    from bigsparse_lib import models

    fam = models.get_family(family)
    base = fam.BASES[preset]
    step = math.lcm(fam.width_multiple(base), m)
    out: list[int] = []
    for N in sizes:
        n = nm_compatible_nnz(family, preset, N, S, m)
        if out and n <= out[-1]:
            width = fam.hidden_size(models.config_for_nnz(family, preset, out[-1], S, group=m)) + step
            n = int(round(fam.dense_count(fam.with_width(base, width, multiple=m)) * (1 - S)))
        out.append(n)
    return tuple(out)


# How many of a pattern's (N, steps) points run below full scale (None: all of them). Smoke keeps
# one (the smallest model at the fewest steps): each run costs seconds of compilation however short
# it is. Toy runs the paper's whole subset: every size at the fewest steps, and the smallest model at
# every length. Its longer runs share the program of their 200-step run (one group per width), and
# they give the refit the longer, less noisy runs its 200-step points lack (issue 12).
NM_POINTS = {"smoke": 1, "toy": None}


def nm_grid(family: str, preset: str, *, seed: int = 0) -> Grid:
    """§4.1: the runs with the fewest steps or the smallest model, for 2:4, 1:4, 4:8 and 2:8.

    Only the n:m runs: the dense base law they are fitted against (a_S, b_S, c_S free, the
    rest fixed) comes from the main grid. N is moved to the nearest width whose kernels
    split into groups of m (`nm_compatible_nnz`; a few percent at toy size, ~0 at full).
    """
    _check(family, preset, "nm")
    spec = MAIN[family, preset]
    size = (lambda N: to_exact(family, N)) if spec.paper_units else int
    runs = []
    for p in NM_PATTERNS:
        sizes = nm_distinct_nnz(family, preset, [size(N) for N in spec.sizes], nm_sparsity(p), pattern_group(p))
        points = [(N, spec.steps[0]) for N in sizes] + [(sizes[0], t) for t in spec.steps[1:]]
        points = points[:NM_POINTS.get(preset)]
        runs += [_config(family, preset, nnz=N, sparsity=nm_sparsity(p), pattern=p, steps=t, seed=seed, method="gmp")
                 for N, t in points]
    runs = tuple(runs)
    return Grid(family, preset, "nm", runs)


def pretrained_grid(family: str, preset: str, *, seed: int = 0) -> Grid:
    """§4.2 / Table 4: dense pretraining, pruning from it, and the from-scratch runs to compare with.

    1. one dense run of `pretrain_steps` per size;
    2. from each, a pruning run at each S for 5.6% of the pretraining length, sparsifying
       from the first step (the engine's schedule for a run with `init`);
    3. from scratch, the same (N, S) trained for 1x, 2x, 4x, 8x the pruning length, the
       usual schedule: Table 4's "data multiple" is the length at which these reach the
       pruned model's loss (by interpolation, or with the main grid's fitted law).
    """
    _check(family, preset, "pretrained")
    from bigsparse_lib.sweep.store import run_id
    from bigsparse_lib.train import recipe_version

    spec = PRETRAINED[family, preset]
    sizes = [to_exact(family, M) if spec.paper_units else int(M) for M in spec.dense_sizes]
    dense = [_config(family, preset, nnz=M, sparsity=0.0, method="none", steps=spec.pretrain_steps, seed=seed)
             for M in sizes]
    runs = list(dense)
    for M, parent in zip(sizes, dense):
        # the engine starts the ramp at once for a run with `init` (train.default_schedule)
        init = f"@{run_id(parent.to_dict(), recipe_version(family))}"
        runs += [_config(family, preset, nnz=int(round(M * (1 - S))), sparsity=S, method="gmp",
                         steps=spec.prune_steps, seed=seed, init=init)
                 for S in spec.sparsities]
    runs += [_config(family, preset, nnz=int(round(M * (1 - S))), sparsity=S, method="gmp",
                     steps=max(1, round(mult * spec.prune_steps)), seed=seed)
             for M in sizes for S in spec.sparsities for mult in spec.scratch_multiples]
    return Grid(family, preset, "pretrained", tuple(runs))


BUILDERS = {"main": main_grid, "nm": nm_grid, "pretrained": pretrained_grid}


def make_grid(family: str, preset: str, name: str = "main", *, seed: int = 0) -> Grid:
    """The grid `name` ("main", "nm", "pretrained") of `family` at `preset`; InputError on unknown names."""
    _check(family, preset, name)
    return BUILDERS[name](family, preset, seed=seed)
