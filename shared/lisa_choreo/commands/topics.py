"""``lisa-choreo topics``: create the topology's topics on the configured cluster."""

from __future__ import annotations

import argparse
import asyncio


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("topics", help="create the topology's topics on the configured cluster")
    p.add_argument("--replication", type=int, default=1)
    p.add_argument("--min-isr", type=int, default=1)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from choreo.settings import KafkaSettings
    from choreo.topology import ensure_topics
    from lisa_choreo.registry import topology

    created = asyncio.run(
        ensure_topics(KafkaSettings(), topology().all_topics(), args.replication, args.min_isr)
    )
    print(f"created {len(created)} topic(s): {', '.join(created)}" if created else "all exist")
    return 0
