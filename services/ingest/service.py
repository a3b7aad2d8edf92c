"""ingest as a CLI on one file, or as a service watching an inbox folder.

Inbox (see ``inbox``): every regular ``*.h5``/``*.hdf5`` file that has stopped growing is
ingested, then moved to ``done/``; a refused file goes to ``rejected/`` beside a ``.reason.txt``
saying why; a file is left in place only while the cluster or the store is unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import structlog
from aiokafka.errors import KafkaError
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from choreo import Produces, Step
from choreo.errors import TransientError
from choreo.health import Health
from choreo.logs import configure_logging
from choreo.settings import KafkaSettings
from choreo.store import Store
from choreo.tracing import configure_tracing
from lisa_pipeline.events import SegmentRaw
from lisa_pipeline.topics import SEGMENTS_RAW
from lisa_science.ldc import LDCFormatError
from lisa_services.ingest.files import plan_file
from lisa_services.ingest.inbox import Inbox
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
    revision: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_]{0,32}$",
        description="a reprocessing's label: segment ids <sha256[:16]>.<revision>-<index>",
    )


def ingest_file(
    path: Path,
    settings: IngestSettings | None = None,
    kafka: KafkaSettings | None = None,
    force: bool = False,
) -> IngestResult:
    """Validate, store and publish one file. Raises LDCFormatError (nothing published) if bad."""
    settings = settings or IngestSettings()
    plan = plan_file(path, settings.segment_s, settings.overlap_s, revision=settings.revision)
    return asyncio.run(
        publish_file(plan, Store(), kafka or KafkaSettings(), settings.overlap_s, force)
    )


async def _watch(
    settings: IngestSettings, kafka: KafkaSettings, stop: asyncio.Event, health: Health
) -> None:
    inbox = Inbox(settings.inbox)
    inbox.prepare()
    store = Store()
    log.info("step started", step="ingest", inbox=str(inbox.root.resolve()))
    health.set_ready(True, inbox=str(inbox.root.resolve()))
    while not stop.is_set():
        health.beat()
        ready, refuse = inbox.scan()
        for path, reason in refuse:
            _settle(inbox.reject, path, reason)
        for path in ready:
            if stop.is_set():
                break
            await _ingest_one(inbox, path, settings, store, kafka)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.poll_s)


async def _ingest_one(
    inbox: Inbox, path: Path, settings: IngestSettings, store: Store, kafka: KafkaSettings
) -> None:
    """One file: done, rejected with its reason, or left for the next scan when the cluster or
    the store is unavailable. Nothing a file holds can stop the watcher."""
    try:
        plan = await asyncio.to_thread(
            plan_file, path, settings.segment_s, settings.overlap_s, revision=settings.revision
        )
        result = await publish_file(plan, store, kafka, settings.overlap_s)
    except (KafkaError, TransientError) as exc:
        log.warning(
            "cluster or store unavailable, file kept for later", file=path.name, error=repr(exc)
        )
        return
    except LDCFormatError as exc:
        _settle(inbox.reject, path, str(exc))
        return
    except Exception as exc:  # last resort: a file no check foresaw
        log.exception("file failed", file=path.name)
        _settle(inbox.reject, path, f"{type(exc).__name__}: {exc}")
        return
    log.info("ingested", file=path.name, segments=result.segments, published=result.published)
    _settle(lambda p, _: inbox.accept(p), path, "")


def _settle(move, path: Path, reason: str) -> None:
    try:
        target = move(path, reason)
    except OSError as exc:
        log.error("cannot move a file out of the inbox", file=path.name, error=str(exc))
        return
    if reason:
        log.error("file refused", file=path.name, reason=reason, moved_to=str(target))


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
