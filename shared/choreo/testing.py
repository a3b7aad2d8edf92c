"""An in-memory harness: a step's handler tested without a broker, through the runtime's own path.

In the spirit of FastStream's ``TestKafkaBroker``: ``StepHarness`` feeds an event (or raw record
bytes) through ``RecordProcessor`` exactly as the Kafka runner does, with a producer that keeps
what it is given in memory, and returns what the step emitted (decoded back into envelopes) and
what it dead-lettered (with the reason headers)::

    harness = StepHarness(step)
    result = harness.deliver(SEGMENTS_RAW, SegmentRaw(...))
    [conditioned] = result.events(SEGMENTS_CONDITIONED)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from choreo import codec
from choreo.deadletter import DLQ_HEADER_PREFIX, DeadLetters
from choreo.events import Envelope, Event
from choreo.processing import InputRecord, RecordProcessor
from choreo.publisher import Publisher
from choreo.settings import KafkaSettings, StepSettings
from choreo.step import Step
from choreo.topology import DLQ_SUFFIX


@dataclass(frozen=True)
class SentRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def header_map(self) -> dict[str, str]:
        return codec.header_map(self.headers)


class MemoryProducer:
    """The part of ``AIOKafkaProducer`` that ``Publisher`` uses; every send is acknowledged."""

    def __init__(self) -> None:
        self.sent: list[SentRecord] = []

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future:
        self.sent.append(SentRecord(topic, key, value, list(headers or ())))
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    record: SentRecord

    @property
    def reason(self) -> str:
        return self.info["reason"]

    @property
    def info(self) -> dict[str, str]:
        """The ``dlq_*`` headers without their prefix (reason, error_message, attempts...)."""
        return {
            k.removeprefix(DLQ_HEADER_PREFIX): v
            for k, v in self.record.header_map.items()
            if k.startswith(DLQ_HEADER_PREFIX)
        }


@dataclass
class Result:
    """What one input led to."""

    outputs: list[tuple[str, Envelope[Event]]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def events(self, topic: str) -> list[Envelope[Event]]:
        return [env for t, env in self.outputs if t == topic]


class StepHarness:
    """Runs one step's declaration and handler on in-memory records."""

    def __init__(self, step: Step, settings: StepSettings | None = None) -> None:
        self.step = step
        self.kafka = KafkaSettings(topic_prefix="")
        self.settings = settings or StepSettings(retry_backoff_s=0.001, retry_backoff_max_s=0.01)
        self.processor = RecordProcessor(step, self.kafka, self.settings)
        self._output_types = {t.ce_type: t for p in step.produces for t in p.types}
        self._offset = 0

    def deliver(self, topic: str, event: Event | Envelope[Event], key: str | None = None) -> Result:
        """One event on ``topic`` through the step (a root event unless an envelope is given)."""
        envelope = (
            event
            if isinstance(event, Envelope)
            else Envelope.root(event, source="test", subject=key, key=key)
        )
        record_key, value, headers = codec.encode(envelope)
        return self.deliver_raw(topic, record_key, value, headers)

    def deliver_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> Result:
        """Any bytes on ``topic``: what a hostile or careless producer could send."""
        return asyncio.run(self._deliver(InputRecord(topic, key, value, list(headers))))

    async def _deliver(self, record: InputRecord) -> Result:
        self._offset += 1
        record = InputRecord(
            record.topic, record.key, record.value, record.headers, offset=self._offset
        )
        producer = MemoryProducer()
        publisher = Publisher(producer, self.kafka)  # type: ignore[arg-type]
        futures = await self.processor.process(
            record, publisher, DeadLetters(publisher, self.step.name)
        )
        await asyncio.gather(*futures)
        result = Result()
        for sent in producer.sent:
            if sent.topic.endswith(DLQ_SUFFIX):
                result.dead_letters.append(DeadLetter(sent.topic, sent))
            else:
                result.outputs.append(
                    (
                        sent.topic,
                        codec.decode(sent.key, sent.value, sent.headers, self._output_types),
                    )
                )
        return result
