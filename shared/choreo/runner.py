"""Runs a step on Kafka: topic -> decode -> handler -> encode -> topic, at least once, traced.

The loop, in one sitting:
1. ``getmany`` a batch (up to ``max_batch`` records across partitions);
2. for each record, ``choreo.processing.RecordProcessor`` (no Kafka in it): open
   ``process <topic>`` as a child of the producer's trace context, decode, call the handler, send
   its outputs inside that span (dead-letter it instead if it failed);
3. wait until the broker acknowledged every output of the batch (acks=all);
4. commit the batch's offsets. Then, and only then, the inputs count as done.

A crash between 3 and 4 redelivers the batch; outputs carry deterministic ids, so the repeats are
recognisable. SIGTERM/SIGINT stop fetching; the batch in hand finishes and is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from opentelemetry import trace

from choreo import tracing
from choreo.deadletter import DeadLetters
from choreo.health import Health
from choreo.logs import configure_logging
from choreo.metrics import StepMetrics, configure_metrics
from choreo.processing import RecordProcessor
from choreo.publisher import Publisher, default_client_id, make_producer
from choreo.settings import KafkaSettings, StepSettings
from choreo.step import Step

log = structlog.get_logger(__name__)
_tracer = trace.get_tracer("choreo")


class _CommitBeforeRevoke(ConsumerRebalanceListener):
    """Partitions are handed over only between batches, after their offsets are committed."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        async with self._lock:
            log.info("partitions revoked", partitions=sorted(str(tp) for tp in revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        log.info("partitions assigned", partitions=sorted(str(tp) for tp in assigned))


class StepRunner:
    def __init__(
        self,
        step: Step,
        kafka: KafkaSettings | None = None,
        settings: StepSettings | None = None,
        health: Health | None = None,
    ) -> None:
        self.step = step
        self.kafka = kafka or KafkaSettings()
        self.settings = settings or StepSettings()
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()
        self.processed = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._positions: dict[TopicPartition, int] = {}
        self.metrics = StepMetrics(step.name, self._lag)
        self.health = health or Health(step.name)
        self.processor = RecordProcessor(
            step, self.kafka, self.settings, self.metrics, self._stopping.is_set
        )

    def _lag(self) -> list[tuple[str, int, int]]:
        """(topic, partition, records behind the high watermark) for the metrics thread."""
        consumer = self._consumer
        if consumer is None:
            return []
        out = []
        for tp, position in list(self._positions.items()):
            high = consumer.highwater(tp)
            if high is not None:
                out.append((tp.topic, tp.partition, max(high - position, 0)))
        return out

    def stop(self) -> None:
        """Stop fetching; the batch in hand is finished and committed first."""
        if not self._stopping.is_set():
            log.info("stop requested", step=self.step.name)
        self._stopping.set()

    async def run(self) -> None:
        client_id = self.settings.client_id or default_client_id(self.step.name)

        def make_consumer() -> AIOKafkaConsumer:
            consumer = AIOKafkaConsumer(
                **self.kafka.client_options(),
                client_id=client_id,
                group_id=self.processor.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                session_timeout_ms=self.settings.session_timeout_ms,
                max_poll_interval_ms=self.settings.max_poll_interval_ms,
            )
            consumer.subscribe(self.processor.topics, listener=_CommitBeforeRevoke(self._lock))
            return consumer

        producer = await self._start_with_backoff(
            lambda: make_producer(self.kafka, client_id, self.settings.linger_ms)
        )
        if producer is None:
            return
        consumer = await self._start_with_backoff(make_consumer)
        if consumer is None:
            await producer.stop()
            return
        self._consumer = consumer
        try:
            log.info("step started", step=self.step.name, topics=sorted(self.processor.topics))
            while not self._stopping.is_set():
                batch = await consumer.getmany(
                    timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.max_batch
                )
                self.health.beat()
                self.health.set_ready(True, partitions=len(consumer.assignment()))
                if not batch:
                    continue
                publisher = Publisher(producer, self.kafka)
                try:
                    async with self._lock:
                        await self._process_batch(
                            batch, consumer, publisher, DeadLetters(publisher, self.step.name)
                        )
                except CommitFailedError as exc:
                    # The group rebalanced under us: the partitions' new owner redoes the batch,
                    # and our outputs' deterministic ids make the repeats recognisable.
                    log.warning("commit failed after a rebalance", error=str(exc))
                except KafkaError as exc:
                    # Broker trouble: outputs may not be durable, inputs are not committed.
                    # Rewind to the batch and try again once the cluster answers.
                    log.warning("broker error, replaying the batch", error=repr(exc))
                    for tp, records in batch.items():
                        if tp in consumer.assignment():
                            consumer.seek(tp, records[0].offset)
                    await producer.stop()
                    await self._pause(self.settings.retry_backoff_max_s)
                    producer = await self._start_with_backoff(
                        lambda: make_producer(self.kafka, client_id, self.settings.linger_ms)
                    )
                    if producer is None:
                        return
        finally:
            log.info("step stopping", step=self.step.name, processed=self.processed)
            self.health.set_ready(False)
            await consumer.stop()
            if producer is not None:
                await producer.stop()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once on SIGTERM."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _start_with_backoff(self, make: Callable[[], Any]) -> Any:
        """Start a client, waiting for the cluster as long as it takes (or until SIGTERM)."""
        delay = self.settings.retry_backoff_s
        while not self._stopping.is_set():
            client = make()
            try:
                await client.start()
                return client
            except KafkaError as exc:
                log.warning("cluster unavailable, waiting", error=repr(exc), retry_in_s=delay)
                with contextlib.suppress(Exception):
                    await client.stop()
                await self._pause(delay)
                delay = min(delay * 2, self.settings.retry_backoff_max_s)
        return None

    async def _process_batch(
        self,
        batch: dict[TopicPartition, list[ConsumerRecord]],
        consumer: AIOKafkaConsumer,
        publisher: Publisher,
        dead_letters: DeadLetters,
    ) -> None:
        deliveries: list[asyncio.Future] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            for record in records:
                deliveries += await self.processor.process(record, publisher, dead_letters)
                offsets[tp] = record.offset + 1
                self._positions[tp] = record.offset + 1
        await asyncio.gather(*deliveries)
        await consumer.commit(offsets)
        self.processed += sum(len(r) for r in batch.values())


def run_step(step: Step) -> int:
    """Process entry point: configure logs and tracing, run until SIGTERM/SIGINT, exit 0."""
    configure_logging(step.name)
    provider = tracing.configure_tracing(step.name)
    meters = configure_metrics(step.name)
    runner = StepRunner(step)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.stop)
        await runner.health.serve()
        try:
            await runner.run()
        finally:
            await runner.health.close()

    try:
        asyncio.run(main())
    finally:
        provider.shutdown()
        meters.shutdown()
    return 0
