"""Reading topics without a consumer group: nothing is committed, no service is disturbed.

Used by observers (the demo, tests, tailing), never by step services.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from choreo.settings import KafkaSettings


async def partitions_of(settings: KafkaSettings, topics: list[str]) -> list[TopicPartition]:
    """Every partition of the topics (full names); LookupError names the missing ones."""
    admin = AIOKafkaAdminClient(**settings.client_options())
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    missing = [d["topic"] for d in described if d["error_code"] != 0 or not d["partitions"]]
    if missing:
        raise LookupError(f"no such topic: {', '.join(missing)}")
    return [
        TopicPartition(d["topic"], p["partition"])
        for d in described
        for p in sorted(d["partitions"], key=lambda p: p["partition"])
    ]


class TopicReader:
    """Assigns every partition of the topics itself (``group_id=None``), so it never commits."""

    def __init__(self, settings: KafkaSettings, topics: list[str], from_beginning: bool = True):
        self._settings = settings
        self._topics = [settings.topic(t) for t in topics]
        self._from_beginning = from_beginning
        self._consumer = AIOKafkaConsumer(
            **settings.client_options(),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )

    async def __aenter__(self) -> TopicReader:
        partitions = await partitions_of(self._settings, self._topics)
        await self._consumer.start()
        self._consumer.assign(partitions)
        if self._from_beginning:
            await self._consumer.seek_to_beginning(*partitions)
        else:
            await self._consumer.seek_to_end(*partitions)
            for tp in partitions:  # pin the position now, before anything new is produced
                await self._consumer.position(tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def snapshot(self) -> list[ConsumerRecord]:
        """Everything up to the end offsets as of now (a live stream cannot keep it reading)."""
        partitions = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(partitions)
        out: list[ConsumerRecord] = []
        while [tp for tp in partitions if await self._consumer.position(tp) < ends[tp]]:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=1000)
            for tp, records in batch.items():
                out += [r for r in records if r.offset < ends[tp]]
        return out

    async def records(self, idle_timeout_s: float | None = None) -> AsyncIterator[ConsumerRecord]:
        """Records as they come; ends after ``idle_timeout_s`` without any (None: never)."""
        last = time.monotonic()
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=500)
            if batch:
                last = time.monotonic()
                for records in batch.values():
                    for record in records:
                        yield record
            elif idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                return
            await asyncio.sleep(0)
