"""JAX's persistent compilation cache, for every program the library compiles.

Compiling is much of what a toy run and a chapter spend. The training engine's programs take
seconds each; the fits' vmapped BFGS (`bfgs.batched`, `vpfit`) is about half of the core-law
chapter (run as a script: 57-62 s with a cold cache, 35 s with a warm one). With the cache on,
a rebuild of the book, a second `bigsparse fit` of the same table and the test suite read
compiled programs from disk (`bench/book.py` measures the rebuild).

    from bigsparse_lib.compilecache import enable_compilation_cache
    enable_compilation_cache()  # once per process; every later jax.jit compile may hit the cache
"""
from __future__ import annotations

import os
from pathlib import Path

import jax

COMPILE_CACHE_ENV = "BIGSPARSE_JAX_CACHE"
MIN_COMPILE_SECONDS = 0.5  # programs that compile faster than this are not worth a disk read
_cache_dir: list[str | None] = []


def enable_compilation_cache(path: str | Path | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache (once per process) and return its folder.

    The folder is `path`, else $BIGSPARSE_JAX_CACHE, else ~/.cache/bigsparse/jax ("off"
    disables it). A cached program is the same executable XLA would compile, so the numbers
    do not change; only the time to the first step or fit does.
    """
    if _cache_dir:
        return _cache_dir[0]
    where = str(path or os.environ.get(COMPILE_CACHE_ENV)
                or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bigsparse" / "jax")
    if where.lower() in ("off", "0", "none", ""):
        _cache_dir.append(None)
        return None
    try:
        Path(where).mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", where)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except (OSError, AttributeError):  # an unwritable cache only costs speed
        where = None
    _cache_dir.append(where)
    return where
