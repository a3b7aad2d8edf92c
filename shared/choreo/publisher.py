"""Publishing envelopes: one idempotent producer per process, a PRODUCER span per message."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from choreo import codec, tracing
from choreo.errors import PermanentError
from choreo.events import Envelope, Event
from choreo.settings import KafkaSettings


def make_producer(settings: KafkaSettings, client_id: str, linger_ms: int = 0) -> AIOKafkaProducer:
    """acks=all + idempotence: a send is acknowledged only when durable, and retries of a send
    never duplicate it in the log."""
    return AIOKafkaProducer(
        **settings.client_options(),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        # Sends still batch while a request is in flight; a linger only adds latency per hop
        # (the benchmark measured p99 56.7 -> 42.4 ms for a hop going from 5 ms to 0).
        linger_ms=linger_ms,
        # The broker's own limit (message.max.bytes): larger records are refused at the source,
        # where the runtime can dead-letter their input, instead of by the broker.
        max_request_size=settings.max_request_bytes,
    )


Encoded = tuple[bytes | None, bytes, codec.Headers]
"""A record as ``codec.encode`` makes it: key, value, headers."""

RECORD_OVERHEAD_BYTES = 512
"""Batch and record framing, timestamps, tracing headers added on send (a generous bound)."""


def record_size(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]
) -> int:
    return (
        len(key or b"")
        + len(value or b"")
        + sum(len(k) + len(v or b"") for k, v in headers)
        + RECORD_OVERHEAD_BYTES
    )


def default_client_id(name: str) -> str:
    return f"{name}-{socket.gethostname()}-{os.getpid()}"


class Publisher:
    """Sends envelopes to topics (names before the deployment's prefix)."""

    def __init__(self, producer: AIOKafkaProducer, settings: KafkaSettings) -> None:
        self._producer = producer
        self._settings = settings

    @property
    def topic_prefix(self) -> str:
        return self._settings.topic_prefix

    @property
    def max_request_bytes(self) -> int:
        return self._settings.max_request_bytes

    def check_size(self, topic: str, envelope: Envelope[Event]) -> Encoded:
        """Refuse an output the broker would refuse (over ``max_request_bytes``); else its
        encoding, which ``send`` takes as is (one encoding per output, not two)."""
        key, value, headers = codec.encode(envelope)
        size = record_size(key, value, headers)
        if size > self._settings.max_request_bytes:
            raise PermanentError(
                "output-too-large",
                f"a {type(envelope.data).__name__} of {size} bytes for {topic} is over the "
                f"{self._settings.max_request_bytes}-byte limit",
            )
        return key, value, headers

    async def send(
        self, topic: str, envelope: Envelope[Event], encoded: Encoded | None = None
    ) -> asyncio.Future:
        """Queue one event; the returned future resolves when the broker has it durably.
        ``encoded``: what ``check_size`` returned for this envelope (its headers get the trace
        context added here)."""
        full_topic = self._settings.topic(topic)
        key, value, headers = encoded if encoded is not None else codec.encode(envelope)
        with tracing.send_span(
            full_topic,
            envelope.id,
            envelope.key,
            **{
                "cloudevents.event_type": envelope.type,
                "cloudevents.event_subject": envelope.subject or "",
            },
        ):
            tracing.inject(headers)
            return await self._producer.send(full_topic, value=value, key=key, headers=headers)

    async def send_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> asyncio.Future:
        """Forward bytes as they are (dead letters keep the original record intact)."""
        return await self._producer.send(
            self._settings.topic(topic), value=value, key=key, headers=list(headers)
        )

    async def publish(self, items: Sequence[tuple[str, Envelope[Event]]]) -> None:
        """Send several events and wait until all are durable."""
        futures = [await self.send(topic, env) for topic, env in items]
        await asyncio.gather(*futures)
