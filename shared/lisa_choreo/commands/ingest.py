"""``lisa-choreo ingest FILE...``: cut LDC files into segments and publish them.

On a terminal a progress bar (stderr) follows each file: checking it (the whole file is read and
validated, then hashed), then publishing its segments, counted as they reach
``lisa.segments.raw`` (its offsets, read without a consumer group; a file's segments become
visible to consumers all at once, when its transaction commits).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="cut LDC files into segments and publish them")
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--segment-s", type=float, help="segment duration (default 86400)")
    p.add_argument("--overlap-s", type=float, help="overlap (default 0)")
    p.add_argument(
        "--revision",
        help="a reprocessing's label (letters, digits, _): new segment ids "
        "<sha256[:16]>.<revision>-<index> (default $LISA_INGEST_REVISION, empty)",
    )
    p.add_argument("--force", action="store_true", help="publish again an ingested file")
    p.set_defaults(func=run)


async def _publish_following(plan, settings, force: bool, bar, task):
    """``publish_file`` while a watcher advances the bar by the records reaching the raw topic
    (capped at the file's segments: other producers may write there too)."""
    from choreo.settings import KafkaSettings
    from choreo.store import Store
    from lisa_choreo.progress import OffsetReader
    from lisa_pipeline.topics import SEGMENTS_RAW
    from lisa_services.ingest.publish import publish_file

    kafka = KafkaSettings()
    total = len(plan.bounds)
    async with OffsetReader(kafka, [SEGMENTS_RAW]) as reader:
        start = await reader.records(SEGMENTS_RAW)
        publishing = asyncio.create_task(
            publish_file(plan, Store(), kafka, settings.overlap_s, force)
        )
        while not publishing.done():
            await asyncio.wait({publishing}, timeout=0.5)
            sent = await reader.records(SEGMENTS_RAW) - start
            bar.update(task, completed=min(max(sent, 0), total))
        result = publishing.result()
    bar.update(task, completed=total)
    return result


def run(args: argparse.Namespace) -> int:
    import logging

    from choreo.tracing import configure_tracing
    from lisa_choreo.progress import task_bar
    from lisa_science.ldc import LDCFormatError
    from lisa_services.ingest.files import plan_file
    from lisa_services.ingest.service import IngestSettings, ingest_file

    settings = IngestSettings()
    if args.segment_s:
        settings = settings.model_copy(update={"segment_s": args.segment_s})
    if args.overlap_s is not None:
        settings = settings.model_copy(update={"overlap_s": args.overlap_s})
    if args.revision is not None:
        try:
            settings = IngestSettings(**{**settings.model_dump(), "revision": args.revision})
        except ValueError as exc:
            print(f"lisa-choreo: --revision: {exc}", file=sys.stderr)
            return 2
    provider = configure_tracing("ingest")
    status = 0
    bar = task_bar()
    with bar:
        if not bar.disable:
            logging.getLogger("aiokafka").setLevel(logging.ERROR)
        for path in args.files:
            task = None
            try:
                if bar.disable:  # no terminal: the service's own one call
                    result = ingest_file(path, settings, force=args.force)
                else:
                    task = bar.add_task(f"{path.name}: checking", total=None)
                    plan = plan_file(
                        path, settings.segment_s, settings.overlap_s, revision=settings.revision
                    )
                    bar.update(
                        task,
                        description=f"{path.name}: publishing {len(plan.bounds)} segment(s)",
                        total=len(plan.bounds),
                        completed=0,
                    )
                    result = asyncio.run(_publish_following(plan, settings, args.force, bar, task))
            except LDCFormatError as exc:
                if task is not None:
                    bar.remove_task(task)
                print(f"lisa-choreo: refused {path}: {exc}", file=sys.stderr)
                status = 2
                continue
            verb = "published" if result.published else "already ingested, published nothing for"
            print(f"{path}: {verb} {result.segments} segment(s)")
    provider.shutdown()
    return status
