"""A campaign worker: the Temporal worker of the campaign task queue, and the bridge beside it.

Both need the same two things (the Temporal client, the Kafka settings) and are useless one
without the other, so they run in one process, ``lisa-choreo campaign worker`` (or inside
``lisa-choreo campaign reprocess`` unless ``--no-worker``). Several may run: Temporal gives each
workflow task and activity to one of them, and signals from several bridges are idempotent.
"""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import timedelta

import structlog

from choreo.settings import KafkaSettings
from lisa_choreo.campaign.activities import ACTIVITIES
from lisa_choreo.campaign.bridge import Bridge
from lisa_choreo.campaign.contract import TASK_QUEUE
from lisa_choreo.campaign.workflow import ReprocessCampaign

SERVICE = "campaign-worker"
log = structlog.get_logger(__name__)


def make_worker(client, task_queue: str = TASK_QUEUE):
    from temporalio.worker import Worker

    return Worker(
        client,
        task_queue=task_queue,
        workflows=[ReprocessCampaign],
        activities=ACTIVITIES,
        max_concurrent_activities=4,
        graceful_shutdown_timeout=timedelta(seconds=10),
        identity=f"{SERVICE}-{socket.gethostname()}-{os.getpid()}",
    )


async def serve(client, stop: asyncio.Event, kafka: KafkaSettings | None = None) -> None:
    """Run the worker and the bridge until ``stop`` is set."""
    bridge = Bridge(client, kafka)
    async with make_worker(client):
        log.info("campaign worker started", task_queue=TASK_QUEUE)
        following = asyncio.create_task(bridge.run(stop))
        try:
            await stop.wait()
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
    log.info("campaign worker stopped", signals=bridge.signalled)
