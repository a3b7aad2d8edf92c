"""``lisa-choreo retract SEGMENT_ID... [--file PATH]``: withdraw segments from the products.

Publishes one ``lisa.segment.retracted.v1`` per segment, keyed by segment id, on the compacted
``lisa.retractions``. Each stateful step compensates its own state: the catalogue subtracts the
segment's statistic from every bin, drops its estimates, demotes the sources that fall below the
threshold (status ``demoted`` or ``retracted`` on ``lisa.catalog``), and rewrites ``catalog.csv``
and ``catalog.h5``. A retraction is idempotent (retracting twice changes nothing) and may come
before its segment, which is then never counted.

``--file`` retracts every segment ingest cut from a file: their ids are the file content's
SHA-256 (first 16 hex digits) and the segment's index, ``<sha256[:16]>-<index:05d>``
(``lisa_services.ingest.files``), computed with the ingest settings (``LISA_INGEST_SEGMENT_S``,
``LISA_INGEST_OVERLAP_S``, or ``--segment-s``/``--overlap-s``), so a file retracted before it is
ingested never reaches the catalogue either.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retract", help="withdraw segments (or a file's) from the catalogue")
    p.add_argument("segment_ids", nargs="*", metavar="SEGMENT_ID")
    p.add_argument(
        "--file", type=Path, action="append", default=[], help="every segment of this file"
    )
    p.add_argument("--segment-s", type=float, help="segment duration of --file (default 86400)")
    p.add_argument("--overlap-s", type=float, help="overlap of --file's segments (default 0)")
    p.add_argument(
        "--revision", default="", help="the revision --file was ingested with (default none)"
    )
    p.add_argument("--reason", default="", help="why (kept with the retraction)")
    p.set_defaults(func=run)


def file_segments(path: Path, segment_s: float, overlap_s: float, revision: str = "") -> list[str]:
    """The ids ingest gives the segments of ``path`` (the whole file is checked as ingest does)."""
    from lisa_services.ingest.files import plan_file

    plan = plan_file(path, segment_s, overlap_s, revision=revision)
    return [plan.segment_id(i) for i in range(len(plan.bounds))]


async def publish(settings, retractions: list) -> None:
    """Send the retractions (``SegmentRetracted`` bodies) and wait for the acks. Each event id is
    derived from the segment id: retracting twice repeats the same fact."""
    from choreo import Envelope, derive_event_id
    from choreo.publisher import Publisher, default_client_id, make_producer
    from choreo.reader import partitions_of
    from lisa_pipeline.topics import RETRACTIONS

    await partitions_of(settings, [settings.topic(RETRACTIONS)])  # LookupError: not created
    producer = make_producer(settings, default_client_id("lisa-choreo-retract"))
    await producer.start()
    try:
        envelopes = [
            (
                RETRACTIONS,
                Envelope.root(
                    r,
                    source="lisa-choreo",
                    id=derive_event_id(r.segment_id, "retract"),
                    subject=r.segment_id,
                    key=r.segment_id,
                ),
            )
            for r in retractions
        ]
        await Publisher(producer, settings).publish(envelopes)
    finally:
        await producer.stop()


def run(args: argparse.Namespace) -> int:
    from choreo.settings import KafkaSettings
    from choreo.tracing import configure_tracing
    from lisa_choreo.commands.step import requested_by
    from lisa_pipeline.events import SegmentRetracted
    from lisa_pipeline.topics import RETRACTIONS
    from lisa_science.ldc import LDCFormatError
    from lisa_services.ingest.service import IngestSettings

    ingest = IngestSettings()
    segment_s = args.segment_s or ingest.segment_s
    overlap_s = ingest.overlap_s if args.overlap_s is None else args.overlap_s
    wanted: list[tuple[str, str | None]] = [(s, None) for s in args.segment_ids if s.strip()]
    for path in args.file:
        try:
            ids = file_segments(path, segment_s, overlap_s, args.revision)
            wanted += [(s, str(path)) for s in ids]
        except (LDCFormatError, OSError, ValueError) as exc:
            print(f"lisa-choreo: {path}: {exc}", file=sys.stderr)
            return 2
    if not wanted:
        print("lisa-choreo: name the segments to retract (ids or --file)", file=sys.stderr)
        return 2
    by = requested_by()
    seen: set[str] = set()
    retractions = []
    for segment_id, source_file in wanted:
        if segment_id not in seen:
            seen.add(segment_id)
            retractions.append(
                SegmentRetracted(
                    segment_id=segment_id,
                    reason=args.reason,
                    source_file=source_file,
                    requested_by=by,
                )
            )
    settings = KafkaSettings()
    provider = configure_tracing("lisa-choreo")  # the retraction's trace starts here
    try:
        asyncio.run(publish(settings, retractions))
    except LookupError as exc:
        print(f"lisa-choreo: {exc}; create it with `lisa-choreo topics`", file=sys.stderr)
        return 2
    finally:
        provider.shutdown()
    topic = settings.topic(RETRACTIONS)
    print(f"retracted {len(retractions)} segment(s) on {topic}:")
    for r in retractions:
        print(f"  {r.segment_id}" + (f"  ({r.source_file})" if r.source_file else ""))
    return 0
