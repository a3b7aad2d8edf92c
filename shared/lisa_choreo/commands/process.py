"""``lisa-choreo process FILE...``: the main job on the user's own LDC/Radler files.

Checks every file (a bad one: exit 2, its name and reason, nothing started), brings the local
stack up if no cluster answers, runs every service as its own process on a private topic prefix,
ingests the files, shows progress per stage, and ends with the catalogue, the dead letters and
where the products, pictures, logs and traces are. Services are stopped at the end, on failure
and on Ctrl-C. See ``lisa_choreo.mainjob``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "process",
        help="the main job on your files: every service, progress, catalogue, pictures",
        description="Run the whole pipeline on LDC (obs/tdi) or Radler "
        "(H5LISA/PreProcess/TDIdata) HDF5 files. Exit 0: every segment catalogued; 1: the run "
        "failed or dead-lettered segments; 2: a file was refused (nothing was started).",
    )
    p.add_argument("files", type=Path, nargs="+", metavar="FILE")
    p.add_argument(
        "--segment-s",
        type=float,
        help="segment duration in seconds (default $LISA_INGEST_SEGMENT_S, else 86400)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="run folder for products, pictures, logs, store and run.json "
        "(default $LISA_CHOREO_HOME/runs/process-<id>)",
    )
    p.add_argument(
        "--stall-s",
        type=float,
        default=600.0,
        help="give up when no segment moved for this long (default 600)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lisa_choreo import mainjob

    return mainjob.main(args.files, args.segment_s, args.out, args.stall_s)
