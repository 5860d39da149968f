"""`bigsparse`: the command line.

Each sub-command lives in its own module under `bigsparse_lib/commands/` and exposes
`register(subparsers)`, which adds its parser and sets `func=run` on it. `run(args)`
returns an exit code (or None for 0). Bad input raises `InputError`; here it becomes a
one-line message on stderr and exit code 2, as argparse does for bad flags.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from bigsparse_lib import commands
from bigsparse_lib.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bigsparse",
        description="Scaling laws for sparsely-connected foundation models (Frantar et al., ICLR 2024).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"bigsparse_lib.commands.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except InputError as e:
        print(f"bigsparse {args.command}: error: {e.for_cli()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # train.Interrupted (SIGTERM/SIGINT) says what was saved
        print(f"bigsparse {args.command}: interrupted" + (f" by {e}" if str(e) else ""), file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
