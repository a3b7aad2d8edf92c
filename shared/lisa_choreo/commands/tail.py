"""``lisa-choreo tail <topic>...``: print a topic's events, for analysts and operators.

Reads without a consumer group (nothing committed, no rebalance of any service); the logic and
the rendering live in ``lisa_choreo.tailing``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tail",
        help="print the events of topics (joins no consumer group, commits nothing)",
        description="Print the events of topics (names without LISA_KAFKA_TOPIC_PREFIX). "
        "Without --follow, stops at the end offsets as of start.",
    )
    p.add_argument("topics", nargs="+", metavar="topic", help="e.g. lisa.candidates.gb")
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--from-beginning",
        dest="start",
        action="store_const",
        const="beginning",
        help="every record still retained",
    )
    start.add_argument(
        "--from-end",
        dest="start",
        action="store_const",
        const="end",
        help="only records produced from now on (default; useful with --follow)",
    )
    start.add_argument(
        "--from-time",
        metavar="TIME",
        help="records from a time on: ISO 8601 (naive = UTC) or ago, like -1h, -30m, -2d",
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    p.add_argument(
        "--type",
        dest="types",
        action="append",
        default=[],
        metavar="CE_TYPE",
        help="only this ce_type (repeatable)",
    )
    p.add_argument("--subject", metavar="GLOB", help="only subjects matching, e.g. 'a1b2*-3'")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per record: topic, partition, offset, key, headers, body",
    )
    p.set_defaults(func=run, start="end")
    # `--from-time -1h`: Python < 3.13 takes "-1h" for an option; 3.13 reads any "-<digit>..." as
    # a value when no option looks like a number, and this does the same here.
    if hasattr(p, "_negative_number_matcher"):
        p._negative_number_matcher = re.compile(r"^-\.?\d")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from aiokafka.errors import KafkaError

    from choreo.settings import KafkaSettings
    from lisa_choreo import tailing

    try:
        start = (
            tailing.Start("time", tailing.parse_time(args.from_time))
            if args.from_time
            else tailing.Start(args.start)
        )
    except ValueError as exc:
        print(f"lisa-choreo: {exc}", file=sys.stderr)
        return 2
    # aiokafka's own retries and warnings are not the analyst's news; failures are, in one line.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    settings = KafkaSettings()
    keep = tailing.Filter(frozenset(args.types), args.subject)
    try:
        outcome = asyncio.run(
            tailing.tail(settings, args.topics, start, args.follow, keep, args.json)
        )
    except LookupError as exc:
        print(f"lisa-choreo: {exc}", file=sys.stderr)
        return 2
    except (KafkaError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):  # `tail ... | head`: the reader went away
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        print(
            f"lisa-choreo: cannot read from Kafka at {settings.bootstrap_servers}: {exc}",
            file=sys.stderr,
        )
        return 2
    if outcome.interrupted:
        return 0 if args.follow else 130
    if not outcome.shown and start.kind == "end" and not args.follow:
        print("lisa-choreo: nothing new (add --from-beginning, --from-time or -f)", file=sys.stderr)
    return 0
