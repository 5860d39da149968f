"""The tidy table: one row per run, columns `sparsity, nnz, data, loss` (+ metadata).

It is what `bigsparse sweep`/`export` writes, what the released-data loaders return,
and what `bigsparse fit` and the chapters read (DESIGN.md, "One tidy table"). This module
is the boundary check: it names the offending row and column and never drops a row
silently.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bigsparse_lib.errors import InputError

from bigsparse_lib.vocab import TIDY_COLUMNS as COLUMNS  # the tidy table's columns (DESIGN.md)


# The smallest positive normal float64: below it a value has lost precision (subnormal), and its
# logarithm, which the fit takes, sits beyond anything a loss, size or length can mean.
TINY = float(np.finfo(np.float64).tiny)


def missing_columns_message(where: str, missing: list[str], found, needed) -> str:
    """'missing column(s) X; found [...]' with a hint when the header looks mis-split or padded."""
    found = [str(c) for c in found]
    msg = f"{where}: missing column(s) {', '.join(missing)}; found {found}; needs {', '.join(needed)}"
    stripped = {c.strip(): c for c in found}
    padded = [stripped[m] for m in missing if m in stripped]
    if padded:
        msg += f" (column name(s) {', '.join(repr(c) for c in padded)} have surrounding spaces)"
    elif any(sep in c for c in found for sep in (";", "\t", "|")):
        msg += " (the header holds ';', tab or '|': the file must be comma-separated)"
    return msg


def duplicate_columns(names) -> list[str]:
    """Column names that occur more than once (a second `loss` would otherwise be ignored)."""
    seen, dup = set(), []
    for n in names:
        if n in seen and n not in dup:
            dup.append(n)
        seen.add(n)
    return dup


def validate_tidy(df: pd.DataFrame, *, where: str = "table", dense: bool = False,
                  header_rows: int = 1, locations=None) -> pd.DataFrame:
    """Check the tidy columns and return a float64 copy of them (metadata kept as is).

    Rows are reported as the file's line numbers (1-based, counting `header_rows`), so a
    user can jump to them, or as `locations[i]` when given (e.g. "row '3'" of a JSON file,
    "run <id>" of a results directory). Rules: every value is a finite number, not
    subnormal; 0 <= sparsity < 1; nnz, data, loss > 0; with `dense=True`, every sparsity
    is 0 (eq. 2 has no S).
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputError(missing_columns_message(where, missing, df.columns, COLUMNS))
    dup = duplicate_columns(df.columns)
    if dup:
        raise InputError(f"{where}: column(s) {', '.join(map(repr, dup))} appear more than once")
    if len(df) == 0:
        raise InputError(f"{where}: no rows")
    at = (lambda i: f"line {i + 1 + header_rows}") if locations is None else (lambda i: str(locations[i]))
    out = df.copy()
    for col in COLUMNS:
        values = pd.to_numeric(out[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{where}: {at(i)}, column {col!r}: "
                             f"{_show(out[col].iloc[i])} is not a finite number")
        out[col] = values.astype(float)
    checks = [
        ("sparsity", (out["sparsity"] < 0) | (out["sparsity"] >= 1), "must be in [0, 1)"),
        ("nnz", out["nnz"] <= 0, "must be positive"),
        ("data", out["data"] <= 0, "must be positive"),
        ("loss", out["loss"] <= 0, "must be positive"),
    ] + [(col, (out[col] != 0) & (out[col].abs() < TINY), f"is below {TINY:.3g} (subnormal)") for col in COLUMNS]
    if dense:
        checks.append(("sparsity", out["sparsity"] != 0, "must be 0 for a dense fit (--dense)"))
    for col, bad, rule in checks:
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{where}: {at(i)}, column {col!r}: {out[col].iloc[i]:g} {rule}")
    return out


def _show(value) -> str:
    """A cell as the user wrote it: 'abc' quoted, numbers (nan, inf) bare."""
    return repr(value) if isinstance(value, str) else f"{float(value):g}"


def read_tidy_csv(path: str | os.PathLike, *, dense: bool = False) -> pd.DataFrame:
    """Read and validate a tidy CSV (the output of `bigsparse export` or `paper-data`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    df = read_csv(path, skipinitialspace=True)
    return validate_tidy(df, where=str(path), dense=dense)


def read_csv(path: Path, **kwargs) -> pd.DataFrame:
    """pandas.read_csv with one-line errors naming the file, and duplicate header names refused.

    pandas renames a second `loss` to `loss.1`, so a table with two would silently use the first.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        df = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error, OSError) as e:
        raise InputError(f"{path}: not a readable CSV ({(str(e).splitlines() or [type(e).__name__])[0]})") from None
    names = [h.strip() if kwargs.get("skipinitialspace") else h for h in header]
    dup = [n for n in duplicate_columns(names) if n]
    if dup:
        raise InputError(f"{path}: column(s) {', '.join(map(repr, dup))} appear more than once in the header")
    return df


def require_points(n_points: int, n_free: int, *, where: str = "table") -> None:
    """A fit needs at least as many points as free coefficients."""
    if n_points < n_free:
        raise InputError(f"{where}: {n_points} point(s) but {n_free} free coefficient(s); "
                         f"need at least {n_free} rows (or fix coefficients with --fix)")


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """A path a file can be written to: not a folder, with a folder (or a creatable one) above it."""
    path = Path(path)
    if path.is_dir() or str(path).endswith(os.sep):
        raise InputError(f"{flag}: {path} is a directory; give a file name, e.g. {path / 'table.csv'}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{flag}: cannot create {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{flag}: cannot write {path}: {parent} is not writable")
    return path


def write_tidy_csv(df: pd.DataFrame, path: str | os.PathLike, flag: str = "--out") -> Path:
    """Write atomically, tidy columns first, then metadata in their existing order."""
    path = check_output_file(path, flag)
    cols = list(COLUMNS) + [c for c in df.columns if c not in COLUMNS]
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        df[cols].to_csv(tmp, index=False, float_format=None)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True) if tmp.parent.is_dir() else None
        raise InputError(f"{flag}: cannot write {path} ({e.strerror or e})") from None
    return path
