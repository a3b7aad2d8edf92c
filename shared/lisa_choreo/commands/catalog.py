"""``lisa-choreo catalog``: the current catalogue, read from the compacted ``lisa.catalog``."""

from __future__ import annotations

import argparse
import asyncio
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalog", help="print the current catalogue of Galactic binaries")
    p.add_argument("--csv", action="store_true", help="CSV instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from choreo.settings import KafkaSettings
    from lisa_choreo.catalogue import format_catalogue, format_refined, read_catalogue
    from lisa_pipeline.products import csv_text

    try:
        sources = asyncio.run(read_catalogue(KafkaSettings()))
    except LookupError as exc:
        print(f"lisa-choreo: {exc}", file=sys.stderr)
        return 2
    if args.csv:
        print(csv_text(sources), end="")
    else:
        print(format_catalogue(sources))
        if any(s.ecliptic_latitude_rad is not None for s in sources):
            print(format_refined(sources))
    return 0
