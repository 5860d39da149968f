"""Held-out tests of a law: refit without the largest size (or the longest runs) and predict them.

`leave_out(table, by="size" | "length", which="largest" | "smallest", form=...)` is the one
public function: it splits the table, refits the form on the rest with the certified fit
(`vpfit.certified_fit`), and returns the predictions and relative errors on the held-out
runs. "size" is the parameter count of the trained (dense-width) model, N / (1 - S), so all
sparsities of one width leave together (as the paper's Fig. 1 left holds out a whole model);
"length" is the data D. Values within 1% count as equal (released sizes are rounded).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bigsparse_lib.errors import InputError
from bigsparse_lib.fit import DELTA, LOG

BY = ("size", "length")
WHICH = ("largest", "smallest")
SAME = 0.01  # relative tolerance: values this close are one size / one length


@dataclass(frozen=True)
class HeldOut:
    """A held-out refit: which rows were held out, the refit, and its predictions there."""

    by: str
    which: str
    held: np.ndarray = field(repr=False)  # boolean mask over the table's rows
    fit: object = field(repr=False)  # vpfit.GridFit on the other rows
    predicted: np.ndarray = field(repr=False)  # loss predicted for the held-out rows
    measured: np.ndarray = field(repr=False)

    @property
    def rel_errors(self) -> np.ndarray:
        return (self.predicted - self.measured) / self.measured

    @property
    def mean_abs_rel_error(self) -> float:
        return float(np.mean(np.abs(self.rel_errors)))


def held_mask(table, by: str = "size", which: str = "largest") -> np.ndarray:
    """Rows of the largest (smallest) size N/(1-S) or length D, with SAME relative tolerance."""
    if by not in BY:
        raise InputError(f"held-out test: 'by' must be one of {', '.join(BY)}, got {by!r}")
    if which not in WHICH:
        raise InputError(f"held-out test: 'which' must be one of {', '.join(WHICH)}, got {which!r}")
    S = np.asarray(table["sparsity"], dtype=np.float64)
    x = (np.asarray(table["nnz"], dtype=np.float64) / (1.0 - S) if by == "size"
         else np.asarray(table["data"], dtype=np.float64))
    if which == "largest":
        mask = x >= x.max() * (1.0 - SAME)
    else:
        mask = x <= x.min() * (1.0 + SAME)
    if mask.all():
        raise InputError(f"held-out test: every row has the {which} {by}; nothing is left to fit")
    return mask


def leave_out(table, by: str = "size", which: str = "largest", *, form=None, delta: float = DELTA,
              log: bool = LOG, **fit_kwargs) -> HeldOut:
    """Refit `form` (default eq. 3) without the largest/smallest size or length, and predict the held-out rows."""
    from bigsparse_lib import vpfit

    form = vpfit.EQ3 if form is None else form
    mask = held_mask(table, by, which)
    rows = np.flatnonzero(~mask)
    train = table.iloc[rows] if hasattr(table, "iloc") else {k: np.asarray(v)[rows] for k, v in table.items()}
    test = table.iloc[np.flatnonzero(mask)] if hasattr(table, "iloc") else {
        k: np.asarray(v)[mask] for k, v in table.items()}
    gf = vpfit.certified_fit(train, form, delta=delta, log=log, **fit_kwargs)
    return HeldOut(by=by, which=which, held=mask, fit=gf, predicted=np.asarray(form.predict(gf.coefs, test), float),
                   measured=np.asarray(test["loss"], dtype=np.float64))
