"""``lisa-choreo``: one console script, one subcommand per job.

The commands are listed here, explicitly and in help order; each lives in
``lisa_choreo.commands.<name>`` with ``register(subparsers)`` and ``run(args)``. A new operator
command is one module there and one line here.
"""

from __future__ import annotations

import argparse
import sys

from lisa_choreo.commands import (
    catalog,
    demo,
    dlq,
    ingest,
    report,
    run,
    schemas,
    simulate,
    stack,
    tail,
    topics,
    topology,
    trace,
)

COMMANDS = (
    demo,
    stack,
    run,
    topics,
    simulate,
    ingest,
    catalog,
    tail,
    trace,
    dlq,
    report,
    topology,
    schemas,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lisa-choreo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from choreo.logs import configure_logging
    from lisa_choreo.localstack.brokers import StackError

    if args.command != "run":  # a service configures its own logs, named after it
        configure_logging("lisa-choreo", level="WARNING")
    try:
        return args.func(args)
    except StackError as exc:
        print(f"lisa-choreo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
