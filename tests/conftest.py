"""Shared fixtures. Integration tests need the real broker: ``kafka`` starts it if it is down."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from choreo.settings import KafkaSettings


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    """Poll ``condition`` until truthy; fail with ``what`` at the deadline (no sleep-and-hope)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaSettings]:
    """The real Kafka broker of ``lisa-choreo stack`` (started here if nobody else did)."""
    from lisa_choreo import stack

    settings = KafkaSettings()
    host, port = settings.bootstrap_servers.split(",")[0].rsplit(":", 1)
    node = stack.KafkaNode(port=int(port))
    started = []
    if asyncio.run(stack.probe(settings.bootstrap_servers, 3.0)) is None:
        started = stack.up([node])
    cluster = asyncio.run(stack.probe(settings.bootstrap_servers, 10.0))
    assert cluster and cluster["cluster_id"], "no real Kafka broker answers metadata requests"
    yield settings
    stack.down(started)


@pytest.fixture
def prefixed(kafka: KafkaSettings) -> KafkaSettings:
    """Settings whose topics and groups are private to this test (``LISA_KAFKA_TOPIC_PREFIX``)."""
    return kafka.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})
