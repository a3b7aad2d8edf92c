"""Dead letters: the original record, untouched, on ``<topic>.dlq`` with the reason in headers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from aiokafka import ConsumerRecord
from opentelemetry.trace import Span, Status, StatusCode

from choreo.publisher import Publisher, record_size
from choreo.topology import dead_letter_topic

DLQ_HEADER_PREFIX = "dlq_"
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Failure:
    reason: str
    error: Exception
    attempts: int = 1


def mark_failed(span: Span, record: ConsumerRecord, exc: Exception) -> str:
    """Record a dead-lettered input on its span and in the log; returns the reason code."""
    reason = getattr(exc, "reason", "transient-exhausted")
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{reason}: {exc}"))
    span.set_attribute("lisa.dead_letter_reason", reason)
    log.error(
        "input dead-lettered",
        reason=reason,
        error=str(exc),
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
    )
    return reason


class DeadLetters:
    def __init__(self, publisher: Publisher, service: str) -> None:
        self._publisher = publisher
        self._service = service

    async def send(self, record: ConsumerRecord, failure: Failure) -> asyncio.Future:
        # The record's topic already carries the deployment prefix; strip it for the DLQ name.
        topic = record.topic.removeprefix(self._publisher.topic_prefix)
        info = {
            "reason": failure.reason,
            "error_type": type(failure.error).__name__,
            "error_message": str(failure.error)[:2000],
            "service": self._service,
            "topic": topic,
            "partition": str(record.partition),
            "offset": str(record.offset),
            "attempts": str(failure.attempts),
            "time": datetime.now(UTC).isoformat(),
        }
        original = [
            (k, v) for k, v in (record.headers or ()) if not k.startswith(DLQ_HEADER_PREFIX)
        ]
        headers = original + [(DLQ_HEADER_PREFIX + k, v.encode()) for k, v in info.items()]
        value = record.value
        if record_size(record.key, value, headers) > self._publisher.max_request_bytes:
            # The input fitted the broker; with the reason added it does not. Keep the account
            # (headers, offset) and say the body is on the input topic only.
            value = None
            headers.append((DLQ_HEADER_PREFIX + "value_dropped", b"too large with the reason"))
        return await self._publisher.send_raw(dead_letter_topic(topic), record.key, value, headers)
