"""``lisa-choreo ingest FILE...``: cut LDC files into segments and publish them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="cut LDC files into segments and publish them")
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--segment-s", type=float, help="segment duration (default 86400)")
    p.add_argument("--overlap-s", type=float, help="overlap (default 0)")
    p.add_argument("--force", action="store_true", help="publish again an ingested file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from choreo.tracing import configure_tracing
    from lisa_science.ldc import LDCFormatError
    from lisa_services.ingest.service import IngestSettings, ingest_file

    settings = IngestSettings()
    if args.segment_s:
        settings = settings.model_copy(update={"segment_s": args.segment_s})
    if args.overlap_s is not None:
        settings = settings.model_copy(update={"overlap_s": args.overlap_s})
    provider = configure_tracing("ingest")
    status = 0
    for path in args.files:
        try:
            result = ingest_file(path, settings, force=args.force)
        except LDCFormatError as exc:
            print(f"lisa-choreo: refused {path}: {exc}", file=sys.stderr)
            status = 2
            continue
        verb = "published" if result.published else "already ingested, published nothing for"
        print(f"{path}: {verb} {result.segments} segment(s)")
    provider.shutdown()
    return status
