"""The project's shared vocabulary: the names every module agrees on, declared once.

- `FAMILIES`: the model families of §3.1 (T5 on C4, ViT on JFT-4B).
- `PRESETS`: the three scales a chapter runs at (`smoke` for tests, `toy` on a laptop CPU,
  `full` the paper's). `train.RECIPES` maps them to each family's training recipe.
- `METHODS`: how a run sparsifies (`pruning.PruningConfig`): gradual magnitude pruning (the
  paper's, App. A), one-shot (§4.2), AC/DC (App. B), or dense.
- `NM_PATTERNS`: the paper's n:m patterns (§4.1, Table 3); any n:m with 0 < n < m parses.
- `TIDY_COLUMNS`: the columns every sweep table has (DESIGN.md's tidy table).

and the one parser of a sparsity pattern, `parse_pattern`, with `nm_sparsity` and
`pattern_group` derived from it. Every other module imports these from here.
"""
from __future__ import annotations

import re

from bigsparse_lib.errors import InputError

FAMILIES = ("t5", "vit")
PRESETS = ("smoke", "toy", "full")
METHODS = ("gmp", "oneshot", "acdc", "none")
NM_PATTERNS = ("2:4", "1:4", "4:8", "2:8")  # §4.1, Table 3
UNSTRUCTURED = "unstructured"
TIDY_COLUMNS = ("sparsity", "nnz", "data", "loss")

_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """'unstructured' -> None, 'n:m' -> (n, m) with 0 < n < m. InputError for anything else."""
    if pattern == UNSTRUCTURED:
        return None
    match = _NM.match(str(pattern))
    if not match:
        raise InputError(f"unknown sparsity pattern {pattern!r}; use 'unstructured' or 'n:m' such as '2:4'")
    n, m = int(match.group(1)), int(match.group(2))
    if not 0 < n < m:
        raise InputError(f"n:m pattern {pattern!r} needs 0 < n < m")
    return n, m


def _nm(pattern: str) -> tuple[int, int]:
    nm = parse_pattern(pattern)
    if nm is None:
        raise InputError(f"{pattern!r} is not an n:m pattern")
    return nm


def nm_sparsity(pattern: str) -> float:
    """'2:4' -> 0.5: n of every m weights are kept, S = 1 - n/m (§4.1)."""
    n, m = _nm(pattern)
    return 1.0 - n / m


def pattern_group(pattern: str) -> int:
    """'2:4' -> 4: the group size m of an n:m pattern (Table 3's rows are the n:4 and n:8 families)."""
    return _nm(pattern)[1]
