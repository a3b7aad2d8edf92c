"""The campaign's activities: each one publishes to the choreography's topics, nothing else.

No step service is called or changed: the campaign acts as an operator would, with the same
code paths as the CLI (``lisa-choreo retract``'s publisher, ingest's ``plan_file`` and
``publish_file``, ``lisa-choreo catalog``'s reader). Each activity is idempotent, because Temporal
retries it after a crash: a retraction's event id derives from its segment id, an ingested cut
has its ledger entry and transactional id per revision (republishing after a crash repeats the
same event ids, which the catalogue counts once), and a release's id derives from its campaign.
Long waits heartbeat, so a dead worker's activity moves to another worker.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from choreo import Envelope, derive_event_id
from choreo.errors import PermanentError
from choreo.settings import KafkaSettings
from lisa_choreo.campaign.contract import (
    CONFIRM,
    INGEST,
    PLAN,
    RELEASE,
    RETRACT,
    CampaignInput,
    CampaignPlan,
    ConfirmInput,
    Cut,
    IngestInput,
    ReleaseInput,
    ReleaseOutput,
    RetractInput,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")
HEARTBEAT_S = 5.0
CATALOGUE_POLL_S = 1.0


async def _heartbeating(work: Awaitable[T]) -> T:
    """Await ``work`` while telling the server this worker is alive. A ``PermanentError`` (a
    refused product, an output too large) is not retried: retrying cannot help."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_S)
        if done:
            try:
                return task.result()
            except PermanentError as exc:
                raise ApplicationError(str(exc), type=exc.reason, non_retryable=True) from exc
        activity.heartbeat()


def _plan(path: str, sha256: str, cut: Cut):
    """The file's plan for ``cut``; a file that changed since the campaign began is refused
    (``bad-input``, not retried): its new content would be another campaign."""
    from lisa_science.ldc import LDCFormatError
    from lisa_services.ingest.files import plan_file

    try:
        plan = plan_file(Path(path), cut.segment_s, cut.overlap_s, revision=cut.revision)
    except (LDCFormatError, ValueError) as exc:
        raise ApplicationError(str(exc), type="bad-input", non_retryable=True) from exc
    if plan.sha256 != sha256:
        raise ApplicationError(
            f"{Path(path).name} changed since the campaign began (SHA-256 {plan.sha256[:16]} "
            f"!= {sha256[:16]})",
            type="bad-input",
            non_retryable=True,
        )
    return plan


@activity.defn(name=PLAN)
async def plan(inp: CampaignInput) -> CampaignPlan:
    old = await asyncio.to_thread(_plan, inp.path, inp.sha256, inp.old)
    new = await asyncio.to_thread(_plan, inp.path, inp.sha256, inp.new)
    ids = [old.segment_id(i) for i in range(len(old.bounds))]
    return CampaignPlan(ids, [new.segment_id(i) for i in range(len(new.bounds))])


@activity.defn(name=RETRACT)
async def retract(inp: RetractInput) -> int:
    from lisa_choreo.commands.retract import publish
    from lisa_pipeline.events import SegmentRetracted

    retractions = [
        SegmentRetracted(
            segment_id=s,
            reason=inp.reason,
            source_file=inp.source_file,
            requested_by=inp.requested_by,
        )
        for s in inp.segment_ids
    ]
    await _heartbeating(publish(KafkaSettings(), retractions))
    log.info("segments retracted", segments=len(retractions), reason=inp.reason)
    return len(retractions)


@activity.defn(name=INGEST)
async def ingest(inp: IngestInput) -> list[str]:
    from choreo.store import Store
    from lisa_services.ingest.publish import publish_file

    plan = await asyncio.to_thread(_plan, inp.path, inp.sha256, inp.cut)
    result = await _heartbeating(publish_file(plan, Store(), KafkaSettings(), inp.cut.overlap_s))
    log.info("cut ingested", label=plan.label, segments=result.segments, new=result.published)
    return result.segment_ids


async def counted_segments(settings: KafkaSettings) -> set[str]:
    """Every segment the catalogue's state counts now: the union of the ``segments`` of each
    grid's latest value on its table changelog (``<prefix>catalog-stacks-changelog``)."""
    import json

    from choreo.reader import TopicReader
    from lisa_choreo.progress import CATALOG_CHANGELOG

    async with TopicReader(settings, [CATALOG_CHANGELOG]) as reader:
        records = await reader.snapshot()
    latest: dict[bytes | None, bytes | None] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        latest[r.key] = r.value
    counted: set[str] = set()
    for value in latest.values():
        try:
            counted.update(str(s) for s in json.loads(value or b"{}").get("segments", []))
        except (ValueError, TypeError, AttributeError):
            log.warning("unreadable catalogue state record skipped")
    return counted


@activity.defn(name=CONFIRM)
async def confirm(inp: ConfirmInput) -> int:
    """Until the catalogue counts every segment of ``counted`` and none of ``gone``; the number
    counted. Raises a retryable error at ``wait_s`` (the workflow's retry policy then decides)."""
    settings = KafkaSettings()
    want, gone = set(inp.counted), set(inp.gone)
    deadline = asyncio.get_running_loop().time() + inp.wait_s
    while True:
        try:
            counted = await counted_segments(settings)
        except LookupError:  # no catalogue has started yet
            counted = set()
        missing, stale = want - counted, gone & counted
        if not missing and not stale:
            return len(want)
        if asyncio.get_running_loop().time() > deadline:
            raise ApplicationError(
                f"the catalogue counts {len(want) - len(missing)} of {len(want)} new segments "
                f"and still {len(stale)} retracted ones after {inp.wait_s:.0f} s",
                type="catalogue-behind",
            )
        activity.heartbeat(len(want) - len(missing))
        await asyncio.sleep(CATALOGUE_POLL_S)


async def _catalogue_without(retracted: set[str], wait_s: float):
    """The catalogue once no promoted source counts a retracted segment any more (the
    catalogue applies retractions from their own topic, in its own time)."""
    from lisa_choreo.catalogue import read_catalogue

    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        catalogue = await read_catalogue(KafkaSettings())
        stale = [s.source_id for s in catalogue if retracted & set(s.contributing_segments)]
        if not stale:
            return catalogue
        if asyncio.get_running_loop().time() > deadline:
            raise ApplicationError(
                f"sources {', '.join(stale[:3])} still count retracted segments after {wait_s} s",
                type="retraction-pending",
            )
        activity.heartbeat()
        await asyncio.sleep(CATALOGUE_POLL_S)


@activity.defn(name=RELEASE)
async def release(inp: ReleaseInput) -> ReleaseOutput:
    from choreo.publisher import Publisher, default_client_id, make_producer
    from lisa_pipeline.events import CatalogueRelease
    from lisa_pipeline.products import csv_text
    from lisa_pipeline.topics import CATALOG_RELEASES

    catalogue = await _catalogue_without(set(inp.retracted), inp.wait_s)
    text = csv_text(catalogue)
    release_id = derive_event_id(inp.campaign, "release")
    body = CatalogueRelease(
        release_id=release_id,
        campaign=inp.campaign,
        source_file=inp.path,
        source_sha256=inp.sha256,
        revision=inp.cut.revision,
        segment_s=inp.cut.segment_s,
        overlap_s=inp.cut.overlap_s,
        segments=inp.segments,
        retracted=inp.retracted,
        n_sources=len(catalogue),
        csv=text,
        csv_sha256=hashlib.sha256(text.encode()).hexdigest(),
        requested_by=inp.requested_by,
    )
    settings = KafkaSettings()
    producer = make_producer(settings, default_client_id("lisa-campaign"))
    await producer.start()
    try:
        publisher = Publisher(producer, settings)
        envelope = Envelope.root(
            body, source="lisa-campaign", id=release_id, subject=release_id, key=release_id
        )

        async def send():
            publisher.check_size(CATALOG_RELEASES, envelope)
            return await (await publisher.send(CATALOG_RELEASES, envelope))

        delivered = await _heartbeating(send())
    finally:
        await producer.stop()
    log.info("catalogue released", release=release_id, sources=len(catalogue))
    return ReleaseOutput(
        release_id,
        len(catalogue),
        body.csv_sha256,
        CATALOG_RELEASES,
        delivered.partition,
        delivered.offset,
    )


ACTIVITIES = [plan, retract, ingest, confirm, release]
