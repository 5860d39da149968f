"""Will a model fit? Its memory, estimated from its config before anything is allocated or written.

`bigsparse train --nnz 1e12` used to trace, allocate, fail with RESOURCE_EXHAUSTED and
leave a half-made run directory behind. `param_count` takes the parameter shapes from
`jax.eval_shape` of the family's `init` (an abstract trace: no array is allocated), and
`check_fits` refuses a model whose parameters and gradients alone (float32, 8 bytes per
parameter) exceed the memory of the device that would train it. Optimiser state and
activations come on top, so the estimate is a lower bound: a refused model cannot fit;
an accepted one may still be too large for its batch.
"""
from __future__ import annotations

import math
import os
from typing import Any

from bigsparse_lib.errors import InputError

BYTES_PER_PARAM = 8  # a float32 parameter and its float32 gradient


def param_count(family: str, model_config: Any) -> int:
    """All parameters of the model (not only the sparsified layers), from shapes alone."""
    import jax
    import numpy as np

    from bigsparse_lib import models

    fam = models.get_family(family)
    shapes = jax.eval_shape(lambda key: fam.init(model_config, key), jax.random.PRNGKey(0))
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes)
                   if hasattr(leaf, "shape") and np.issubdtype(leaf.dtype, np.floating)))


def available_bytes() -> tuple[int, str]:
    """(bytes, what): the first accelerator's memory limit, or the host's physical memory on CPU."""
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
        except Exception:  # noqa: BLE001 -- a backend without memory stats: fall back to the host
            stats = {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"]), f"{device.platform} device memory"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "host memory"


def gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_fits(family: str, model_config: Any, *, limit: int | None = None, where: str = "model") -> int:
    """The parameter count, or InputError with the estimated size when it cannot fit in memory."""
    n = param_count(family, model_config)
    need = BYTES_PER_PARAM * n
    have, what = (limit, "the limit") if limit is not None else available_bytes()
    if need > have:
        raise InputError(f"{where}: {n:.4g} parameters need at least {gib(need)} (float32 parameters and "
                         f"gradients, before optimiser state and activations), more than the {gib(have)} of "
                         f"{what}; use a smaller --nnz")
    return n
