"""§4.1: n:m sparsity laws fitted on a dense base -- only a_S, b_S, c_S are refit.

The paper expects a change of sparsity pattern to change only the sparsity term of eq. 3,
so with the base law known it refits 3 coefficients (not 7) on a subset of the grid: the
runs with the fewest steps or the smallest model (`sweep.nm_grid`). One law per pattern
family: n:4 (2:4 at S = 0.5, 1:4 at S = 0.75) and n:8 (4:8, 2:8); Table 3 gives gain(S)
(eq. 7) of each. Huber delta 0.01 "as 0.75 patterns will otherwise be treated as an outlier".

Which runs enter a refit. The n:m runs of one family sit at only two sparsities, and
gain(S) = (f(S) / f(0))^(-1/b_N) with f(S) = a_S (1-S)^b_S + c_S needs f(0) = a_S + c_S,
which runs at S = 0.5 and 0.75 alone do not determine (three free coefficients, two
sparsities: a one-parameter family of exact fits). The paper does not say how it pinned
f(0); we add the base sweep's dense runs on the same subset (fewest steps or smallest
model), which fix f(0) at the dense losses (`refit_table`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bigsparse_lib import fit
from bigsparse_lib.law import SparseLaw, gain

FAMILIES = {"n:4": ("2:4", "1:4"), "n:8": ("4:8", "2:8")}  # Table 3's rows
DELTA = 0.01  # §4.1
BASE_COEFS = ("b_N", "a_D", "b_D", "c")  # kept from the unstructured law; a_S, b_S, c_S are refit


def pattern_family(pattern: str) -> str:
    """'2:4' -> 'n:4' (the row of Table 3 it belongs to)."""
    return f"n:{int(pattern.split(':')[1])}"


def nm_subset(main: pd.DataFrame) -> pd.DataFrame:
    """Runs of a main sweep with the fewest steps or the smallest model (of their sparsity): §4.1's subset."""
    fewest = main["data"] == main["data"].min()
    out = []
    for S, grp in main.groupby("sparsity"):
        smallest = grp["nnz"] == grp["nnz"].min()
        out.append(grp[(fewest[grp.index]) | smallest])
    return pd.concat(out).sort_index()


def refit_table(nm_runs: pd.DataFrame, main: pd.DataFrame, family: str) -> pd.DataFrame:
    """The points of one pattern family's refit: its n:m runs plus the dense runs of the §4.1 subset."""
    patterns = FAMILIES[family]
    own = nm_runs[nm_runs["pattern"].isin(patterns)]
    dense = nm_subset(main[main["sparsity"] == 0])
    return pd.concat([dense, own], ignore_index=True)


def refit(table: pd.DataFrame, base: SparseLaw, *, delta: float = DELTA, log: bool = True,
          starts: int = fit.STARTS, seed: int = fit.SEED) -> fit.FitResult:
    """Fit a_S, b_S, c_S of eq. 3 to `table` with b_N, a_D, b_D, c fixed at `base`'s values (§4.1)."""
    return fit.fit(table, delta=delta, log=log, starts=starts, seed=seed,
                   fix={k: getattr(base, k) for k in BASE_COEFS})


def table3(laws: dict[str, SparseLaw], sparsities=(0.5, 0.75)) -> pd.DataFrame:
    """gain(S) (eq. 7) of each pattern family's law at Table 3's sparsities: rows n:4, n:8."""
    return pd.DataFrame({S: {fam: float(gain(law, np.float64(S))) for fam, law in laws.items()}
                         for S in sparsities})
