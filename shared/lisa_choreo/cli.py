"""``lisa-choreo``: one console script, one subcommand per job.

The commands are listed here, explicitly and in help order; each lives in
``lisa_choreo.commands.<name>`` with ``register(subparsers)`` and ``run(args)``. A new operator
command is one module there and one line here.
"""

from __future__ import annotations

import argparse
import sys

from lisa_choreo.commands import (
    acl,
    campaign,
    catalog,
    demo,
    dlq,
    ingest,
    lab,
    manifests,
    orchestrate,
    plot,
    process,
    report,
    retract,
    run,
    schemas,
    simulate,
    stack,
    step,
    tail,
    topics,
    topology,
    trace,
)

COMMANDS = (
    process,
    orchestrate,
    campaign,
    demo,
    stack,
    lab,
    run,
    topics,
    simulate,
    ingest,
    catalog,
    tail,
    trace,
    dlq,
    step,
    retract,
    report,
    plot,
    acl,
    topology,
    schemas,
    manifests,
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
        code = args.func(args)
        sys.stdout.flush()  # a reader gone away shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # `lisa-choreo ... | head -1`: the reader closed the pipe. Exit quietly with the status
        # of a process killed by SIGPIPE (128 + 13); stdout goes to devnull so that Python's
        # own flush at exit does not fail again (the Python docs' recipe, "Note on SIGPIPE").
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except StackError as exc:
        print(f"lisa-choreo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
