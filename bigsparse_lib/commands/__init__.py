"""Sub-commands of `bigsparse`, one module each; `bigsparse_lib.cli` discovers them.

A module here defines `register(subparsers)`, adding its parser with
`set_defaults(func=run)`. Shared argument helpers are in `_common.py`.
"""
