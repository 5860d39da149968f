"""The paper's published numbers, kept as data, and loaders for the released sweep data.

Everything a chapter or test sets "paper" beside "ours" comes from here, so each
published value is typed once. Values are copied from the paper's text (Frantar et al.,
ICLR 2024) and from the data's README; they are *references*, never results.

Released data (not part of this repository; see `locate`):
- `t5-data.csv`, `vit-data.json`: the validation losses of the main sweeps (Table 1),
  from google-research/jaxpruner, `jaxpruner/projects/bigsparse/` (Apache-2.0).
- `chinchilla-svg-extracted.csv`: Epoch AI's extraction of Hoffmann et al. (2022) Fig. 4.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bigsparse_lib.errors import InputError
from bigsparse_lib.law import DenseLaw, SparseLaw

# --------------------------------------------------------------------------------------
# Table 7 (App. C): fitted coefficients. D is images for ViT and tokens for T5.
# --------------------------------------------------------------------------------------
TABLE7: dict[str, SparseLaw] = {
    "vit": SparseLaw(a_S=2.94e2, b_S=0.821, c_S=4.68e2, b_N=0.392, a_D=2.37e8, b_D=0.890, c=4.517),
    "t5": SparseLaw(a_S=1.68e1, b_S=0.722, c_S=4.50e1, b_N=0.245, a_D=6.90e8, b_D=0.203, c=0.651),
}
# The "Error" column: mean Huber loss at the optimum (ViT: delta 0.01 on L; T5: delta 0.001 on log L).
TABLE7_ERROR = {"vit": 4.93e-4, "t5": 7.60e-6}
TABLE7_FIT_SETTINGS = {"vit": {"delta": 0.01, "log": False}, "t5": {"delta": 1e-3, "log": True}}
# n:m row: only a_S, b_S, c_S are refit, on the T5 dense base (§4.1); Huber delta 0.01.
TABLE7_NM = {"a_S": 8.64e1, "b_S": 2.752, "c_S": 5.36e2}
TABLE7_NM_ERROR = 2.1e-5


def nm_law() -> SparseLaw:
    """The T5 n:m law of Table 7: the unstructured T5 base with the refit sparsity coefficients."""
    return TABLE7["t5"].replace(**TABLE7_NM)


# --------------------------------------------------------------------------------------
# Table 1 (§3.1): the sweep grids, as published.
# --------------------------------------------------------------------------------------
TABLE1 = {
    "vit": {"nnz": "0.66M, 1.33M, ..., 42.4M (2x steps)", "steps": (55_000, 110_000, 220_000, 440_000),
            "sparsities": (0.0, 0.5, 0.75, 0.875), "runs": 112},
    "t5": {"nnz": "1.3M, 5.3M, ..., 85M (4x steps)", "steps": (250_000, 500_000, 1_000_000),
           "sparsities": (0.0, 0.5, 0.75, 0.875), "runs": 48},
}

# Table 2 (§3.3.1): gain(S), the equivalent dense size multiplier.
TABLE2 = {
    "vit": {0.5: 1.60, 0.75: 2.17, 0.875: 2.63},
    "t5": {0.5: 1.59, 0.75: 2.16, 0.875: 2.63},
}

# Table 3 (§4.1): dense size multipliers for n:m sparsity on T5/C4 (rows n:4 and n:8; columns = sparsity).
TABLE3 = {
    "n:4": {0.5: 1.56, 0.75: 1.62},  # 2:4 and 1:4
    "n:8": {0.5: 1.67, 0.75: 1.81},  # 4:8 and 2:8
}

# Table 4 (§4.2): relative data needed by sparsifying from scratch to match pruning a pretrained model,
# excluding (exc) / including (inc) the pretraining cost.
TABLE4 = {
    "S/16": {0.5: (4.90, 0.25), 0.75: (4.27, 0.23), 0.875: (2.45, 0.13)},
    "M/16": {0.5: (4.76, 0.25), 0.75: (4.18, 0.22), 0.875: (2.57, 0.14)},
    "B/16": {0.5: (4.35, 0.23), 0.75: (4.00, 0.21), 0.875: (2.72, 0.14)},
}
TABLE4_PRUNING_FRACTION = 0.056  # pruning ran for 5.6% of the pretraining budget

# Table 5 (App. B): GMP schedule ablation, ViT-B/16, 900M images, S = 0.9375; (start, end, every) -> accuracy.
TABLE5 = {
    (0.250, 0.750, 100): 45.28,
    (0.250, 0.750, 50): 45.08,
    (0.250, 0.750, 200): 45.13,
    (0.125, 0.875, 100): 45.33,
    (0.475, 0.625, 100): 44.65,
    (0.125, 0.625, 100): 45.13,
    (0.375, 0.875, 100): 45.04,
}

# Table 6 (App. B): validation perplexity of T5 after 250K steps, GMP vs AC/DC; nnz -> S -> (GMP, AC/DC).
TABLE6 = {
    "1.3M": {0.5: (17.11, 17.11), 0.75: (15.64, 15.96), 0.875: (14.73, 14.59)},
    "42M": {0.5: (6.11, 6.11), 0.75: (5.87, 6.05), 0.875: (5.81, 6.11)},
}

# §3.3: onset of 50% sparsity, as multiples of Chinchilla-optimal training ("<2x" means below 2).
ONSET_CLAIMS = {
    ("vit", "sparse"): ("<", 2.0),
    ("t5", "sparse"): ("<", 3.0),
    ("vit", "dense"): ("≈", 5.0),
    ("t5", "dense"): ("≈", 70.0),
}


@dataclass(frozen=True)
class CerebrasPoint:
    """§6: the T5 law queried in Cerebras's (2022) setting."""

    label: str
    S: float
    N: float
    D: float
    loss: float  # the paper's prediction, two decimals


CEREBRAS = (
    CerebrasPoint("dense, 1B parameters, 20B tokens", 0.0, 1e9, 20e9, 1.54),
    CerebrasPoint("80% sparse, 200M non-zeros, 100B tokens", 0.8, 2e8, 100e9, 1.48),
)

# Dense scaling laws of Chinchilla: Hoffmann et al. (2022) and Epoch's replication (Besiroglu et al., 2024).
HOFFMANN = DenseLaw.from_chinchilla(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
EPOCH = DenseLaw.from_chinchilla(E=1.82, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
EPOCH_FIT_SETTINGS = {"delta": 1e-3, "log": True, "drop_highest": 5}

# --------------------------------------------------------------------------------------
# Released data: where it is, and how it becomes the tidy table.
# --------------------------------------------------------------------------------------
# Backbone linear weights of the base models (data README): 12 blocks of ViT-B, 12+12 blocks of t5-base.
BASE_NNZ = {"vit": 12 * (12 * 768**2), "t5": 24 * (12 * 768**2)}
T5_TOKENS_PER_STEP = 128 * 512  # batch 128 x 512 input tokens (App. A); D = steps * 128 * 512

RELEASED = {
    "t5": ("t5-data.csv",
           "https://raw.githubusercontent.com/google-research/jaxpruner/main/jaxpruner/projects/bigsparse/t5-data.csv"),
    "vit": ("vit-data.json",
            "https://raw.githubusercontent.com/google-research/jaxpruner/main/jaxpruner/projects/bigsparse/vit-data.json"),
    "chinchilla": ("chinchilla-svg-extracted.csv",
                   "https://raw.githubusercontent.com/epoch-research/analyzing-chinchilla/main/data/svg_extracted_data.csv"),
}
ENV_VAR = "BIGSPARSE_PAPER_DATA"


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bigsparse" / "paper-data"


def _candidates(filename: str) -> list[Path]:
    """Folders searched, in order: $BIGSPARSE_PAPER_DATA, ../shared/paper-data beside the checkout, the cache."""
    out = []
    if os.environ.get(ENV_VAR):
        out.append(Path(os.environ[ENV_VAR]) / filename)
    repo = Path(__file__).resolve().parents[1]
    out.append(repo.parent / "shared" / "paper-data" / filename)
    out.append(_default_cache() / filename)
    return out


def locate(name: str, source: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Path of a released data file: `source` (file, folder or URL) if given, else the search order above.

    With nothing local and `download=True`, fetches the public address into the cache.
    Raises FileNotFoundError (no data anywhere) or InputError (a bad explicit source).
    """
    if name not in RELEASED:
        raise InputError(f"unknown released data set {name!r}; choose from {', '.join(RELEASED)}")
    filename, url = RELEASED[name]
    if source is not None:
        s = str(source)
        if s.startswith(("http://", "https://")):
            return _download(s, _default_cache() / f"{hashlib.sha1(s.encode()).hexdigest()[:10]}-{filename}")
        p = Path(s)
        if p.is_dir():
            p = p / filename
        if not p.is_file():
            raise InputError(f"no such file: {p}", arg="source")
        return p
    for p in _candidates(filename):
        if p.is_file():
            return p
    if download:
        try:
            return _download(url, _default_cache() / filename)
        except OSError as e:
            raise FileNotFoundError(
                f"released data {filename!r} not found (set {ENV_VAR} to its folder) and download failed: {e}"
            ) from None
    raise FileNotFoundError(f"released data {filename!r} not found; set {ENV_VAR} to the folder holding it")


def _download(url: str, dest: Path, timeout: float = 30.0) -> Path:
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, tempfile.NamedTemporaryFile(
            dir=dest.parent, delete=False
        ) as tmp:
            shutil.copyfileobj(r, tmp)
    except (urllib.error.URLError, TimeoutError) as e:
        raise OSError(f"could not download {url}: {e}") from None
    os.replace(tmp.name, dest)  # atomic: a half-downloaded file never sits in the cache
    return dest


def _require(df: pd.DataFrame, cols: list[str], path: Path) -> None:
    from bigsparse_lib.table import missing_columns_message

    missing = [c for c in cols if c not in df.columns]
    if missing:
        found = ([df.index.name] if df.index.name is not None else []) + list(df.columns)
        raise InputError(missing_columns_message(str(path), missing, found, cols))


def _numbers(raw: pd.DataFrame, col: str, path: Path, locations, *, whole: bool = False) -> np.ndarray:
    """Column `col` as finite float64, or InputError naming the file, row and column of the first bad cell.

    Converting first and computing after is what keeps one bad cell from turning into a
    string product (a 'x' times 6.8M is a 6.8M-character string, per row: the OOM of issue 16).
    `whole`: the values count something (steps) and must be whole numbers.
    """
    values = pd.to_numeric(raw[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    cells = raw[col].to_numpy()
    for i, (v, cell) in enumerate(zip(values, cells)):
        # booleans are numbers to pandas (True -> 1.0) but never a count or a loss
        if not np.isfinite(v) or isinstance(cell, (bool, np.bool_)):
            shown = repr(cell) if isinstance(cell, str) else json.dumps(cell) if cell is None or isinstance(
                cell, (bool, np.bool_, list, dict)) else f"{cell}"
            raise InputError(f"{path}: {locations[i]}, column {col!r}: {shown} is not a finite number")
        if whole and v != np.round(v):
            raise InputError(f"{path}: {locations[i]}, column {col!r}: {v:g} is not a whole number")
    return values


def _tidy(df: pd.DataFrame, path: Path, locations) -> pd.DataFrame:
    """Check the tidy table a loader built, naming rows by their place in the source file."""
    from bigsparse_lib.table import validate_tidy

    return validate_tidy(df.reset_index(drop=True), where=str(path), locations=locations)


def load_t5(path: str | os.PathLike) -> pd.DataFrame:
    """t5-data.csv -> tidy table. N = BASE * scale * (1 - S); D = steps * 128 * 512 tokens."""
    from bigsparse_lib.table import read_csv

    path = Path(path)
    raw = read_csv(path, index_col=0)
    _require(raw, ["sparsity", "scale", "val-loss", "steps"], path)
    where = [f"line {i + 2}" for i in range(len(raw))]  # line 1 is the header
    S, scale, loss = (_numbers(raw, c, path, where) for c in ("sparsity", "scale", "val-loss"))
    steps = _numbers(raw, "steps", path, where, whole=True)
    df = pd.DataFrame({
        "sparsity": S,
        "nnz": BASE_NNZ["t5"] * scale * (1.0 - S),
        "data": steps * T5_TOKENS_PER_STEP,
        "loss": loss,
        "family": "t5",
        "scale": scale,
        "steps": steps.astype(np.int64),
    })
    return _tidy(df, path, where)


def _json_object(pairs):
    """object_pairs_hook: a key given twice is refused (json keeps the last one silently)."""
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise InputError(f"key(s) {', '.join(map(repr, dup))} appear more than once in one object")
    return dict(pairs)


def load_vit(path: str | os.PathLike) -> pd.DataFrame:
    """vit-data.json -> tidy table. N = BASE * scale * (1 - S); D = total_examples (images).

    The file is pandas' column-oriented JSON: {column: {row key: value}}; rows are named by
    their key ("row '12'") in messages.
    """
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_json_object)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, dict) for v in obj.values()):
        raise InputError(f"{path}: expected a JSON object of columns, each an object of row key -> value "
                         f"(pandas' column-oriented JSON)")
    keys = sorted({k for col in obj.values() for k in col}, key=lambda k: (not k.lstrip("-").isdigit(), k))
    bad = [k for k in keys if not k.lstrip("-").isdigit()]
    if bad:
        raise InputError(f"{path}: row key {bad[0]!r} is not an integer")
    keys.sort(key=int)
    raw = pd.DataFrame({c: pd.Series([col.get(k) for k in keys], index=keys, dtype=object)
                        for c, col in obj.items()}, index=keys)
    _require(raw, ["sparsity", "scale", "val-loss", "total_examples"], path)
    for c in ("sparsity", "scale", "val-loss", "total_examples"):
        absent = [k for k in keys if k not in obj[c]]
        if absent:
            raise InputError(f"{path}: row {absent[0]!r} has no {c!r} value (column {c!r} lacks key {absent[0]!r})")
    where = [f"row {k!r}" for k in keys]
    S, scale, loss, D = (_numbers(raw, c, path, where) for c in ("sparsity", "scale", "val-loss", "total_examples"))
    df = pd.DataFrame({
        "sparsity": S,
        "nnz": BASE_NNZ["vit"] * scale * (1.0 - S),
        "data": D,
        "loss": loss,
        "family": "vit",
        "scale": scale,
    })
    return _tidy(df, path, where)


def load_chinchilla(path: str | os.PathLike) -> pd.DataFrame:
    """Epoch's Chinchilla extraction -> tidy table (S = 0): N = Model Size, D = C / (6 N)."""
    from bigsparse_lib.table import read_csv

    path = Path(path)
    raw = read_csv(path)
    _require(raw, ["Model Size", "Training FLOP", "loss"], path)
    where = [f"line {i + 2}" for i in range(len(raw))]
    N, C, loss = (_numbers(raw, c, path, where) for c in ("Model Size", "Training FLOP", "loss"))
    df = pd.DataFrame({"sparsity": 0.0, "nnz": N, "data": C / (6.0 * N), "loss": loss,
                       "family": "chinchilla", "flops": C})
    return _tidy(df, path, where)


LOADERS = {"t5": load_t5, "vit": load_vit, "chinchilla": load_chinchilla}


def load_released(name: str, source: str | os.PathLike | None = None) -> pd.DataFrame:
    """The released data set `name` ("t5", "vit" or "chinchilla") as the tidy table."""
    return LOADERS[name](locate(name, source))


def drop_highest(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop the k highest-loss rows (Epoch drops the 5 highest before fitting Chinchilla)."""
    if k <= 0:
        return df
    return df.drop(index=df["loss"].nlargest(k).index).reset_index(drop=True)


def have_released(name: str) -> bool:
    """True when the data set is available locally (no download attempted)."""
    try:
        locate(name, download=False)
        return True
    except FileNotFoundError:
        return False


def table2_ours(law: SparseLaw, sparsities=(0.5, 0.75, 0.875)) -> dict[float, float]:
    """gain(S) (eq. 7) of a law at Table 2's sparsities."""
    from bigsparse_lib.law import gain

    return {float(S): float(gain(law, np.float64(S))) for S in sparsities}


def table7_rows(family: str, table, result) -> "pd.DataFrame":
    """Table 7 beside our fit: the paper's coefficients with the error it prints, the same
    coefficients with the error re-evaluated on `table` (App. C's objective at the family's
    setting, so that every error in the column is computed the same way), and our fit
    `result` (`fit.FitResult`) with its objective. One row each, coefficients as columns."""
    import pandas as pd

    from bigsparse_lib import fit

    setting = TABLE7_FIT_SETTINGS[family]
    published = TABLE7[family]
    again = fit.objective(published, table["sparsity"], table["nnz"], table["data"], table["loss"],
                          setting["delta"], setting["log"])
    rows = {
        f"{family} paper": {**published.to_dict(), "error": TABLE7_ERROR[family]},
        f"{family} paper, re-evaluated": {**published.to_dict(), "error": again},
        f"{family} ours": {**result.law.to_dict(), "error": result.objective},
    }
    return pd.DataFrame(rows).T


def beside_paper(family: str, law, boot=None, *, quantities=None, level: float = 0.95) -> "pd.DataFrame":
    """Our law's coefficients and derived quantities (`fit.derived`: gain@S, onset@S) beside the
    paper's (Table 7, Table 2; NaN where the paper prints none), with the bootstrap interval of
    each (`fit.intervals`; NaN without `boot`). `quantities`: which rows (default all).
    Index (family, quantity); columns paper, ours, "95% lo", "95% hi" (the level's)."""
    import pandas as pd

    from bigsparse_lib import fit

    published = {**TABLE7[family].to_dict(), **{f"gain@{S:g}": v for S, v in TABLE2[family].items()}}
    ours = {**law.to_dict(), **{name: float(fn(law)) for name, fn in fit.derived(law).items()}}
    iv = fit.intervals(boot, level) if boot is not None else {}
    pct = f"{level:.0%}"
    rows = [{"family": family, "quantity": name, "paper": published.get(name, np.nan), "ours": value,
             f"{pct} lo": iv.get(name, (np.nan, np.nan))[0], f"{pct} hi": iv.get(name, (np.nan, np.nan))[1]}
            for name, value in ours.items() if quantities is None or name in quantities]
    return pd.DataFrame(rows).set_index(["family", "quantity"])
