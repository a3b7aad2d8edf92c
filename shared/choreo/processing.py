"""One input record through a step, with no Kafka in sight: decode -> handle -> check -> encode.

The runner's Kafka loop (``choreo.runner``) and the in-memory harness (``choreo.testing``) both
feed records through ``RecordProcessor``, so what a unit test sees is what production does:
the same consumer span, decoding, retries with backoff, output check and dead-letter headers.
Only the producer behind the ``Publisher`` differs.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from aiokafka.errors import (
    CorruptRecordException,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from opentelemetry import trace

from choreo import codec, tracing
from choreo.deadletter import DeadLetters, Failure, mark_failed
from choreo.errors import DecodeError, PermanentError, TransientError
from choreo.events import Emit, Envelope, Event
from choreo.metrics import StepMetrics
from choreo.publisher import Publisher
from choreo.retry import RetriesExhausted, RetryPolicy, retry
from choreo.settings import KafkaSettings, StepSettings
from choreo.step import Step

log = structlog.get_logger(__name__)


class Record(Protocol):
    """What the processor reads of an input: aiokafka's ``ConsumerRecord`` and faust's message
    both have it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp: int


@dataclass(frozen=True)
class InputRecord:
    """A record made by hand (tests, the in-memory harness)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    partition: int = 0
    offset: int = 0
    timestamp: int = field(default_factory=lambda: int(time.time() * 1000))


REFUSED_FOR_GOOD = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
)
"""Produce errors that no retry can cure: the output is refused for what it is."""


def retry_policy(settings: StepSettings) -> RetryPolicy:
    return RetryPolicy(settings.max_retries, settings.retry_backoff_s, settings.retry_backoff_max_s)


class RecordProcessor:
    """Processes one record of a step's input topics and queues what it produced.

    ``process`` returns the futures of the queued sends (outputs, or the dead letter); the caller
    waits for them before committing the input. It raises only for broker errors on send.
    """

    def __init__(
        self,
        step: Step,
        kafka: KafkaSettings,
        settings: StepSettings,
        metrics: StepMetrics | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        if step.handle is None:
            raise ValueError(f"step {step.name!r} has no handler")
        self.step = step
        self.group = settings.group_id or kafka.topic(step.name)
        self.types = {kafka.topic(t): m for t, m in step.types_by_topic().items()}
        self.policy = retry_policy(settings)
        self.metrics = metrics
        self._stopping = stopping

    @property
    def topics(self) -> list[str]:
        return list(self.types)

    async def process(
        self, record: Record, publisher: Publisher, dead_letters: DeadLetters
    ) -> list[asyncio.Future]:
        started = time.time()
        with self._span(record) as span:
            try:
                types = self.types.get(record.topic)
                if types is None:
                    raise DecodeError("unknown-topic", f"{self.step.name} does not consume it")
                envelope = codec.decode(record.key, record.value, record.headers, types)
                tracing.describe_event(span, envelope)
                structlog.contextvars.bind_contextvars(event_id=envelope.id)
                handled = await retry(
                    lambda: self._call_handler(envelope), self.policy, self._stopping
                )
                emits = handled.value
                elapsed = time.time() - started
                if self.metrics is not None:
                    self.metrics.record(record.topic, len(emits), elapsed)
                log.info(
                    "processed",
                    event_type=envelope.type,
                    subject=envelope.subject,
                    outputs=len(emits),
                    ms=round(elapsed * 1000, 1),
                )
                children = [(e.topic, e.child_of(envelope, self.step.name)) for e in emits]
                # all or none: check every size before any send
                encoded = [publisher.check_size(topic, child) for topic, child in children]
                return [
                    await publisher.send(topic, child, enc)
                    for (topic, child), enc in zip(children, encoded, strict=True)
                ]
            except PermanentError as exc:
                return [await self._dead_letter(record, exc, dead_letters, span)]
            except REFUSED_FOR_GOOD as exc:  # refused by the producer itself, before any byte left
                error = PermanentError("output-refused", f"{type(exc).__name__}: {exc}")
                return [await self._dead_letter(record, error, dead_letters, span)]
            except KafkaError:
                raise  # the broker, not the input: the runner replays the batch
            except Exception as exc:  # last resort: no input may stop the step or block it
                log.exception("unexpected failure on an input")
                error = PermanentError("internal-error", f"{type(exc).__name__}: {exc}")
                return [await self._dead_letter(record, error, dead_letters, span)]
            finally:
                structlog.contextvars.unbind_contextvars("event_id")

    async def settle(
        self,
        sent: list[tuple[Record, list[asyncio.Future]]],
        publisher: Publisher,
        dead_letters: DeadLetters,
    ) -> None:
        """Wait until every input's outputs are durable. An input whose output the broker
        refused for good (too large, invalid) is dead-lettered instead, so it cannot block its
        partition; any other broker error propagates and the caller replays the batch."""
        futures = [f for _, fs in sent for f in fs]
        results = await asyncio.gather(*futures, return_exceptions=True)
        refused: list[tuple[Record, BaseException]] = []
        position = 0
        for record, fs in sent:
            errors = [
                r for r in results[position : position + len(fs)] if isinstance(r, BaseException)
            ]
            position += len(fs)
            others = [e for e in errors if not isinstance(e, REFUSED_FOR_GOOD)]
            if others:
                raise others[0]
            if errors:
                refused.append((record, errors[0]))
        letters = []
        for record, exc in refused:
            error = PermanentError("output-refused", f"{type(exc).__name__}: {exc}")
            with self._span(record) as span:
                letters.append(await self._dead_letter(record, error, dead_letters, span))
        await asyncio.gather(*letters)

    def _span(self, record: Record):
        """The CONSUMER span of one input, parented on its producer's context."""
        return tracing.consumer_span(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp,
            record.headers,
            self.step.name,
            self.group,
        )

    async def _call_handler(self, envelope: Envelope[Event]) -> list[Emit]:
        handle: Any = self.step.handle
        try:
            if inspect.iscoroutinefunction(handle):
                result = await handle(envelope)
            else:
                # A worker thread keeps the loop free for heartbeats; it inherits the span context.
                # A callable that turns out to be async (an object with an async __call__, a
                # wrapped coroutine function) hands back an awaitable: await it on the loop.
                result = await asyncio.to_thread(handle, envelope)
                if inspect.isawaitable(result):
                    result = await result
            emits = list(result or ())
        except (PermanentError, TransientError):
            raise
        except Exception as exc:  # a handler bug or a kernel domain error: retrying won't help
            log.exception("handler failed")
            raise PermanentError("handler-error", f"{type(exc).__name__}: {exc}") from exc
        for emit in emits:
            if not self.step.may_emit(emit.topic, emit.data):
                raise PermanentError(
                    "undeclared-output",
                    f"{self.step.name} emitted {type(emit.data).__name__} to {emit.topic}, "
                    "which its declaration does not produce",
                )
        return emits

    async def _dead_letter(
        self, record: Record, exc: PermanentError, dead_letters: DeadLetters, span: trace.Span
    ) -> asyncio.Future:
        reason = mark_failed(span, record, exc)
        if self.metrics is not None:
            self.metrics.record_failure(record.topic, reason)
        return await dead_letters.send(record, failure_of(exc, reason))


def failure_of(exc: PermanentError, reason: str) -> Failure:
    """The dead letter's account of an error: the transient cause and its attempt count when
    retries ran out, else the error itself after one attempt."""
    if isinstance(exc, RetriesExhausted):
        return Failure(reason=reason, error=exc.error, attempts=exc.attempts)
    return Failure(reason=reason, error=exc, attempts=1)
