"""More ``lisa-choreo`` subcommands, one module each, found at start-up.

A module here defines ``register(subparsers)`` that adds its parser and sets ``func`` (a callable
taking the parsed ``argparse.Namespace`` and returning an exit code). Heavy imports go inside the
function so ``lisa-choreo --help`` stays fast.
"""
