"""The one error type for bad input at a boundary (CLI, file loaders, configs).

The command line turns it into a one-line message and exit code 2. Messages name the
offending row, column or argument, so a user can fix their file without guessing.
"""


class InputError(ValueError):
    """Bad user input. The message is shown as is, on one line."""
