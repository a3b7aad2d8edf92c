"""``lisa-choreo trace <segment-id | trace-id>``: one flow through the services, as a tree.

From the tracing backend when it has the trace; otherwise (tracing off, backend down) from the
events' lineage on the topics. The first line says which source answered.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "trace",
        help="one segment's flow through the services (tracing backend, else the topics)",
    )
    p.add_argument("key", metavar="segment-id|trace-id")
    p.add_argument("--json", action="store_true", help="the spans as JSON, for machines")
    p.add_argument(
        "--source",
        choices=["auto", "backend", "topics"],
        default="auto",
        help="auto (default): the backend, else the topics",
    )
    p.add_argument(
        "--backend-url",
        help="Zipkin's address (default $LISA_ZIPKIN_URL, else http://127.0.0.1:9411)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from lisa_choreo import flows
    from lisa_choreo.records import printable

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a down broker is reported once
    try:
        flow = flows.rebuild(args.key, args.source, args.backend_url)
    except flows.FlowNotFound as exc:
        print(printable(f"lisa-choreo: {exc}"), file=sys.stderr)
        return 1
    except flows.SourceUnavailable as exc:
        print(printable(f"lisa-choreo: {exc}"), file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(flow.to_json(), indent=2, default=str))
    else:
        print("\n".join(flow.render()))
    return 0
