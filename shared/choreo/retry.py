"""Bounded exponential backoff with jitter, for transient failures (store or broker unavailable).

``retry`` returns the value together with the number of attempts it took, and, when every attempt
failed, raises ``RetriesExhausted`` carrying the last error and the count: callers (the runner,
the faust catalog) dead-letter with that count and never stick attributes onto exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog

from choreo.errors import PermanentError, TransientError

T = TypeVar("T")
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    """Attempts after the first one."""
    backoff_s: float = 0.5
    """First delay; it doubles at each attempt, up to ``backoff_max_s``."""
    backoff_max_s: float = 15.0

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt ``attempt`` (1-based), jittered so that replicas
        failing together do not retry in lockstep."""
        base = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Attempted(Generic[T]):
    value: T
    attempts: int


class RetriesExhausted(PermanentError):
    """Every attempt failed transiently: the input goes to the dead letters."""

    def __init__(self, error: TransientError, attempts: int) -> None:
        super().__init__("transient-exhausted", f"{error} (after {attempts} attempts)")
        self.error = error
        self.attempts = attempts


async def retry(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    stopping: Callable[[], bool] = lambda: False,
    what: str = "transient failure",
) -> Attempted[T]:
    """``await call()`` until it does not raise ``TransientError``, at most
    ``1 + policy.max_retries`` times (fewer once ``stopping()``: a SIGTERM ends the waiting)."""
    attempt = 1
    while True:
        try:
            return Attempted(await call(), attempt)
        except TransientError as exc:
            if attempt > policy.max_retries or stopping():
                raise RetriesExhausted(exc, attempt) from exc
            delay = policy.delay(attempt)
            log.warning(f"{what}, retrying", error=str(exc), attempt=attempt, retry_in_s=delay)
            await asyncio.sleep(delay)
            attempt += 1


async def start_until_ready(
    make: Callable[[], Any], stopping: asyncio.Event, first_s: float, max_s: float
) -> Any | None:
    """Start a Kafka client (producer, consumer or admin) from ``make``, waiting for the cluster
    as long as it takes: a service that starts before its broker waits instead of exiting.
    Doubling delays from ``first_s`` up to ``max_s``; None if ``stopping`` is set first (SIGTERM
    while waiting). A client that failed to start is closed before the next attempt."""
    from aiokafka.errors import KafkaError

    delay = first_s
    while not stopping.is_set():
        client = make()
        try:
            await client.start()
            return client
        except KafkaError as exc:
            log.warning("cluster unavailable, waiting", error=repr(exc), retry_in_s=delay)
            with contextlib.suppress(Exception):
                await (client.close() if hasattr(client, "close") else client.stop())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            delay = min(delay * 2, max_s)
    return None
