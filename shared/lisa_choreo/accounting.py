"""Accounting: what each topic holds, what each service consumed, produced and dead-lettered,
its lag, and whether every raw segment ended in the catalogue's input or in a dead-letter topic.

It reads the topics and the groups' committed offsets (no consumer group of its own), so it is
an honest outside view rather than the services' own claims.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from choreo.reader import TopicReader, partitions_of
from choreo.settings import KafkaSettings
from choreo.topology import DLQ_SUFFIX
from lisa_choreo.records import Record
from lisa_choreo.registry import topology
from lisa_pipeline.topics import SEGMENTS_RAW, SOURCES_ESTIMATES


@dataclass
class ServiceCount:
    name: str
    consumed: int = 0
    produced: int = 0
    dead_lettered: int = 0
    lag: int = 0


@dataclass
class SegmentBook:
    raw: set[str] = field(default_factory=set)
    catalogued: set[str] = field(default_factory=set)
    dead_lettered: set[str] = field(default_factory=set)
    duplicate_deliveries: int = 0

    @property
    def unaccounted(self) -> set[str]:
        return self.raw - self.catalogued - self.dead_lettered


@dataclass
class Report:
    topics: dict[str, int]
    services: list[ServiceCount]
    segments: SegmentBook


async def topic_offsets(settings: KafkaSettings, names: list[str]) -> tuple[dict, dict]:
    parts: list[TopicPartition] = []
    for name in names:
        try:
            parts += await partitions_of(settings, [settings.topic(name)])
        except LookupError:
            continue
    consumer = AIOKafkaConsumer(**settings.client_options(), group_id=None)
    await consumer.start()
    try:
        return await consumer.beginning_offsets(parts), await consumer.end_offsets(parts)
    finally:
        await consumer.stop()


async def _records(settings: KafkaSettings, name: str) -> list[Record]:
    try:
        async with TopicReader(settings, [name]) as reader:
            return [Record.of(r, settings.topic_prefix) for r in await reader.snapshot()]
    except LookupError:
        return []


async def build_report(settings: KafkaSettings) -> Report:
    topo = topology()
    names = [t.name for t in topo.all_topics()]
    begin, end = await topic_offsets(settings, names)
    topics = {n: 0 for n in names}
    for tp, last in end.items():
        topics[tp.topic.removeprefix(settings.topic_prefix)] += last - begin[tp]

    admin = AIOKafkaAdminClient(**settings.client_options())
    await admin.start()
    services: list[ServiceCount] = []
    by_source: dict[str, Counter] = {}
    try:
        for step in topo.steps:
            count = ServiceCount(step.name)
            if step.consumes:
                committed = await admin.list_consumer_group_offsets(settings.topic(step.name))
                for c in step.consumes:
                    for tp in [t for t in end if t.topic == settings.topic(c.topic)]:
                        meta = committed.get(tp)
                        done = meta.offset if meta is not None and meta.offset >= 0 else begin[tp]
                        count.consumed += done - begin[tp]
                        count.lag += end[tp] - done
            for p in step.produces:
                if p.topic not in by_source:
                    by_source[p.topic] = Counter(
                        r.headers.get("ce_source", "") for r in await _records(settings, p.topic)
                    )
                count.produced += by_source[p.topic][step.name]
            services.append(count)
    finally:
        await admin.close()

    book = SegmentBook()
    book.raw = {r.subject or "" for r in await _records(settings, SEGMENTS_RAW)}
    estimates = await _records(settings, SOURCES_ESTIMATES)
    book.catalogued = {r.subject or "" for r in estimates}
    ids = Counter(r.event_id or "" for r in estimates)
    book.duplicate_deliveries = sum(n - 1 for n in ids.values())
    for name in names:
        if name.endswith(DLQ_SUFFIX):
            for r in await _records(settings, name):
                book.dead_lettered.add(r.subject or "")
                for s in services:
                    if s.name == r.headers.get("dlq_service", ""):
                        s.dead_lettered += 1
    return Report(topics, services, book)


def render(report: Report) -> list[str]:
    lines = ["topic                                    records"]
    lines += [f"{name:<40} {n:>7}" for name, n in report.topics.items()]
    lines.append("")
    lines.append("service          consumed  produced  dead-lettered  lag")
    lines += [
        f"{s.name:<16} {s.consumed:>8}  {s.produced:>8}  {s.dead_lettered:>13}  {s.lag:>3}"
        for s in report.services
    ]
    b = report.segments
    lines.append("")
    lines.append(
        f"segments: {len(b.raw)} raw, {len(b.catalogued & b.raw)} reached the catalogue, "
        f"{len(b.dead_lettered & b.raw)} dead-lettered, {len(b.unaccounted)} unaccounted; "
        f"{b.duplicate_deliveries} redelivered duplicate(s) (same event id, harmless)"
    )
    return lines
