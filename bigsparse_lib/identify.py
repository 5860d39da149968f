"""Can a table determine the coefficients of eq. 3 (or eq. 2)? Necessary conditions, checked before a fit.

A fit always returns numbers; on a table that cannot determine them they are arbitrary,
and so is everything derived from them (the gains of eq. 7, S_opt, the onset). This module
counts what each term of the law sees, and names what is missing. The conditions are
necessary, not sufficient: a table that passes can still be poorly conditioned (that is
what `fit`'s count of starts reaching the best optimum, and the bootstrap, show).

Eq. 3: L = (a_S (1-S)^b_S + c_S) N^-b_N + (a_D/D)^b_D + c.
- The sparsity curve a_S (1-S)^b_S + c_S has as many unknowns as its free coefficients,
  and is seen only at the distinct sparsities: it needs at least that many (3 when all are
  free; with only S = 0, a_S and c_S appear only as a_S + c_S and b_S not at all).
- b_N needs two distinct sizes (with two or more sparsities, the product (sparsity curve) x
  N^-b_N separates N^-b_N from the constant; with one sparsity the size term is a_N-like,
  see eq. 2 below).
- (a_D/D)^b_D + c has three unknowns seen at the distinct data amounts: it needs three
  lengths when a_D, b_D and c are all free (one fewer for each fixed one).
Eq. 2: (a_N/N)^b_N + (a_D/D)^b_D + c: each power term and the shared constant c need
  1 + (free coefficients of the term) distinct values when c is free.
And overall: at least as many distinct (S, N, D) points as free coefficients (repeated
points, e.g. seeds, lower the noise but add no equation).
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from bigsparse_lib.errors import InputError


def problems(S, N, D, *, dense: bool = False, fixed: Iterable[str] = ()) -> list[str]:
    """What the points (S, N, D) lack to determine the free coefficients; [] when nothing is known to lack."""
    S, N, D = (np.asarray(x, dtype=np.float64).ravel() for x in (S, N, D))
    fixed = set(fixed)
    names = ("a_N", "b_N", "a_D", "b_D", "c") if dense else ("a_S", "b_S", "c_S", "b_N", "a_D", "b_D", "c")
    free = [n for n in names if n not in fixed]
    n_S, n_N, n_D = (np.unique(x).size for x in (S, N, D))
    n_points = np.unique(np.stack([S, N, D], axis=1), axis=0).shape[0] if S.size else 0
    out = []
    if n_points < len(free):
        out.append(f"{n_points} distinct (sparsity, nnz, data) point(s) for {len(free)} free coefficient(s) "
                   f"({', '.join(free)}); repeated rows add no information")
    c_free = "c" in free
    if dense:
        need_N = sum(n in free for n in ("a_N", "b_N")) + (c_free and {"a_N", "b_N"} & set(free) != set())
    else:
        curve = [n for n in ("a_S", "b_S", "c_S") if n in free]
        if n_S < len(curve):
            values = ", ".join(f"{s:g}" for s in np.unique(S))
            hint = " (all runs are dense: fit eq. 2 with --dense, or add sparse runs)" if n_S == 1 and S[0] == 0 else ""
            out.append(f"{n_S} distinct sparsit{'y' if n_S == 1 else 'ies'} ({values}) for the "
                       f"{len(curve)} free coefficient(s) {', '.join(curve)} of a_S (1-S)^b_S + c_S; "
                       f"need at least {len(curve)}{hint}")
        need_N = ("b_N" in free) * (2 if n_S >= 2 else 2 + c_free)
    need_D = sum(n in free for n in ("a_D", "b_D")) + (c_free and bool({"a_D", "b_D"} & set(free)))
    if n_N < need_N:
        out.append(f"{n_N} distinct size(s) (nnz) for the size term; need at least {need_N}")
    if n_D < need_D:
        out.append(f"{n_D} distinct data amount(s) (data) for (a_D/D)^b_D + c; need at least {need_D}")
    return out


def require_identifiable(S, N, D, *, dense: bool = False, fixed: Iterable[str] | Mapping = (),
                         where: str = "table") -> None:
    """Raise InputError naming everything the table lacks to determine the law (see `problems`)."""
    found = problems(S, N, D, dense=dense, fixed=fixed)
    if found:
        law = "eq. 2 (dense)" if dense else "eq. 3"
        raise InputError(f"{where} cannot determine the coefficients of {law}: {'; '.join(found)} "
                         f"(add runs, or fix coefficients with --fix)")
