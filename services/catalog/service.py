"""``catalog``: stacks every segment's statistic spectrum, promotes and names sources, and keeps
the catalogue on the compacted ``lisa.catalog`` topic (latest state per source id).

A faust-streaming app, because the stack is state that must survive a crash: it lives in a faust
table whose changelog topic in Kafka rebuilds it at start (``memory://`` store by default).

Two agents, because a table must be co-partitioned with the stream that updates it, while the
input is keyed by segment and the stack is global over segments of one frequency grid:

1. ``route`` reads ``lisa.sources.estimates`` (raw bytes + headers), validates the CloudEvent
   (dead-letters what it cannot decode), and forwards the record untouched to the internal topic
   ``<app id>-by-grid`` keyed by grid (``dt``, ``n_samples``, number of bins), provenance in
   ``catalog_src_*`` headers;
2. ``stack`` reads ``<app id>-by-grid``: one grid, one partition, one table key. Per segment: skip
   it if its id is already counted (redelivery or duplicate), read its statistic from the
   claim-check store (SHA-256 verified), refuse another grid (``grid-mismatch``), add it,
   promote, publish every source whose state changed and wait for the broker's acks, THEN write
   the table (one JSON value holding stack + counted ids + sources, see ``state``), then rewrite
   the products.

Why this is exactly-once in effect, with at-least-once delivery: faust flushes the table's
changelog before it commits input offsets, and outputs are acknowledged before the table write.
A crash before the table write replays the segment and republishes the same updates with the
same deterministic ids (derived from the source id and the set of stacked segments); a crash
after it replays the segment, which is then recognised as counted and ignored. The catalogue
ends with each source once and the same stacked statistics.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, NoReturn

import faust
import numpy as np
import structlog
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from choreo import Consumes, Envelope, Produces, Step, codec, derive_event_id, tracing
from choreo.deadletter import DeadLetters, mark_failed
from choreo.errors import PermanentError, TransientError
from choreo.health import Health
from choreo.logs import configure_logging
from choreo.processing import failure_of, retry_policy
from choreo.publisher import Publisher, default_client_id, make_producer, record_size
from choreo.retry import retry
from choreo.runner import instance_id, leave_group, mark_left
from choreo.settings import KafkaSettings, StepSettings
from choreo.store import ArrayRef, Store
from lisa_pipeline.events import CatalogSource, SourceEstimates
from lisa_pipeline.topics import CATALOG, SOURCES_ESTIMATES
from lisa_services.catalog.products import write_products
from lisa_services.catalog.routing import forward_headers, original_record
from lisa_services.catalog.settings import CatalogSettings
from lisa_services.catalog.state import GridStack, decode_state, grid_key, stack_segment

SERVICE = "catalog"

step = Step(
    SERVICE,
    consumes=[Consumes(SOURCES_ESTIMATES, SourceEstimates)],
    produces=[Produces(CATALOG, CatalogSource)],
    description="stacks segment statistics per frequency bin, promotes and names sources; "
    "a faust app with changelog-backed tables (runs its own worker, not the step runner)",
)

log = structlog.get_logger(__name__)
_tracer = trace.get_tracer("choreo")
_TYPES = {SourceEstimates.ce_type: SourceEstimates}


def _exit_uncommitted(exc: BaseException) -> NoReturn:
    """Leave at once, as a SIGKILL would, when an input can be neither processed nor
    dead-lettered (the broker refuses the outputs): faust would ack the event of a failed agent
    and restart it, skipping the input; exiting before any commit makes the restart replay it,
    which is safe because every input is idempotent here."""
    log.critical("catalog cannot go on; exiting with the input uncommitted", error=repr(exc))
    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush(2000)
    os._exit(1)


class Catalog:
    """The faust app, its topics, its table and its two agents."""

    def __init__(
        self,
        kafka: KafkaSettings | None = None,
        settings: CatalogSettings | None = None,
        step_settings: StepSettings | None = None,
    ) -> None:
        self.kafka = kafka or KafkaSettings()
        self.settings = settings or CatalogSettings()
        self.step_settings = step_settings or StepSettings()
        self.store = Store()
        self.app_id = self.kafka.topic(SERVICE)  # the prefix isolates group, tables, topics
        data_dir = self.settings.data_path(self.app_id)
        data_dir.mkdir(parents=True, exist_ok=True)
        session = self.settings.session_timeout_s
        # static membership (faust passes consumer_group_instance_id to its aiokafka consumer);
        # the worker leaves the group explicitly once its consumer has stopped (``_Worker``)
        self.instance_id = instance_id(SERVICE, self.app_id, self.step_settings)
        self.app = faust.App(
            self.app_id,
            **self.kafka.faust_broker_options(),
            store=self.settings.store,
            datadir=str(data_dir),
            topic_partitions=self.settings.partitions,
            topic_replication_factor=self.settings.replication,
            consumer_group_instance_id=self.instance_id,
            broker_session_timeout=session,
            broker_heartbeat_interval=min(self.settings.heartbeat_interval_s, session / 3),
            broker_commit_interval=self.settings.commit_interval_s,
            consumer_auto_offset_reset="earliest",
            key_serializer="raw",
            value_serializer="raw",
            web_enabled=False,
            producer_max_request_size=self.kafka.max_request_bytes,
        )
        self.source_topic = self.app.topic(
            self.kafka.topic(SOURCES_ESTIMATES), key_serializer="raw", value_serializer="raw"
        )
        self.by_grid = self.app.topic(
            f"{self.app_id}-by-grid",
            partitions=self.settings.partitions,
            replicas=self.settings.replication,
            internal=True,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.stacks = self.app.Table(
            "stacks",
            default=None,
            partitions=self.settings.partitions,
            help="grid key -> GridStack JSON: per-bin sums, counted segment ids, sources",
        )
        self.app.agent(self.source_topic, name=f"{self.app_id}.route")(self._route)
        self.app.agent(self.by_grid, name=f"{self.app_id}.stack")(self._stack)
        self.app.on_before_shutdown.connect(self._close)
        self.app.on_partitions_assigned.connect(self._assigned)
        self.health = Health(SERVICE)
        self.health.details["instance_id"] = self.instance_id
        self._outputs_lock = asyncio.Lock()
        self._producer: Any = None
        self._publisher: Publisher | None = None
        self._dead_letters: DeadLetters | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def _outputs(self) -> tuple[Publisher, DeadLetters]:
        """The runtime's idempotent acks=all producer, for outputs and dead letters."""
        async with self._outputs_lock:
            if self._publisher is None:
                producer = make_producer(self.kafka, default_client_id(SERVICE))
                await producer.start()
                self._producer = producer
                self._publisher = Publisher(producer, self.kafka)
                self._dead_letters = DeadLetters(self._publisher, SERVICE)
        assert self._dead_letters is not None
        return self._publisher, self._dead_letters

    async def started(self) -> None:
        """Called once the table is recovered from its changelog (see ``_Worker``)."""
        await self._outputs()
        grids = {key: len(decode_state(v).segments) for key, v in self.stacks.items()}
        if grids:
            await self._write_products()
        self.health.set_ready(True, grids=len(grids))
        log.info(
            "step started",
            step=SERVICE,
            topics=[self.source_topic.get_topic_name(), self.by_grid.get_topic_name()],
            recovered_segments=grids,
            instance_id=self.instance_id,
        )

    async def _assigned(self, _sender: Any, assigned: Any, **__: Any) -> None:
        log.info(
            "partitions assigned",
            partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
            generation=self.app.consumer_generation_id,
            instance_id=self.instance_id,
        )

    async def _close(self, *_: Any, **__: Any) -> None:
        await self.health.close()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        log.info("catalog stopped")

    # -- agent 1: route each input to the partition that owns its grid ----------------------

    async def _route(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                await self._route_one(event.message)
            except Exception as exc:
                _exit_uncommitted(exc)

    async def _route_one(self, message: Any) -> None:
        with self._consumer_span(message) as span:
            try:
                envelope = codec.decode(message.key, message.value, message.headers, _TYPES)
                tracing.describe_event(span, envelope)
                key = grid_key(envelope.data)
                headers = forward_headers(message)
                size = record_size(key.encode(), message.value, headers)
                if size > self.kafka.max_request_bytes:
                    raise PermanentError(
                        "output-too-large",
                        f"{size} bytes forwarded > {self.kafka.max_request_bytes}",
                    )
            except PermanentError as exc:
                await self._dead_letter(message, exc, span)
                return
            except Exception as exc:  # last resort: no input may stop the catalogue
                log.exception("catalog failed on an input")
                error = PermanentError("internal-error", f"{type(exc).__name__}: {exc}")
                await self._dead_letter(message, error, span)
                return
            topic = self.by_grid.get_topic_name()
            with tracing.send_span(topic, envelope.id, key):
                tracing.inject(headers)
                delivery = await self.by_grid.send(
                    key=key.encode(), value=message.value, headers=headers, force=True
                )
            await delivery  # acknowledged before faust may commit the input's offset

    # -- agent 2: stack, promote, publish, then persist ------------------------------------

    async def _stack(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                await self._stack_one(event.message)
            except Exception as exc:
                _exit_uncommitted(exc)

    async def _stack_one(self, message: Any) -> None:
        original = original_record(message)
        key = message.key.decode()
        with self._consumer_span(message) as span:
            try:
                envelope = codec.decode(original.key, original.value, original.headers, _TYPES)
                tracing.describe_event(span, envelope)
                stack = await self._stacked(key, envelope, span)
                if stack is not None:  # an update the broker would refuse: refuse the input
                    publisher, _ = await self._outputs()
                    for body in stack.changed(self.settings.association_bins):
                        publisher.check_size(CATALOG, self._update(body, stack, envelope))
            except PermanentError as exc:
                await self._dead_letter(original, exc, span)
                return
            except Exception as exc:  # a bug on this input: dead-letter it, go on
                log.exception("catalog failed on an input")
                error = PermanentError("handler-error", f"{type(exc).__name__}: {exc}")
                await self._dead_letter(original, error, span)
                return
            if stack is not None:  # broker errors from here on stop the worker, uncommitted
                await self._persist(key, stack, envelope, span)

    async def _stacked(
        self, key: str, envelope: Envelope[Any], span: trace.Span
    ) -> GridStack | None:
        """The grid's state with this segment added and promoted; None if already counted."""
        data: SourceEstimates = envelope.data
        segment_id = data.timing.segment_id
        span.set_attributes({"lisa.grid": key, "lisa.segment_id": segment_id})
        stack = decode_state(self.stacks.get(key))
        if stack is not None and segment_id in stack.segments:
            span.set_attribute("lisa.duplicate", True)
            log.info("segment already counted, ignored", segment_id=segment_id, grid=key)
            return None
        arrays = await self._load(data.statistic)
        return stack_segment(
            stack, data, arrays["f"], arrays["stat"], tracing.current_traceparent(), self.settings
        )

    async def _persist(
        self, key: str, stack: GridStack, envelope: Envelope[Any], span: trace.Span
    ) -> None:
        """Publish what changed and wait for the acks, THEN write the table, then products."""
        changed = stack.changed(self.settings.association_bins)
        publisher, _ = await self._outputs()
        deliveries = [await self._publish(publisher, body, stack, envelope) for body in changed]
        await asyncio.gather(*deliveries)
        if self.settings.delay_s:
            await asyncio.sleep(self.settings.delay_s)
        self.stacks[key] = stack.mark_published(changed).to_json()
        span.set_attributes({"lisa.n_segments": len(stack.segments), "lisa.updates": len(changed)})
        log.info(
            "segment stacked",
            segment_id=envelope.data.timing.segment_id,
            grid=key,
            n_segments=len(stack.segments),
            sources=len(stack.sources or {}),
            updates=[b.source_id for b in changed],
        )
        if changed:
            await self._write_products()

    async def _publish(
        self, publisher: Publisher, body: CatalogSource, stack: GridStack, cause: Envelope[Any]
    ) -> asyncio.Future:
        """One source update, in a span linked to the trace of every contributing segment."""
        links = [lk for lk in map(tracing.link_to, stack.traceparents) if lk is not None]
        with _tracer.start_as_current_span(
            f"catalog update {body.source_id}",
            kind=SpanKind.INTERNAL,
            links=links,
            attributes={
                "lisa.source_id": body.source_id,
                "lisa.n_segments": body.n_segments,
                "lisa.stacked_snr": body.stacked_snr,
                "lisa.contributing_traces": len(links),
            },
        ):
            return await publisher.send(CATALOG, self._update(body, stack, cause))

    @staticmethod
    def _update(body: CatalogSource, stack: GridStack, cause: Envelope[Any]) -> Envelope[Any]:
        """One source's update, with an id that names the set of stacked segments."""
        return Envelope(
            id=derive_event_id(body.source_id, SERVICE, stack.version()),
            source=SERVICE,
            data=body,
            correlation_id=cause.correlation_id,
            causation_id=cause.id,
            subject=body.source_id,
            key=body.source_id,
        )

    async def _load(self, ref: ArrayRef) -> dict[str, np.ndarray]:
        """The statistic from the claim-check store; transient failures retried with backoff."""
        loaded = await retry(
            lambda: asyncio.to_thread(self.store.get, ref, ["f", "stat"]),
            retry_policy(self.step_settings),
            what="store unavailable",
        )
        return loaded.value

    async def _write_products(self) -> None:
        """Rewrite catalog.csv / catalog.h5 from every grid this worker owns."""
        bodies = [
            body
            for value in self.stacks.values()
            for body in decode_state(value).catalogue(self.settings.association_bins)
        ]
        directory = self.settings.products_path()
        try:
            ref = await asyncio.to_thread(write_products, bodies, directory, self.store)
        except (OSError, TransientError) as exc:  # the topic stays right; retried next change
            log.error("catalogue products not written", error=str(exc), directory=str(directory))
            return
        log.info(
            "catalogue products written",
            directory=str(directory),
            sources=len(bodies),
            sha256=ref.sha256,
        )

    # -- tracing and dead letters, the runtime's ----------------------------------------------

    def _consumer_span(self, message: Any):
        return tracing.consumer_span(
            message.topic,
            message.partition,
            message.offset,
            message.timestamp * 1e3 if message.timestamp else None,  # faust: seconds
            message.headers,
            SERVICE,
            self.app_id,
        )

    async def _dead_letter(self, record: Any, exc: PermanentError, span: trace.Span) -> None:
        reason = mark_failed(span, record, exc)
        _, dead_letters = await self._outputs()
        await (await dead_letters.send(record, failure_of(exc, reason)))


# -- entry points ---------------------------------------------------------------------------


class _Worker(faust.Worker):
    """faust's worker, quiet (no banner, no spinner, the runtime's logging) and telling the
    catalogue when the app is fully started (the worker owns ``app.on_startup_finished``)."""

    def __init__(self, catalog: Catalog, **kwargs: Any) -> None:
        super().__init__(
            catalog.app, quiet=True, override_logging=False, redirect_stdouts=False, **kwargs
        )
        self.spinner = None
        self._catalog = catalog

    async def on_first_start(self) -> None:
        await super().on_first_start()
        await self._catalog.health.serve()  # live while the table recovers; ready after

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        await self._catalog.started()

    async def on_shutdown(self) -> None:
        """The app, its consumer included, has stopped and committed: a static member sends no
        LeaveGroup on close, so leave now and let another replica take the partitions at once."""
        await super().on_shutdown()
        catalog = self._catalog
        instance = catalog.instance_id
        if instance is not None and await leave_group(catalog.kafka, catalog.app_id, instance):
            mark_left()  # else a successor may take the id, and the partitions, over


def main() -> int:
    """Run the faust worker until SIGTERM/SIGINT (in-flight input finished, offsets committed,
    exit 0). Logs are the runtime's JSON lines; faust's own chatter only from WARNING."""
    configure_logging(SERVICE)
    root_level = logging.getLogger().level
    for name in ("faust", "mode"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root_level))
    provider = tracing.configure_tracing(SERVICE)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    catalog = Catalog()
    worker = _Worker(catalog, loop=loop)
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        provider.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
