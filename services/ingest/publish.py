"""Storing segments and publishing their events in one Kafka transaction per file.

Consumers read committed data only, so a file is published whole or not at all. A ledger entry
written after the commit makes re-ingesting the same content a no-op.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog
from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.trace import Link

from choreo import Envelope, derive_event_id
from choreo.publisher import Publisher
from choreo.settings import KafkaSettings
from choreo.store import Store
from lisa_pipeline.events import SegmentRaw, SegmentTiming
from lisa_pipeline.topics import SEGMENTS_RAW
from lisa_services.ingest.files import FilePlan

log = structlog.get_logger(__name__)
_tracer = trace.get_tracer("ingest")


@dataclass(frozen=True)
class IngestResult:
    path: Path
    segments: int
    published: bool
    segment_ids: list[str]


def ledger_note(plan: FilePlan) -> str:
    """The store's note that a cut of a file (by content and revision) was published whole."""
    return f"ingested/{plan.identity}.done"


def _segment_event(plan: FilePlan, index: int, store: Store, overlap_s: float) -> SegmentRaw:
    data = plan.read(index)
    with _tracer.start_as_current_span("store segment") as span:
        ref = store.put({"X": data.x, "Y": data.y, "Z": data.z}, {"t0": data.t0, "dt": data.dt})
        span.set_attributes({"lisa.segment_id": plan.segment_id(index), "lisa.samples": data.n})
    stacked = np.stack([data.x, data.y, data.z])
    return SegmentRaw(
        timing=SegmentTiming(
            segment_id=plan.segment_id(index), t0=data.t0, dt=data.dt, n_samples=data.n
        ),
        index=index,
        source_file=str(plan.path),
        source_sha256=plan.sha256,
        overlap_s=overlap_s,
        data=ref,
        nan_fraction=float(np.isnan(stacked).any(axis=0).mean()),
    )


async def publish_file(
    plan: FilePlan, store: Store, kafka: KafkaSettings, overlap_s: float, force: bool = False
) -> IngestResult:
    ids = [plan.segment_id(i) for i in range(len(plan.bounds))]
    ledger = ledger_note(plan)
    if not force and await asyncio.to_thread(store.note_exists, ledger):
        log.info("already ingested, nothing published", file=str(plan.path), sha256=plan.sha256)
        return IngestResult(plan.path, len(ids), False, ids)
    producer = AIOKafkaProducer(
        **kafka.client_options(),
        transactional_id=kafka.topic(f"ingest-{plan.label}"),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
    )
    await producer.start()
    publisher = Publisher(producer, kafka)
    try:
        with _tracer.start_as_current_span(
            "ingest file",
            attributes={
                "lisa.file": str(plan.path),
                "lisa.sha256": plan.sha256,
                "lisa.segments": len(ids),
            },
        ) as file_span:
            file_link = Link(file_span.get_span_context())
            async with producer.transaction():
                futures = []
                for index in range(len(ids)):
                    # One trace per segment: its root links back to the file's ingest span.
                    with _tracer.start_as_current_span(
                        "ingest segment",
                        context=trace.set_span_in_context(trace.INVALID_SPAN),
                        links=[file_link],
                        attributes={"lisa.segment_id": ids[index], "lisa.index": index},
                    ):
                        event = await asyncio.to_thread(
                            _segment_event, plan, index, store, overlap_s
                        )
                        envelope = Envelope(
                            id=derive_event_id(plan.identity, "ingest", index),
                            source="ingest",
                            data=event,
                            correlation_id=derive_event_id(plan.identity, "ingest", index),
                            subject=ids[index],
                            key=ids[index],
                        )
                        futures.append(await publisher.send(SEGMENTS_RAW, envelope))
                await asyncio.gather(*futures)
    finally:
        await producer.stop()
    await asyncio.to_thread(store.write_note, ledger, "\n".join(ids) + "\n")
    log.info("file ingested", file=str(plan.path), segments=len(ids))
    return IngestResult(plan.path, len(ids), True, ids)
