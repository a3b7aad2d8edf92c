"""``flows``: the flow monitor, a read-only observer of every segment's flow, and its web view.

It reads every stage's output topic and every dead-letter topic under its own group, materialises
each segment's flow (stages reached with their record times, the service that produced each, the
dead letter that ended it), raises ``lisa.flow.stuck.v1`` when a segment has not reached its next
stage within the deadline, ``lisa.flow.recovered.v1`` when a stuck one moves again and
``lisa.flow.deadlettered.v1`` when a flow ends in a dead letter, each once, on
``lisa.flows.alerts``; its state is the compacted ``lisa.flows.state``, read back at start. It
is never on the processing path and writes no pipeline topic.

- ``state``: the model, pure (stages, stuck detection, alerts, the view's figures);
- ``traffic``: throughput, lag and oldest waiting record per edge, pure;
- ``monitor``: the Kafka loop (read, check, send alerts, persist, commit);
- ``web``: the page (``static/``) and its JSON API, replay included.

Not a stage of the pipeline (``lisa_pipeline.stages``) and not in the topology's steps: an
observer (``lisa_choreo.registry.OBSERVERS``). ``step`` declares what it reads and writes, from
which the ACLs give it READ on those topics and their dead letters, READ on its own topics and
group, DESCRIBE on the groups it measures, and WRITE on its own two topics only.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from choreo import Consumes, Produces, Step, tracing
from choreo.logs import configure_logging
from lisa_pipeline.events import (
    CandidatesGB,
    CatalogSource,
    FlowDeadLettered,
    FlowRecovered,
    FlowSnapshot,
    FlowStuck,
    SegmentConditioned,
    SegmentRaw,
    SegmentRetracted,
    SourceEstimates,
    StepControl,
)
from lisa_pipeline.topics import (
    CANDIDATES_GB,
    CATALOG,
    CONTROL,
    FLOWS_ALERTS,
    FLOWS_STATE,
    RETRACTIONS,
    SEGMENTS_CONDITIONED,
    SEGMENTS_RAW,
    SOURCES_ESTIMATES,
)
from lisa_services.flows import web
from lisa_services.flows.monitor import Monitor
from lisa_services.flows.state import SERVICE

step = Step(
    SERVICE,
    consumes=[
        Consumes(SEGMENTS_RAW, SegmentRaw),
        Consumes(SEGMENTS_CONDITIONED, SegmentConditioned),
        Consumes(CANDIDATES_GB, CandidatesGB),
        Consumes(SOURCES_ESTIMATES, SourceEstimates),
        Consumes(CATALOG, CatalogSource),
        Consumes(CONTROL, StepControl),
        Consumes(RETRACTIONS, SegmentRetracted),
    ],
    produces=[
        Produces(FLOWS_ALERTS, FlowStuck, FlowDeadLettered, FlowRecovered),
        Produces(FLOWS_STATE, FlowSnapshot),
    ],
    description="read-only flow monitor: every segment's flow, stuck and dead-lettered flow "
    "alerts, the web flow view (an observer: also reads the dead-letter topics; no handler, "
    "runs its own loop)",
)


def main() -> int:
    """Run the monitor and its view until SIGTERM/SIGINT (offsets committed, exit 0)."""
    configure_logging(SERVICE)
    provider = tracing.configure_tracing(SERVICE)
    monitor = Monitor()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, monitor.stop)
        await monitor.health.serve()
        view = await web.serve(monitor)
        try:
            await monitor.run()
        finally:
            if view is not None:
                await view.cleanup()
            await monitor.health.close()

    try:
        asyncio.run(run())
    finally:
        provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
