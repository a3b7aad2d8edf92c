"""``lisa-choreo demo``: the main job on simulated data."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the main job on simulated data: simulate, then process the file"
    )
    p.add_argument("--days", type=int, default=30, help="daily segments to simulate")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lisa_choreo import demo

    return demo.main(days=args.days, seed=args.seed)
