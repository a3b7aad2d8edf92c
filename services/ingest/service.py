"""ingest as a CLI on one file, or as a service watching an inbox folder.

Inbox: every regular ``*.h5``/``*.hdf5`` file that has stopped growing is ingested, then moved to
``done/``; a refused file goes to ``rejected/`` beside a ``.reason.txt`` saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
from pathlib import Path

import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from choreo import Produces, Step
from choreo.health import Health
from choreo.logs import configure_logging
from choreo.settings import KafkaSettings
from choreo.store import Store
from choreo.tracing import configure_tracing
from lisa_pipeline.events import SegmentRaw
from lisa_pipeline.topics import SEGMENTS_RAW
from lisa_science.ldc import LDCFormatError
from lisa_services.ingest.files import plan_file
from lisa_services.ingest.publish import IngestResult, publish_file

log = structlog.get_logger(__name__)

# ingest consumes files, not a topic: its declaration lists only what it produces.
step = Step(
    "ingest",
    consumes=[],
    produces=[Produces(SEGMENTS_RAW, SegmentRaw)],
    description="cuts LDC files into segments",
)


class IngestSettings(BaseSettings):
    """``LISA_INGEST_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="LISA_INGEST_")

    segment_s: float = Field(86_400.0, gt=0, description="segment duration (s)")
    overlap_s: float = Field(0.0, ge=0, description="overlap of consecutive segments (s)")
    inbox: Path = Field(Path("inbox"), description="folder watched by the ingest service")
    poll_s: float = Field(2.0, gt=0)


def ingest_file(
    path: Path,
    settings: IngestSettings | None = None,
    kafka: KafkaSettings | None = None,
    force: bool = False,
) -> IngestResult:
    """Validate, store and publish one file. Raises LDCFormatError (nothing published) if bad."""
    settings = settings or IngestSettings()
    plan = plan_file(path, settings.segment_s, settings.overlap_s)
    return asyncio.run(
        publish_file(plan, Store(), kafka or KafkaSettings(), settings.overlap_s, force)
    )


async def _watch(
    settings: IngestSettings, kafka: KafkaSettings, stop: asyncio.Event, health: Health
) -> None:
    inbox = settings.inbox
    for sub in ("done", "rejected"):
        (inbox / sub).mkdir(parents=True, exist_ok=True)
    sizes: dict[Path, int] = {}
    store = Store()
    log.info("step started", step="ingest", inbox=str(inbox.resolve()))
    health.set_ready(True, inbox=str(inbox.resolve()))
    while not stop.is_set():
        health.beat()
        for path in sorted(p for p in inbox.iterdir() if p.suffix in (".h5", ".hdf5")):
            size = path.stat().st_size
            if sizes.get(path) != size:  # still being copied in: look again next round
                sizes[path] = size
                continue
            sizes.pop(path)
            try:
                plan = await asyncio.to_thread(
                    plan_file, path, settings.segment_s, settings.overlap_s
                )
                result = await publish_file(plan, store, kafka, settings.overlap_s)
                log.info(
                    "ingested", file=path.name, segments=result.segments, published=result.published
                )
                shutil.move(path, inbox / "done" / path.name)
            except LDCFormatError as exc:
                log.error("file refused", file=path.name, reason=str(exc))
                shutil.move(path, inbox / "rejected" / path.name)
                (inbox / "rejected" / f"{path.name}.reason.txt").write_text(f"{exc}\n")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.poll_s)


def main() -> int:
    """The inbox watcher, until SIGTERM/SIGINT (a file in progress is finished first)."""
    configure_logging("ingest")
    provider = configure_tracing("ingest")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        health = Health("ingest")
        await health.serve()
        try:
            await _watch(IngestSettings(), KafkaSettings(), stop, health)
        finally:
            await health.close()

    try:
        asyncio.run(run())
    finally:
        provider.shutdown()
    return 0
