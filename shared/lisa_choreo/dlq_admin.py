"""Dead letters: list them, show one, replay selected ones to their original topic.

Replay is idempotent: a replayed record carries ``lisa_replay_of=<dlq topic>/<partition>/<offset>``
and a letter already replayed (that header seen on its original topic) is skipped.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime

from aiokafka import ConsumerRecord

from choreo.deadletter import DLQ_HEADER_PREFIX
from choreo.publisher import default_client_id, make_producer
from choreo.reader import TopicReader
from choreo.settings import KafkaSettings
from choreo.topology import DLQ_SUFFIX
from lisa_choreo.registry import topology

REPLAY_HEADER = "lisa_replay_of"


@dataclass(frozen=True)
class DeadLetter:
    dlq_topic: str
    partition: int
    offset: int
    record: ConsumerRecord
    headers: dict[str, str]

    @property
    def ref(self) -> str:
        return f"{self.dlq_topic}/{self.partition}/{self.offset}"

    def get(self, name: str, default: str = "") -> str:
        return self.headers.get(DLQ_HEADER_PREFIX + name, default)

    @property
    def event_id(self) -> str:
        return self.headers.get("ce_id", "")

    @property
    def time(self) -> datetime | None:
        value = self.get("time")
        return datetime.fromisoformat(value) if value else None

    def summary(self) -> dict[str, str]:
        return {
            "ref": self.ref,
            "time": self.get("time"),
            "topic": self.get("topic"),
            "service": self.get("service"),
            "reason": self.get("reason"),
            "error": f"{self.get('error_type')}: {self.get('error_message')}",
            "event_id": self.event_id,
            "type": self.headers.get("ce_type", ""),
            "subject": self.headers.get("ce_subject", ""),
            "origin": f"{self.get('topic')}/{self.get('partition')}/{self.get('offset')}",
            "attempts": self.get("attempts"),
        }


def dlq_topics() -> list[str]:
    return [t.name for t in topology().all_topics() if t.name.endswith(DLQ_SUFFIX)]


def _headers(record: ConsumerRecord) -> dict[str, str]:
    return {k: (v or b"").decode(errors="replace") for k, v in record.headers or ()}


async def read_dead_letters(
    settings: KafkaSettings, topics: list[str] | None = None
) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    for topic in topics or dlq_topics():
        try:
            async with TopicReader(settings, [topic]) as reader:
                records = await reader.snapshot()
        except LookupError:
            continue
        for r in records:
            letters.append(DeadLetter(topic, r.partition, r.offset, r, _headers(r)))
    return sorted(letters, key=lambda d: (d.get("time"), d.ref))


def select(
    letters: list[DeadLetter],
    ids: list[str] | None = None,
    reason: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[DeadLetter]:
    """Letters matching every given criterion (``ids``: event ids or dlq refs; ``reason``: glob)."""
    chosen = []
    for d in letters:
        if ids and d.event_id not in ids and d.ref not in ids:
            continue
        if reason and not fnmatch.fnmatch(d.get("reason"), reason):
            continue
        if since and (d.time is None or d.time < since):
            continue
        if until and (d.time is None or d.time > until):
            continue
        chosen.append(d)
    return chosen


async def _already_replayed(settings: KafkaSettings, topics: set[str]) -> set[str]:
    seen: set[str] = set()
    for topic in topics:
        async with TopicReader(settings, [topic]) as reader:
            for r in await reader.snapshot():
                for k, v in r.headers or ():
                    if k == REPLAY_HEADER:
                        seen.add(v.decode())
    return seen


async def replay(settings: KafkaSettings, letters: list[DeadLetter]) -> tuple[list[str], list[str]]:
    """Send each letter's original record back to its topic. Returns (replayed, skipped) refs."""
    if not letters:
        return [], []
    done = await _already_replayed(settings, {d.get("topic") for d in letters})
    producer = make_producer(settings, default_client_id("dlq-replay"))
    await producer.start()
    replayed, skipped, futures = [], [], []
    try:
        for d in letters:
            if d.ref in done:
                skipped.append(d.ref)
                continue
            headers = [
                (k, v)
                for k, v in d.record.headers or ()
                if not k.startswith(DLQ_HEADER_PREFIX) and k != REPLAY_HEADER
            ]
            headers.append((REPLAY_HEADER, d.ref.encode()))
            futures.append(
                await producer.send(
                    settings.topic(d.get("topic")),
                    value=d.record.value,
                    key=d.record.key,
                    headers=headers,
                )
            )
            replayed.append(d.ref)
        for fut in futures:
            await fut
    finally:
        await producer.stop()
    return replayed, skipped
