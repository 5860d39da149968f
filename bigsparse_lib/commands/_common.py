"""Argument helpers shared by the sub-commands: reading a law, parsing lists, printing results."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

from bigsparse_lib.errors import InputError
from bigsparse_lib.law import DenseLaw, Law, SparseLaw


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def add_law_source(parser: argparse.ArgumentParser) -> None:
    """--preset t5|vit (Table 7) or --coefs FILE.json (the output of `bigsparse fit --json`)."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--preset", choices=["t5", "vit"], help="the paper's Table 7 coefficients")
    group.add_argument("--coefs", metavar="FILE.json",
                       help="coefficients: the `coefs` object printed by `bigsparse fit --json`, or its whole output")


def law_from_args(args: argparse.Namespace) -> Law:
    if getattr(args, "preset", None):
        from bigsparse_lib import paper

        return paper.TABLE7[args.preset]
    return read_coefs(args.coefs)


def sparse_law_from_args(args) -> SparseLaw:
    """The law of --preset/--coefs, which must be the sparse law (a dense one has no a_S, b_S, c_S)."""
    law = law_from_args(args)
    if not isinstance(law, SparseLaw):
        raise InputError(f"--coefs: {args.coefs} holds a dense law (a_N, b_N, a_D, b_D, c); "
                         f"`bigsparse {args.command}` needs the sparse law's a_S, b_S, c_S (fit without --dense)")
    return law


def read_coefs(path: str | Path) -> Law:
    """A SparseLaw or DenseLaw from a JSON file holding coefs, or a fit output with a `coefs` key."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"--coefs: no such file: {path}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"--coefs: {path} is not readable JSON ({e})") from None
    if isinstance(obj, dict) and isinstance(obj.get("coefs"), dict):
        obj = obj["coefs"]
    if not isinstance(obj, dict):
        raise InputError(f"--coefs: {path} must hold a JSON object of coefficients")
    keys = set(obj)
    for cls in (SparseLaw, DenseLaw):
        if keys == set(cls.names):
            return cls.from_dict(check_coefs(obj, cls, f"--coefs: {path}"))
    raise InputError(
        f"--coefs: {path} has keys {sorted(keys)}; expected the sparse law's {list(SparseLaw.names)} "
        f"or the dense law's {list(DenseLaw.names)}"
    )


# The exponents that eq. 3 / eq. 2 need positive: the loss must fall with N and D, and eq. 7
# divides by b_N. b_S may be 0 (sparsity then has no effect); prefactors must be positive.
EXPONENTS = ("b_S", "b_N", "b_D")


def coef_problem(name: str, value: float) -> str | None:
    """Why `value` is not an acceptable coefficient `name` (None if it is); shared by --coefs and --fix."""
    if not math.isfinite(value):
        return f"must be finite, got {value}"
    if name == "b_S":
        return None if value >= 0 else f"must be >= 0, got {value:g}"
    if value <= 0:
        why = " (the loss must fall with N and D; eq. 7 divides by b_N)" if name in EXPONENTS else ""
        return f"must be positive{why}, got {value:g}"
    return None


def check_coefs(obj: dict, cls, where: str) -> dict[str, float]:
    """The coefficients of `obj` as floats, each checked as `--fix` checks it (named on error).

    Every value must be a JSON number (not a string, boolean or null) and pass `coef_problem`.
    """
    out = {}
    for name in cls.names:
        v = obj[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"{where}: coefficient {name} must be a number, got {json.dumps(v)}")
        problem = coef_problem(name, float(v))
        if problem:
            raise InputError(f"{where}: coefficient {name} {problem}")
        out[name] = float(v)
    return out


def float_list(text: str, name: str) -> list[float]:
    """'0.5,0.75' -> [0.5, 0.75], with an error that names the argument."""
    if not text.strip():
        raise InputError(f"{name}: expected at least one number")
    values = []
    for i, x in enumerate(text.split(","), 1):
        if not x.strip():
            raise InputError(f"{name}: value {i} of {text!r} is empty; expected comma-separated numbers")
        try:
            values.append(float(x))
        except ValueError:
            raise InputError(f"{name}: value {i} of {text!r} is {x.strip()!r}, not a number") from None
    if any(not math.isfinite(v) for v in values):
        raise InputError(f"{name}: values must be finite, got {text!r}")
    return values


def positive(value: float, name: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a positive number, got {value}")
    return value


def sparsity(value: float, name: str = "--sparsity") -> float:
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise InputError(f"{name} must be in [0, 1), got {value}")
    return value


def emit(args: argparse.Namespace, result: dict[str, Any], text: Callable[[dict[str, Any]], str]) -> None:
    """JSON on stdout with --json, else the human-readable rendering `text(result)`."""
    if getattr(args, "json", False):
        json.dump(result, sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text(result).rstrip("\n") + "\n")
