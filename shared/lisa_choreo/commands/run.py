"""``lisa-choreo run SERVICE``: one service in this process, until SIGTERM."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from lisa_choreo.registry import SERVICE_MODULES

    p = sub.add_parser("run", help="run one service until SIGTERM")
    p.add_argument("service", help=", ".join(SERVICE_MODULES))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lisa_choreo.registry import load_service

    return load_service(args.service).main()
