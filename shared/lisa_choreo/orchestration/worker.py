"""A Temporal worker process: ``lisa-choreo orchestrate worker`` (``python -m`` this module).

It polls one task queue for workflow tasks (the deterministic routing in ``workflows.py``, run in
the SDK's sandbox) and activity tasks (``activities.py``: the services' handlers), at most
``LISA_TEMPORAL_MAX_ACTIVITIES`` activities at a time. Start as many as you like, anywhere the
store is reachable; kill any of them: an activity it was running is retried elsewhere once its
heartbeat stops (``StepPolicy.heartbeat_s``), and its workflows are replayed by another worker.

Settings (``LISA_TEMPORAL_*``): ``ADDRESS`` (127.0.0.1:7233), ``NAMESPACE`` (default),
``TASK_QUEUE`` (lisa), ``MAX_ACTIVITIES`` (2); the store is ``LISA_STORE_URI`` as for the
services. ``LISA_HEALTH_PORT`` serves ``/readyz`` (200 once polling) like every service.
SIGTERM/SIGINT: stop polling, let running activities finish (up to 30 s), exit 0.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import sys
from datetime import timedelta

import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE = "orchestrate-worker"
log = structlog.get_logger(__name__)


class TemporalSettings(BaseSettings):
    """``LISA_TEMPORAL_*`` variables: where the orchestrator is and what a worker takes."""

    model_config = SettingsConfigDict(env_prefix="LISA_TEMPORAL_")

    address: str = Field("127.0.0.1:7233", description="the frontend's host:port")
    namespace: str = "default"
    task_queue: str = Field("lisa", description="workflows and activities of one deployment")
    max_activities: int = Field(
        2, ge=1, description="activities at once per worker (the choreography: one per service)"
    )
    connect_timeout_s: float = Field(
        120.0, gt=0, description="keep trying to reach the server this long at start"
    )
    activity_delay_s: float = Field(
        0.0,
        ge=0,
        description="pause at the end of every activity, heartbeating; only for fault-injection "
        "tests and demos, to widen the window a crash must hit (as LISA_CATALOG_DELAY_S)",
    )


@functools.cache
def runtime():
    """The SDK's runtime with its Rust core's log lines forwarded to Python logging (our JSON
    lines on stderr): by default the core prints them to stdout, which is the catalogue's."""
    from temporalio.runtime import (
        LogForwardingConfig,
        LoggingConfig,
        Runtime,
        TelemetryConfig,
        TelemetryFilter,
    )

    forwarding = LogForwardingConfig(logger=logging.getLogger("temporalio.core"))
    filter_ = TelemetryFilter(core_level="WARN", other_level="ERROR")
    return Runtime(
        telemetry=TelemetryConfig(logging=LoggingConfig(filter=filter_, forwarding=forwarding))
    )


async def connect(address: str, namespace: str = "default", timeout_s: float = 120.0):
    """A client, retrying while the server is not (yet, or again) answering."""
    from temporalio.client import Client

    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            return await Client.connect(address, namespace=namespace, runtime=runtime())
        except RuntimeError as exc:  # the bridge's "Failed client connect"
            if asyncio.get_running_loop().time() > deadline:
                raise ConnectionError(f"no Temporal server answers on {address}: {exc}") from exc
            await asyncio.sleep(0.5)


def make_worker(client, task_queue: str, max_activities: int, identity: str | None = None):
    from temporalio.worker import Worker

    from lisa_choreo.orchestration.activities import ACTIVITIES
    from lisa_choreo.orchestration.workflows import (
        CatalogueWorkflow,
        ProbeWorkflow,
        SegmentWorkflow,
    )

    return Worker(
        client,
        task_queue=task_queue,
        workflows=[SegmentWorkflow, CatalogueWorkflow, ProbeWorkflow],
        activities=ACTIVITIES,
        max_concurrent_activities=max_activities,
        graceful_shutdown_timeout=timedelta(seconds=30),
        identity=identity or f"{SERVICE}-{socket.gethostname()}-{os.getpid()}",
    )


async def serve(settings: TemporalSettings, stop: asyncio.Event) -> None:
    from choreo.health import Health

    health = Health(SERVICE)
    await health.serve()
    try:
        client = await connect(settings.address, settings.namespace, settings.connect_timeout_s)
        worker = make_worker(client, settings.task_queue, settings.max_activities)
        async with worker:
            health.set_ready(True, task_queue=settings.task_queue, address=settings.address)
            log.info(
                "worker started",
                task_queue=settings.task_queue,
                address=settings.address,
                max_activities=settings.max_activities,
                identity=worker.config()["identity"],
            )
            await stop.wait()
            log.info("worker stopping: no new tasks, running activities finish")
    finally:
        await health.close()
    log.info("worker stopped")


def main(task_queue: str | None = None, max_activities: int | None = None) -> int:
    """Run one worker until SIGTERM/SIGINT; exits without interpreter teardown (os._exit): the
    SDK's Rust runtime threads can crash a finalizing interpreter (temporalio/sdk-python#300)."""
    from choreo.logs import configure_logging
    from choreo.tracing import configure_tracing

    configure_logging(SERVICE)
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
    provider = configure_tracing(SERVICE)
    overrides = {
        k: v
        for k, v in (("task_queue", task_queue), ("max_activities", max_activities))
        if v is not None
    }
    settings = TemporalSettings(**overrides)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    code = 0
    try:
        asyncio.run(run())
    except ConnectionError as exc:
        log.error("cannot reach the orchestrator", error=str(exc))
        code = 1
    finally:
        provider.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
