"""The one error type for bad input at a boundary (CLI, file loaders, configs).

The command line turns it into a one-line message and exit code 2. Messages name the
offending row, column or argument, so a user can fix their file without guessing.

A library function names its own argument (`arg="fix"`), in the library's language; the
command line, whose flags are those arguments spelled `--fix`, says the flag instead
(`InputError.for_cli`). So `fit.fit(table, fix={"b_N": 0})` says "fix: b_N must be
positive" and `bigsparse fit --fix b_N=0` says "--fix: b_N must be positive".
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad user input. The message is shown as is, on one line.

    `arg`: the argument at fault. The message either places it itself with "{arg}" (e.g.
    "{arg} must be positive") or gets it as a prefix ("arg: message").
    """

    def __init__(self, message: str, *, arg: str | None = None):
        self.message, self.arg = message, arg
        super().__init__(self._render(arg))

    def _render(self, name: str | None) -> str:
        if name is None:
            return self.message
        return self.message.replace("{arg}", name) if "{arg}" in self.message else f"{name}: {self.message}"

    def for_cli(self) -> str:
        """The message with the argument spelled as the command line's flag (--name-with-dashes)."""
        return self._render(None if self.arg is None else "--" + self.arg.replace("_", "-"))
