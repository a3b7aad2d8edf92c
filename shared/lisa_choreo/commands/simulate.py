"""``lisa-choreo simulate OUT``: an LDC-format file of TDI noise and Galactic binaries."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="write an LDC-format file of TDI noise and sources")
    p.add_argument("out", type=Path)
    p.add_argument("--days", type=float, default=1.0)
    p.add_argument("--dt", type=float, default=5.0, help="cadence in seconds (default 5)")
    p.add_argument("--noise", choices=["analytic", "instrument", "none"], default="analytic")
    p.add_argument(
        "--sources",
        default="verification",
        help="verification, none, or a catalogue CSV (see lisa_science.binaries)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--t0", type=float, default=0.0, help="start time (s; 0 = orbit phase 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import warnings

    from lisa_choreo.simfile import DAY, SimulationError, simulate

    # The simulators warn once per source and chunk about file versions: not the operator's news.
    warnings.filterwarnings("ignore", module="lisaconstants")
    for name in ("lisaorbits", "lisagwresponse", "pytdi", "lisainstrument"):
        logging.getLogger(name).setLevel(logging.ERROR)

    try:
        out = simulate(
            args.out, args.days * DAY, args.dt, args.noise, args.sources, args.seed, args.t0
        )
    except SimulationError as exc:
        print(f"lisa-choreo: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
