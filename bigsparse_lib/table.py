"""The tidy table: one row per run, columns `sparsity, nnz, data, loss` (+ metadata).

It is what `bigsparse sweep`/`export` writes, what the released-data loaders return,
and what `bigsparse fit` and the chapters read (DESIGN.md, "One tidy table"). This module
is the boundary check: it names the offending row and column and never drops a row
silently.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from bigsparse_lib.errors import InputError

COLUMNS = ("sparsity", "nnz", "data", "loss")


def validate_tidy(df: pd.DataFrame, *, where: str = "table", dense: bool = False,
                  header_rows: int = 1) -> pd.DataFrame:
    """Check the tidy columns and return a float64 copy of them (metadata kept as is).

    Rows are reported as the file's line numbers (1-based, counting `header_rows`), so a
    user can jump to them. Rules: every value is a finite number; 0 <= sparsity < 1;
    nnz, data, loss > 0; with `dense=True`, every sparsity is 0 (eq. 2 has no S).
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{where}: missing column(s) {', '.join(missing)}; the tidy table needs {', '.join(COLUMNS)}")
    if len(df) == 0:
        raise InputError(f"{where}: no rows")
    out = df.copy()
    for col in COLUMNS:
        values = pd.to_numeric(out[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{where}: line {i + 1 + header_rows}, column {col!r}: "
                             f"{_show(out[col].iloc[i])} is not a finite number")
        out[col] = values.astype(float)
    checks = [
        ("sparsity", (out["sparsity"] < 0) | (out["sparsity"] >= 1), "must be in [0, 1)"),
        ("nnz", out["nnz"] <= 0, "must be positive"),
        ("data", out["data"] <= 0, "must be positive"),
        ("loss", out["loss"] <= 0, "must be positive"),
    ]
    if dense:
        checks.append(("sparsity", out["sparsity"] != 0, "must be 0 for a dense fit (--dense)"))
    for col, bad, rule in checks:
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{where}: line {i + 1 + header_rows}, column {col!r}: "
                             f"{out[col].iloc[i]:g} {rule}")
    return out


def _show(value) -> str:
    """A cell as the user wrote it: 'abc' quoted, numbers (nan, inf) bare."""
    return repr(value) if isinstance(value, str) else f"{float(value):g}"


def read_tidy_csv(path: str | os.PathLike, *, dense: bool = False) -> pd.DataFrame:
    """Read and validate a tidy CSV (the output of `bigsparse export` or `paper-data`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    return validate_tidy(df, where=str(path), dense=dense)


def require_points(n_points: int, n_free: int, *, where: str = "table") -> None:
    """A fit needs at least as many points as free coefficients."""
    if n_points < n_free:
        raise InputError(f"{where}: {n_points} point(s) but {n_free} free coefficient(s); "
                         f"need at least {n_free} rows (or fix coefficients with --fix)")


def write_tidy_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write atomically, tidy columns first, then metadata in their existing order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(COLUMNS) + [c for c in df.columns if c not in COLUMNS]
    tmp = path.with_name(path.name + ".tmp")
    df[cols].to_csv(tmp, index=False, float_format=None)
    os.replace(tmp, path)
    return path
