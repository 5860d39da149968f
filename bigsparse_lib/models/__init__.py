"""The two model families of the paper and their sizing (§3.1, App. A).

- `vit`: ViT for multi-label classification (big_vision shapes; JFT in the paper).
- `t5`: T5 v1.1 encoder-decoder for span corruption (T5X shapes; C4 in the paper).

Each family module has `Config`, `BASES` ("smoke", "toy", "full"), `scale_width`, `init`,
`loss_fn`, `sparsifiable`, `target_sparsities` and `dense_count`. This module adds what is common:
`get_family`, the exact counter `count`, and `config_for_nnz`, which sizes a model so that its
sparsified layers hold N non-zeros at sparsity S, i.e. N / (1 - S) weights (App. A, "Model sizes").

N is the number of non-zero weights in the sparsified backbone layers, counted exactly on our
model. The released data use a nominal normaliser instead (`paper_normaliser` in each family:
exact for ViT, 6/7 of the real backbone for T5, see `t5.py`).
"""
from __future__ import annotations

import math
import operator
from types import ModuleType

import jax
import numpy as np

from bigsparse_lib.errors import InputError
from bigsparse_lib.models import t5, vit

MODULES: dict[str, ModuleType] = {"vit": vit, "t5": t5}  # family name -> its model module


def get_family(name: str) -> ModuleType:
    """The family module ("vit" or "t5")."""
    try:
        return MODULES[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown model family {name!r}; expected one of {', '.join(MODULES)}") from None


def count(params, sparsifiable_tree) -> tuple[int, int]:
    """(dense_count, nonzero_count) over the leaves where `sparsifiable_tree` is True. Exact ints."""
    leaves = jax.tree_util.tree_leaves(params)
    flags = jax.tree_util.tree_leaves(sparsifiable_tree)
    if len(leaves) != len(flags):
        raise InputError(f"params has {len(leaves)} leaves but the sparsifiable tree has {len(flags)}")
    dense = nonzero = 0
    for leaf, flag in zip(leaves, flags):
        if flag:
            a = np.asarray(jax.device_get(leaf))
            dense += int(a.size)
            nonzero += int(np.count_nonzero(a))
    return dense, nonzero


def uncounted_nonzeros(family, config, S: float = 0.0) -> int:
    """The non-zero weights of a `family` model of shapes `config` at backbone sparsity S that N does
    not count: everything but the sparsified backbone kernels (embeddings, T5's output layer, ViT's
    head, norms, biases, position tables), each at its own target (`target_sparsities`: 0 for all of
    them in ViT; T5 prunes its embeddings to a smaller dense model's count, App. A). At equal N a
    sparse ViT is wider, so it carries more of these. Counted from shapes; nothing is initialised."""
    from bigsparse_lib.pruning import keep_count

    fam = get_family(family) if isinstance(family, str) else family
    params = jax.eval_shape(lambda: fam.init(config, jax.random.key(0)))
    flags = jax.tree_util.tree_leaves(fam.sparsifiable(params))
    targets = jax.tree_util.tree_leaves(fam.target_sparsities(config, S))
    sizes = [int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params)]
    return sum(keep_count(t, n) if t > 0 else n for n, f, t in zip(sizes, flags, targets) if not f)


def _base(family: ModuleType, preset):
    if isinstance(preset, family.Config):
        return preset
    try:
        return family.BASES[preset]
    except (KeyError, TypeError):
        raise InputError(f"unknown {family.NAME} preset {preset!r}; "
                         f"expected one of {', '.join(family.BASES)}") from None


def config_for_nnz(family, preset, nnz: float, S: float = 0.0, group: int = 1):
    """The config of `family` (name or module) derived from `preset` (name or a base Config) by
    scaling only the hidden dimension, whose sparsified layers hold as close as the shapes allow to
    N / (1 - S) weights, i.e. N = nnz non-zeros at sparsity S.

    Widths are multiples of num_heads; "closest" is by ratio (|log count - log target|).
    `group` > 1 sizes a model for an n:m pattern with m = group (§4.1, Algorithm 1): groups of m
    run along the input dimension of every sparsified kernel, so the width steps by
    lcm(num_heads, m) and the family's `with_width` rounds its inner dimensions (T5's d_ff,
    ViT's mlp_dim) to multiples of m. T5's d_ff = 8/3 d_model is a multiple of 8 only at every
    24th d_model; rounding d_ff instead lets n:8 models sit at the main grid's sizes.
    Raises InputError for nnz <= 0, S outside [0, 1), group < 1, or a target below what the
    narrowest model (one dimension per head) holds.
    """
    fam = get_family(family) if isinstance(family, str) else family
    base = _base(fam, preset)
    try:
        nnz, S = float(nnz), float(S)
    except (TypeError, ValueError):
        raise InputError(f"nnz and S must be numbers, got nnz={nnz!r}, S={S!r}") from None
    if not (math.isfinite(nnz) and nnz > 0):
        raise InputError(f"nnz must be a positive number of non-zero parameters, got {nnz}")
    if not 0.0 <= S < 1.0:
        raise InputError(f"sparsity S must be in [0, 1), got {S}")
    try:
        m_group = operator.index(group)  # any integer type (numpy's too), never a float
    except TypeError:
        m_group = 0
    if m_group < 1:
        raise InputError(f"the n:m group size must be an integer >= 1, got {group!r}")
    group = m_group
    target = nnz / (1.0 - S)
    m = math.lcm(fam.width_multiple(base), group)
    at = lambda k: fam.with_width(base, k * m, multiple=group)  # noqa: E731
    smallest = fam.dense_count(at(1))
    if target < smallest / math.sqrt(2):
        raise InputError(
            f"nnz={nnz:.6g} at S={S} needs {target:.6g} {fam.NAME} backbone weights, below the "
            f"{smallest} of the narrowest '{fam.NAME}' model (width {m}); use a larger nnz")
    # count(width) is about c * width^2, so start from that guess and check the neighbours
    c = fam.dense_count(base) / fam.hidden_size(base) ** 2
    k0 = max(1, round(math.sqrt(target / c) / m))
    ks = range(max(1, k0 - 2), k0 + 3)
    best = min(ks, key=lambda k: abs(math.log(fam.dense_count(at(k)) / target)))
    return at(best)


__all__ = ["MODULES", "get_family", "count", "config_for_nnz", "uncounted_nonzeros", "t5", "vit"]
