"""``lisa-choreo plot RUN_DIR``: draw a past run's pictures again.

Reads the run's ``run.json`` (written by ``process`` and ``demo``: topic prefix, bootstrap
servers, store URI, the catalogue's threshold) and reads its topics, store, products and spans
again, so it works as long as the cluster keeps the run's topics (30 days) and the store is there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="redraw the pictures of a past run (process or demo)")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a folder holding run.json")
    p.add_argument(
        "--out", type=Path, help="where to write the PNG files (default: RUN_DIR/products)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from lisa_choreo import mainjob, pictures
    from lisa_choreo.records import printable

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        past = mainjob.Run.load(args.run_dir)
    except (OSError, ValueError) as exc:
        print(printable(f"lisa-choreo: {args.run_dir}: not a run folder ({exc})"), file=sys.stderr)
        return 2
    try:
        data = mainjob.collect(past)
    except Exception as exc:  # no cluster: one line, no traceback
        print(
            printable(
                f"lisa-choreo: cannot read the run's topics on {past.bootstrap_servers} "
                f"(prefix {past.topic_prefix!r}): {type(exc).__name__}: {exc}"
            ),
            file=sys.stderr,
        )
        return 2
    drawn = pictures.draw_all(data, args.out or past.products_dir)
    segments = max((s.segments for s in data.stacks), default=0)
    print(
        f"{past.kind}-{past.run_id}: {segments} segment(s) stacked, {len(data.sources)} "
        f"source(s), {len(data.quality)} conditioned segment(s)"
    )
    for p in drawn:
        print(f"{p.path}  ({p.what})")
    return 0
