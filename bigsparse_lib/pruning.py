"""Sparsity as an optax transformation: gradual magnitude pruning, n:m (Alg. 1), one-shot, AC/DC.

The paper prunes with jaxpruner (App. A). As there, three things are kept apart:

* the *schedule* -- when and how sparse (`schedule.GradualSchedule`, Zhu & Gupta's cubic
  ramp from 25% to 75% of training, mask moved every 100 steps; App. A, B);
* the *score* -- weight magnitude |w| (`magnitude`);
* the *mask rule* -- unstructured top-k by count (`unstructured_mask`) or gradual n:m by
  Algorithm 1 (`nm_mask`).

`sparsify(inner, targets, total_steps, config)` wraps ANY optax optimizer. Its state holds
the masks (bool) and a step counter; on the steps the schedule names it recomputes the masks
from the current weights (inside `lax.cond`, so the compiled step is the same every step and
the top-k selection only runs on update steps). Every step it returns

    update = where(mask, inner_update, -param)

so that after `optax.apply_updates` the pruned weights are exactly 0.0 (x + (-x) == 0 in
IEEE arithmetic) and the kept ones move as the inner optimizer says.

How the optimizer learns which weights are pruned: the wrapper hands the inner optimizer
the params *with the new mask applied* (pruned entries exactly zero), so any optimizer that
reads params (the sparsity-aware Adafactor of `optim.py`, decoupled weight decay) sees
"pruned == exactly zero" on every step, including the step on which the mask moves. The
inner optimizer still gets the full gradients (as jaxpruner's default): its moment
estimates stay those of the dense problem, which matters for AC/DC's dense phases.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bigsparse_lib.errors import InputError
from bigsparse_lib.schedule import PAPER_SCHEDULE, GradualSchedule

from bigsparse_lib.vocab import METHODS, parse_pattern


# App. B: AC/DC with "a sparse and dense cycle length of 20K steps (10K each phase)" in 250K-step runs.
ACDC_PHASE_FRACTION = 10_000 / 250_000


class Clock(NamedTuple):
    """A run's pruning timetable in steps: what `PruningConfig` needs to know of a run's length.

    total: T, the run's steps; start: the first step that may prune, floor(start * T); end: the
    step of the final mask, round(end * T); every: steps between GMP mask updates, or the length
    of one AC/DC phase; t0, span: the ramp's window as fractions of training, `schedule.start` and
    `schedule.end - schedule.start` (None: the config's own schedule; the engine passes them as
    float32 data, so runs on different windows train in one program); acdc: whether the run is
    AC/DC (then `every` is its phase), as data when one GMP program also trains AC/DC runs (the
    engine's groups: Table 6's GMP and AC/DC runs on one dense width share one compilation;
    `PruningConfig.method_is_acdc`). `PruningConfig.clock(T)` computes them on the host in float64, so that a
    run's schedule is the same whether T is a Python int or, in the engine's vmapped groups,
    per-run data (a traced int32): a run's length and schedule are inputs of the compiled
    program, not constants baked into it.
    """

    total: Any
    start: Any
    end: Any
    every: Any
    t0: Any = None
    span: Any = None
    acdc: Any = None

    def as_data(self) -> "Clock":
        """The clock as the engine's per-run program inputs: steps as int32, the window as float32,
        the AC/DC flag as bool."""
        return Clock(*(np.int32(getattr(self, f)) for f in ("total", "start", "end", "every")),
                     t0=np.float32(self.t0), span=np.float32(self.span), acdc=np.bool_(bool(self.acdc)))


def _is_traced(*values) -> bool:
    return any(isinstance(v, jax.Array) for v in values)


@dataclass(frozen=True)
class PruningConfig:
    """How to sparsify (App. A, B; §4.1, §4.2).

    method:
      "gmp"     gradual magnitude pruning on `schedule` (the paper's method).
      "oneshot" prune to the target at once at fraction `schedule.start` of training
                (start=0.0: prune a pretrained checkpoint before the first step) and keep
                that mask.
      "acdc"    AC/DC (Peste et al., 2021): dense before `schedule.start`; inside
                [start, end) alternating sparse and dense phases, beginning sparse; sparse
                with a final mask from `end` on. A phase lasts `acdc_phase_steps` steps, or
                by default ACDC_PHASE_FRACTION of the run (the paper's 10K of 250K steps).
      "none"    dense training; the wrapper does nothing.
    pattern: "unstructured" or "n:m" (e.g. "2:4"): n:m groups are m consecutive weights
      along axis 0 of a kernel [in, out], the reduction dimension.
    acdc_sparsity: "fixed" -- every sparse phase is at the full target (AC/DC paper: "we
      alternately prune to maximum sparsity", and jaxpruner's bigsparse AC/DC extension);
      "schedule" -- sparse phases follow the cubic ramp instead.
    For the pretrained-checkpoint runs of §4.2 use `pretrained_schedule()` (start at 0).
    """

    method: str = "gmp"
    pattern: str = "unstructured"
    schedule: GradualSchedule = PAPER_SCHEDULE
    acdc_phase_steps: int | None = None  # None: ACDC_PHASE_FRACTION of the run (App. B: 10K of 250K)
    acdc_sparsity: str = "fixed"

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"unknown pruning method {self.method!r}; choose one of {', '.join(METHODS)}")
        parse_pattern(self.pattern)
        if not isinstance(self.schedule, GradualSchedule):
            raise InputError(f"schedule must be a GradualSchedule, got {type(self.schedule).__name__}")
        if self.acdc_phase_steps is not None and int(self.acdc_phase_steps) < 1:
            raise InputError(f"acdc_phase_steps must be >= 1, got {self.acdc_phase_steps}")
        if self.acdc_sparsity not in ("fixed", "schedule"):
            raise InputError(f"acdc_sparsity must be 'fixed' or 'schedule', got {self.acdc_sparsity!r}")

    @property
    def nm(self) -> tuple[int, int] | None:
        return parse_pattern(self.pattern)

    def phase_steps(self, total_steps: int) -> int:
        """Length of one AC/DC phase in a run of `total_steps` (App. B: 10K of 250K steps)."""
        if self.acdc_phase_steps is not None:
            return int(self.acdc_phase_steps)
        return max(1, int(round(ACDC_PHASE_FRACTION * int(total_steps))))

    def effective_schedule(self) -> GradualSchedule:
        """The schedule in force: one-shot is a ramp of zero length at `start`."""
        if self.method == "oneshot":
            return dataclasses.replace(self.schedule, end=self.schedule.start)
        return self.schedule

    def window(self, total_steps: int) -> tuple[int, int]:
        """(start_step, end_step): first step that may prune, and the step of the final mask."""
        sched = self.effective_schedule()
        return int(np.floor(sched.start * total_steps)), int(round(sched.end * total_steps))

    def clock(self, total_steps) -> Clock:
        """The run's `Clock` for `total_steps` (a Clock is passed through unchanged)."""
        if isinstance(total_steps, Clock):
            return total_steps
        total = int(total_steps)
        start, end = self.window(total)
        every = self.phase_steps(total) if self.method == "acdc" else int(self.schedule.every)
        sched = self.effective_schedule()
        return Clock(total=total, start=start, end=end, every=every, t0=sched.start, span=sched.end - sched.start,
                     acdc=self.method == "acdc")

    def method_is_acdc(self, clock: Clock):
        """Whether AC/DC's timetable applies: this config's own method, except in a GMP config
        handed a clock whose `acdc` flag is traced data (the engine's groups, where AC/DC runs
        train in the program of the GMP runs on their width): then that per-run flag."""
        if self.method == "acdc":
            return True
        if self.method == "gmp" and _is_traced(clock.acdc):
            return clock.acdc
        return False

    def update_due(self, step, total_steps):
        """True on the steps whose mask is recomputed (before that step's update is applied).

        `total_steps`: the run's length, or its `Clock` (whose fields may be traced)."""
        clock = self.clock(total_steps)
        xp = jnp if _is_traced(step, *clock) else np
        step = xp.asarray(step)
        if self.method == "none":
            return xp.zeros_like(step, dtype=bool)
        start, end, every = clock.start, clock.end, clock.every
        acdc = self.method_is_acdc(clock)
        in_window = (step >= start) & (step < end)
        acdc_due = (in_window & (((step - start) % every) == 0)) | (step == end)  # each phase's start
        gmp_due = (in_window & (step % every == 0)) | (step == end)
        if acdc is True or acdc is False:
            return acdc_due if acdc else gmp_due
        return xp.where(acdc, acdc_due, gmp_due)

    def sparsity_at_step(self, step, total_steps, S):
        """Sparsity in force at `step` (after that step's mask update) for final sparsity S.

        GMP/one-shot: `GradualSchedule.sparsity_at_step`, pinned to exactly S from the end
        step on. AC/DC: 0 in dense phases, S (or the ramp) in sparse ones. numpy or JAX.
        `total_steps`: the run's length, or its `Clock` (whose fields may be traced).
        """
        clock = self.clock(total_steps)
        total_steps = clock.total
        xp = jnp if _is_traced(step, S, *clock) else np
        step = xp.asarray(step)
        S = xp.asarray(S, dtype=xp.float32 if xp is jnp else float)
        if self.method == "none":
            return 0.0 * S * step
        start, end = clock.start, clock.end
        sched = self.effective_schedule()
        acdc = self.method_is_acdc(clock)
        if acdc is not False:
            phase = clock.every
            sparse_phase = ((step - start) // phase) % 2 == 0
            if self.acdc_sparsity == "fixed":
                level = S + 0.0 * step
            else:  # the ramp value at the start of the current sparse phase
                phase_start = start + ((step - start) // phase) * phase
                level = sched.sparsity(phase_start / total_steps, S, start=clock.t0, span=clock.span)
            in_window = (step >= start) & (step < end)
            acdc_S = xp.where(step >= end, S, xp.where(in_window & sparse_phase, level, 0.0 * S))
            if acdc is True:
                return acdc_S
        gmp_S = xp.where(step >= end, S, sched.sparsity_at_step(step, total_steps, S, every=clock.every, end_step=end,
                                                                 start=clock.t0, span=clock.span))
        return gmp_S if acdc is False else xp.where(acdc, acdc_S, gmp_S)

    def mean_density(self, total_steps: int, S) -> float:
        """Mean over the run's steps of (1 - S_t): the step-exact counterpart of
        `GradualSchedule.density_integral` (eq. 4), valid for every method incl. AC/DC."""
        steps = np.arange(int(total_steps))
        return float(np.mean(1.0 - self.sparsity_at_step(steps, int(total_steps), float(S))))


def pretrained_schedule(base: GradualSchedule = PAPER_SCHEDULE) -> GradualSchedule:
    """§4.2: "as the model is already pretrained, we start to sparsify immediately".

    The paper states only the start; we keep the base schedule's end, power and frequency.
    """
    return dataclasses.replace(base, start=0.0)


# ---------------------------------------------------------------- score and mask rules

def magnitude(w):
    """The score of gradual magnitude pruning: |w| (float32, so bf16 ties do not multiply)."""
    return jnp.abs(jnp.asarray(w)).astype(jnp.float32)


def keep_count(S, size: int):
    """k = max(1, round((1 - S) * size)) weights kept (round half to even, as Python and numpy do).

    At least one weight per tensor, as jaxpruner keeps (see `schedule`'s docstring): a tensor
    pruned to nothing would cut its layer off. A concrete S gives a Python int computed in
    float64; a traced S a JAX int32.
    """
    if isinstance(S, jax.core.Tracer):
        return jnp.maximum(1, jnp.round((1.0 - S) * size)).astype(jnp.int32)
    return max(1, int(round((1.0 - float(S)) * size))) if size > 0 else 0


def topk_mask(score, k):
    """True on the k largest scores, exactly k of them; ties go to the lower flat index.

    Scores must be >= 0 (magnitudes, +inf allowed). `k` may be traced. `topk_masks` of one
    tensor: the same function prunes in training.
    """
    return topk_masks([score], [k])[0]


def topk_masks(scores, ks):
    """`topk_mask` of each tensor in `scores` with its own k, all in one pass.

    For floats >= 0 the int32 bit pattern orders like the value, so each tensor's k-th largest
    score is found by bisection on the bit pattern: 31 counting passes, O(31 n), instead of a
    sort (XLA's CPU sort of a 2.4M-entry kernel takes seconds). The tensors are bisected
    together in one loop, so a model with dozens of pruned kernels compiles one loop, not
    dozens. Each pass counts every tensor with its own reduction: a segment sum over the
    concatenated scores is a scatter-add, which XLA's CPU backend runs element by element (it
    cost a toy T5 step more than its matrix products, and every step once vmapped over
    lanes). Deterministic on every backend; ties go to the lower flat index within each tensor.
    """
    scores = [jnp.asarray(s).astype(jnp.float32) for s in scores]
    n = len(scores)
    if n == 0:
        return []
    bits = [jax.lax.bitcast_convert_type(s.reshape(-1), jnp.int32) for s in scores]
    k = jnp.stack([jnp.asarray(x, jnp.int32) for x in ks])

    def count(threshold, strict: bool = False):  # per tensor: entries >= (or >) its threshold
        return jnp.stack([jnp.sum((b > t) if strict else (b >= t), dtype=jnp.int32)
                          for b, t in zip(bits, threshold)])

    def bisect(_, lo_hi):
        lo, hi = lo_hi  # invariant per tensor: count(bits >= lo) >= k > count(bits >= hi)
        mid = lo + (hi - lo) // 2
        enough = count(list(mid)) >= k
        return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid)

    inf_bits = 0x7F800000
    kth, _ = jax.lax.fori_loop(0, 31, bisect, (jnp.zeros(n, jnp.int32), jnp.full(n, inf_bits + 1, jnp.int32)))
    room = k - count(list(kth), strict=True)
    out = []
    for i, (b, s) in enumerate(zip(bits, scores)):
        tie = b == kth[i]
        # rank of each tie within its tensor (1, 2, ...): the first `room` ties are kept
        keep = (b > kth[i]) | (tie & (jnp.cumsum(tie.astype(jnp.int32)) <= room[i]))
        out.append(keep.reshape(s.shape))
    return out


def _nm_top(score, n, m: int):
    """True on the n largest scores of each group of m consecutive entries along axis 0
    (`n` may be traced; m sets the shapes).

    Rank within a group by pairwise comparison (m <= 8 or so: m*m compares, no sort); ties
    go to the lower index, as in a stable sort.
    """
    g = score.reshape(score.shape[0] // m, m, -1)
    a, b = g[:, :, None, :], g[:, None, :, :]  # a: entry i, b: entry j of the same group
    lower = (jnp.arange(m)[None, :] < jnp.arange(m)[:, None])[None, :, :, None]  # j < i
    rank = jnp.sum((b > a) | ((b == a) & lower), axis=2)
    return (rank < n).reshape(score.shape)


def _check_nm_leaf(shape, S, n: int, m: int, name: str = "weight"):
    if S > 1.0 - n / m + 1e-9:
        raise InputError(
            f"{name}: sparsity {S} is above {1 - n / m:g}, the most that the {n}:{m} pattern allows")
    if len(shape) < 1 or shape[0] % m:
        raise InputError(
            f"{name}: axis 0 of shape {tuple(shape)} is not divisible by m={m} for the {n}:{m} pattern")


def _check_sparsity(S, name: str = "sparsity"):
    if not isinstance(S, jax.core.Tracer) and not 0.0 <= float(S) < 1.0:
        raise InputError(f"{name} must be in [0, 1), got {float(S)}")


def unstructured_mask(w, S):
    """Unstructured magnitude mask: keeps the round((1-S)*size) largest |w| (exact count)."""
    _check_sparsity(S)
    return mask_for(w, S)  # the rule training applies (`masks_for`)


def nm_mask(w, S, n: int, m: int):
    """Gradual n:m pruning, Algorithm 1 (App. A.1).

    The n largest |w| of every group of m (along axis 0) get score +inf; then unstructured
    top-k keeps the (1 - S) fraction with the largest scores. Each group therefore always
    keeps >= n weights, and exactly n at S = 1 - n/m. Needs S <= 1 - n/m.
    """
    w = jnp.asarray(w)
    _check_sparsity(S)
    if not isinstance(S, jax.core.Tracer):
        _check_nm_leaf(w.shape, float(S), n, m)
    return mask_for(w, S, f"{n}:{m}")  # the rule training applies (`masks_for`)


def mask_for(w, S, pattern: str = "unstructured", k=None):
    """The mask rule named by `pattern`; `k` overrides the kept count (used for exact targets)."""
    return masks_for([w], [S], pattern, [k])[0]


def masks_for(ws, Ss, pattern: str = "unstructured", ks=None, n=None):
    """`mask_for` of several tensors at once (one bisection loop for all: `topk_masks`). This is
    the function the pruning wrapper calls when it moves the masks during training.

    `n`: for an n:m pattern, the n to use instead of the pattern's, possibly traced: only m
    shapes the program, so the engine trains 2:4 and 1:4 runs of one width in one compilation.
    """
    nm = parse_pattern(pattern)
    if nm is not None and n is not None:
        nm = (n, nm[1])
    scores = []
    for w in ws:
        score = magnitude(w)
        if nm is not None:
            score = jnp.where(_nm_top(score, *nm), jnp.inf, score)
        scores.append(score)
    ks = ks or [None] * len(ws)
    return topk_masks(scores, [keep_count(S, sc.size) if k is None else k for S, sc, k in zip(Ss, scores, ks)])


# ---------------------------------------------------------------- the optax wrapper

class PruningState(NamedTuple):
    """Optimizer state of `sparsify`: step counter, masks (bool; a scalar True for dense leaves)."""

    count: jax.Array
    masks: Any
    inner_state: Any


def _validate_targets(targets, pattern: str):
    parse_pattern(pattern)
    for path, S in jax.tree_util.tree_leaves_with_path(targets):
        name = path_str(path)
        try:
            S = float(S)
        except (TypeError, ValueError):
            raise InputError(f"{name}: target sparsity must be a number, got {S!r}") from None
        if not 0.0 <= S < 1.0:
            raise InputError(f"{name}: target sparsity must be in [0, 1), got {S}")


def sparsify(inner: optax.GradientTransformation, targets, total_steps: int,
             config: PruningConfig = PruningConfig()) -> optax.GradientTransformation:
    """Wrap `inner` so that weights are pruned by `config` towards per-leaf `targets`.

    `targets` is a pytree with the params' structure holding Python floats (0.0 = dense),
    e.g. `models.<family>.target_sparsities(config, S)`. The returned transformation needs
    `params` in `update`. After `optax.apply_updates` every pruned weight is exactly zero,
    and from the end step on each leaf has exactly round((1-S)*size) non-zero entries.
    """
    _validate_targets(targets, config.pattern)
    flat_targets, target_def = jax.tree_util.tree_flatten(targets)
    flat_targets = [0.0 if config.method == "none" else float(S) for S in flat_targets]
    return sparsify_leaves(inner, target_def, flat_targets, None, total_steps, config)


def final_keep(targets, params_shape) -> list:
    """Per leaf of `params_shape`: the final non-zero count round((1 - S) * size), in float64."""
    return [keep_count(S, int(np.prod(p.shape))) if float(S) > 0.0 else int(np.prod(p.shape))
            for S, p in zip(jax.tree_util.tree_leaves(targets), jax.tree_util.tree_leaves(params_shape))]


def sparsify_leaves(inner: optax.GradientTransformation, target_def, flat_targets, flat_keep,
                    total_steps, config: PruningConfig = PruningConfig(),
                    axis_name: str | None = None, n=None) -> optax.GradientTransformation:
    """`sparsify` on flat per-leaf targets, which may be traced (the engine's vmapped groups).

    A leaf whose target is a Python 0.0 is dense; any other leaf is pruned (a traced target
    of 0 keeps every weight). `flat_keep`: the final non-zero count of each leaf, computed
    in float64 outside the trace (`final_keep`); None computes it from concrete targets.
    `total_steps`: the run's length (int), or its `Clock`, whose fields may be traced: then one
    compiled program serves runs of every length.

    `axis_name`: the `jax.vmap` axis of the engine's lanes, when the update runs vmapped. Under
    vmap a `lax.cond` whose predicate differs between lanes becomes a select that computes both
    branches, so every lane would recompute its masks on every step. With the axis named, the
    masks are recomputed (for every lane, kept only where due) on the steps where any lane is
    due, and the other steps skip the top-k entirely.

    `n`: for an n:m `config.pattern`, the run's own n as data (`masks_for`); None: the pattern's.
    """
    if not isinstance(total_steps, Clock):
        total_steps = int(total_steps)
        if total_steps < 1:
            raise InputError(f"total_steps must be >= 1, got {total_steps}")
    total_steps = config.clock(total_steps)
    nm = config.nm
    concrete = lambda S: not isinstance(S, jax.Array)
    sparse = [not (concrete(S) and float(S) <= 0.0) for S in flat_targets]
    any_sparse = any(sparse)

    def leaves(params):
        flat, treedef = jax.tree_util.tree_flatten(params)
        if treedef != target_def:
            raise ValueError(f"params and targets differ in structure:\n{treedef}\nvs\n{target_def}")
        return flat, treedef

    def init_fn(params):
        flat, treedef = leaves(params)
        if nm is not None:
            paths = [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
            for name, p, S, sp in zip(paths, flat, flat_targets, sparse):
                if sp and concrete(S):
                    _check_nm_leaf(p.shape, float(S), *nm, name=name)
        masks = [jnp.ones(p.shape, bool) if sp else jnp.ones((), bool) for p, sp in zip(flat, sparse)]
        return PruningState(count=jnp.zeros([], jnp.int32), masks=treedef.unflatten(masks),
                            inner_state=inner.init(params))

    def new_masks(flat_params, step):
        keep = flat_keep or [None] * len(flat_params)
        ws, Ss, ks, where = [], [], [], []
        for j, (p, S, sp, k_end) in enumerate(zip(flat_params, flat_targets, sparse, keep)):
            if not sp:
                continue
            S32 = jnp.asarray(S, jnp.float32)
            S_t = config.sparsity_at_step(step, total_steps, S32)
            # The final count is computed once in float64 so the end state is exact, whatever
            # float32 rounding does to (1 - S_t) * size during the ramp.
            k_end = keep_count(S, p.size) if k_end is None else k_end
            ws.append(p)
            Ss.append(S_t)
            ks.append(jnp.where(S_t >= S32, k_end, keep_count(S_t, p.size)))
            where.append(j)
        out = [jnp.ones((), bool)] * len(flat_params)
        for j, m in zip(where, masks_for(ws, Ss, config.pattern, ks, n=n)):
            out[j] = m
        return out

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("pruning.sparsify needs params in update() to zero the pruned weights")
        flat_p, treedef = leaves(params)
        flat_m = treedef.flatten_up_to(state.masks)
        step = state.count
        if any_sparse:
            due = config.update_due(step, total_steps)
            if axis_name is None:
                flat_m = jax.lax.cond(due, lambda ps: new_masks(ps, step), lambda ps: list(flat_m), flat_p)
            else:  # the predicate is the same for all lanes, so the cond stays a cond under vmap
                def moved(ps):
                    return [jnp.where(due, new, old) for new, old in zip(new_masks(ps, step), flat_m)]
                flat_m = jax.lax.cond(jax.lax.psum(due.astype(jnp.int32), axis_name) > 0,
                                      moved, lambda ps: list(flat_m), flat_p)
        masked_p = [p if m.ndim == 0 else jnp.where(m, p, jnp.zeros_like(p)) for p, m in zip(flat_p, flat_m)]
        inner_updates, inner_state = inner.update(updates, state.inner_state, treedef.unflatten(masked_p))
        flat_u = treedef.flatten_up_to(inner_updates)
        out = [u if m.ndim == 0 else jnp.where(m, u, (-p).astype(u.dtype)) for u, m, p in zip(flat_u, flat_m, flat_p)]
        new_state = PruningState(count=optax.safe_int32_increment(step), masks=treedef.unflatten(flat_m),
                                 inner_state=inner_state)
        return treedef.unflatten(out), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def masks(state):
    """The current mask pytree of the `sparsify` state found in `state` (also inside chains)."""
    if isinstance(state, PruningState):
        return state.masks
    if isinstance(state, (tuple, list)):
        for sub in state:
            found = masks(sub)
            if found is not None:
                return found
    return None


def apply_masks(params, mask_tree):
    """params with the pruned entries set to exactly zero."""
    return jax.tree.map(lambda p, m: jnp.where(m, p, jnp.zeros_like(p)), params, mask_tree)


def prune(params, targets, pattern: str = "unstructured"):
    """One-shot magnitude pruning of a checkpoint, outside training: (pruned params, masks)."""
    _validate_targets(targets, pattern)
    nm = parse_pattern(pattern)

    def one(path, p, S):
        S = float(S)
        if S <= 0.0:
            return jnp.ones(jnp.shape(p), bool)
        if nm is not None:
            _check_nm_leaf(jnp.shape(p), S, *nm, name=path_str(path))
        return mask_for(p, S, pattern)

    mask_tree = jax.tree_util.tree_map_with_path(one, params, targets)
    return apply_masks(params, mask_tree), mask_tree


# ---------------------------------------------------------------- reporting

def path_str(path) -> str:
    """'encoder/layers_0/mlp/wi/kernel' from a jax key path."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def layer_sparsity(params, sparsifiable) -> dict[str, float]:
    """{path: fraction of exactly-zero entries} over the leaves marked True in `sparsifiable`."""
    out = {}
    flags = jax.tree_util.tree_leaves(sparsifiable)
    for (path, p), flag in zip(jax.tree_util.tree_leaves_with_path(params), flags, strict=True):
        if flag:
            a = np.asarray(p)
            out[path_str(path)] = 1.0 - np.count_nonzero(a) / a.size
    return out
