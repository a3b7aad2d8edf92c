"""``lisa-choreo report``: per topic and service: consumed, produced, dead-lettered, lag."""

from __future__ import annotations

import argparse
import asyncio


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="accounting: every segment catalogued or dead-lettered")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from choreo.settings import KafkaSettings
    from lisa_choreo.accounting import build_report, render

    report = asyncio.run(build_report(KafkaSettings()))
    print("\n".join(render(report)))
    return 0 if not report.segments.unaccounted else 1
