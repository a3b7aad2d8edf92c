"""Kafka events -> campaign signals: how a workflow learns what the choreography did.

The flow monitor (``lisa_services.flows``) already materialises every segment's flow on the
compacted ``lisa.flows.state``: the stages it reached, or the dead letter that ended it. The
bridge reads that topic (from the beginning, without a consumer group: compaction keeps it
small, and a restarted bridge simply signals again) and, for each segment whose id carries a
revision (``<sha256[:16]>.<revision>-<index>``), signals the campaign named after that cut:
``segment_catalogued`` once the segment is catalogued, ``segment_dead_lettered`` with the reason
if a step gave up on it. Signals are idempotent in the workflow (sets), so repeating one is
harmless; a segment whose campaign has ended (or never existed: a cut ingested by hand with
``--revision``) is skipped. Nothing here writes to Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from choreo import codec
from choreo.errors import DecodeError
from choreo.settings import KafkaSettings
from lisa_choreo.campaign.contract import (
    SEGMENT_CATALOGUED,
    SEGMENT_DEAD,
    DeadLetter,
    campaign_of,
)
from lisa_pipeline.events import FlowSnapshot
from lisa_pipeline.flowmodel import FINAL
from lisa_pipeline.topics import FLOWS_STATE

log = structlog.get_logger(__name__)
TYPES = {FlowSnapshot.ce_type: FlowSnapshot}


def outcome(flow: FlowSnapshot) -> tuple[str, str] | None:
    """What a campaign must hear of this flow: (signal, reason), or None while it moves."""
    if any(mark.stage == FINAL.reached for mark in flow.marks):
        return SEGMENT_CATALOGUED, ""
    if flow.death is not None:
        return SEGMENT_DEAD, f"{flow.death.service}: {flow.death.reason}"
    return None


class Bridge:
    """Signals campaigns from ``lisa.flows.state`` until ``stop`` is set."""

    def __init__(self, client, kafka: KafkaSettings | None = None) -> None:
        self._client = client
        self._kafka = kafka or KafkaSettings()
        self._told: dict[str, str] = {}  # segment -> signal sent
        self.signalled = 0

    async def run(self, stop: asyncio.Event) -> None:
        from choreo.reader import TopicReader

        while not stop.is_set():
            try:
                async with TopicReader(self._kafka, [FLOWS_STATE]) as reader:
                    log.info("bridge following", topic=self._kafka.topic(FLOWS_STATE))
                    while not stop.is_set():  # idle for a second: look at ``stop`` again
                        async for record in reader.records(idle_timeout_s=1.0):
                            await self._on(record)
                            if stop.is_set():
                                return
            except LookupError as exc:  # the topic does not exist yet (no flow monitor ran)
                log.warning("bridge waiting for its topic", error=str(exc))
                await _wait(stop, 2.0)
            except Exception as exc:  # Kafka down for a while: start again from the beginning
                log.warning("bridge restarting", error=repr(exc))
                await _wait(stop, 2.0)

    async def _on(self, record) -> None:
        if record.value is None:
            return
        try:
            flow = codec.decode(record.key, record.value, record.headers, TYPES).data
        except DecodeError as exc:
            log.warning("unreadable flow snapshot skipped", reason=exc.reason)
            return
        said = outcome(flow)
        campaign = campaign_of(flow.segment_id)
        if said is None or campaign is None or self._told.get(flow.segment_id) == said[0]:
            return
        signal, reason = said
        arg = DeadLetter(flow.segment_id, reason) if signal == SEGMENT_DEAD else flow.segment_id
        if await self._signal(campaign, signal, arg):
            self._told[flow.segment_id] = signal
            self.signalled += 1

    async def _signal(self, campaign: str, signal: str, arg) -> bool:
        from temporalio.service import RPCError, RPCStatusCode

        try:
            await self._client.get_workflow_handle(campaign).signal(signal, arg)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:  # ended, or not a campaign's cut
                return True
            raise
        return True


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
