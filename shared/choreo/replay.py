"""Replaying dead letters: each letter's original record back to the topic it came from, once.

The core of ``lisa-choreo dlq replay`` (``lisa_choreo.dlq_admin``) and of the flow view's replay
action (``lisa_services.flows``), so both send exactly the same records:

- a letter goes home only to the topic its dead-letter topic belongs to (``<home>.dlq``), never to
  a topic named by one of its headers, which anyone could forge;
- the record sent is the letter's key, value and headers as bytes, without the ``dlq_*`` headers,
  plus ``lisa_replay_of=<dlq topic>/<partition>/<offset>``;
- a letter whose ref already appears in a ``lisa_replay_of`` header on its home topic is skipped,
  so replaying twice is harmless.

Nothing here knows a pipeline: a letter is anything with the place, key, value and raw headers of
a dead-letter record (``Letter`` reads one from a consumer record).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import ConsumerRecord

from choreo import codec
from choreo.deadletter import DLQ_HEADER_PREFIX
from choreo.publisher import default_client_id, make_producer
from choreo.reader import TopicReader
from choreo.settings import KafkaSettings
from choreo.topology import DLQ_SUFFIX

REPLAY_HEADER = "lisa_replay_of"

RawHeaders = Sequence[tuple[str, bytes | None]]


class Replayable(Protocol):
    """What replay reads of a letter (``lisa_choreo.dlq_admin.DeadLetter`` and ``Letter``)."""

    @property
    def topic(self) -> str: ...  # the dead-letter topic, without the deployment prefix

    @property
    def ref(self) -> str: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def raw_headers(self) -> RawHeaders: ...


@dataclass(frozen=True)
class Letter:
    """A record of a dead-letter topic, as read (topic without the deployment prefix)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    raw_headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int | None = None

    @classmethod
    def of(cls, record: ConsumerRecord, prefix: str = "") -> Letter:
        return cls(
            topic=record.topic.removeprefix(prefix),
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            raw_headers=tuple(record.headers or ()),
            timestamp_ms=record.timestamp,
        )

    @property
    def ref(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def headers(self) -> dict[str, str]:
        """As the runtime decodes them (the last value of a name wins; not UTF-8: hex)."""
        return codec.header_map(self.raw_headers)  # type: ignore[arg-type]


def home_topic(dlq_topic: str) -> str | None:
    """The topic a letter of ``dlq_topic`` goes back to (None: not a dead-letter topic)."""
    home = dlq_topic.removesuffix(DLQ_SUFFIX)
    return home if dlq_topic.endswith(DLQ_SUFFIX) and home else None


def replay_headers(raw_headers: RawHeaders, ref: str) -> list[tuple[str, bytes | None]]:
    """The letter's headers without the dead-letter account, and the replay mark."""
    headers = [
        (k, v) for k, v in raw_headers if not k.startswith(DLQ_HEADER_PREFIX) and k != REPLAY_HEADER
    ]
    headers.append((REPLAY_HEADER, ref.encode()))
    return headers


async def read_letters(settings: KafkaSettings, topics: Sequence[str]) -> list[Letter]:
    """Every record of the dead-letter topics (names without the prefix) as of now, read without
    a consumer group; a topic that does not exist is skipped."""
    letters: list[Letter] = []
    for topic in topics:
        try:
            async with TopicReader(settings, [topic]) as reader:
                records = await reader.snapshot()
        except LookupError:
            continue
        letters += [Letter.of(r, settings.topic_prefix) for r in records]
    return letters


async def already_replayed(settings: KafkaSettings, topics: set[str]) -> tuple[set[str], set[str]]:
    """The refs already replayed to these topics, and the topics that do not exist."""
    seen: set[str] = set()
    missing: set[str] = set()
    for topic in topics:
        try:
            async with TopicReader(settings, [topic]) as reader:
                records = await reader.snapshot()
        except LookupError:
            missing.add(topic)
            continue
        for r in records:
            if replay_of := codec.header_map(r.headers).get(REPLAY_HEADER):
                seen.add(replay_of)
    return seen, missing


async def replay(
    settings: KafkaSettings, letters: Sequence[Replayable], client: str = "dlq-replay"
) -> tuple[list[str], list[str], list[str]]:
    """Send each letter's original record back to its home topic, with an idempotent acks=all
    producer. Returns the refs replayed, skipped (already replayed) and refused (not on a
    ``.dlq`` topic, or its home topic is gone)."""
    targets = [(d, home_topic(d.topic)) for d in letters]
    refused = [d.ref for d, home in targets if home is None]
    todo = [(d, home) for d, home in targets if home is not None]
    if not todo:
        return [], [], refused
    done, missing = await already_replayed(settings, {home for _, home in todo})
    producer = make_producer(settings, default_client_id(client))
    await producer.start()
    replayed, skipped, futures = [], [], []
    try:
        for d, home in todo:
            if home in missing:
                refused.append(d.ref)
                continue
            if d.ref in done:
                skipped.append(d.ref)
                continue
            futures.append(
                await producer.send(
                    settings.topic(home),
                    value=d.value,
                    key=d.key,
                    headers=replay_headers(d.raw_headers, d.ref),
                )
            )
            replayed.append(d.ref)
        for fut in futures:
            await fut
    finally:
        await producer.stop()
    return replayed, skipped, refused
