"""``catalog``: stacks every segment's statistic spectrum, promotes and names sources, and keeps
the catalogue on the compacted ``lisa.catalog`` topic (latest state per source id).

A faust-streaming app, because the stack is state that must survive a crash: it lives in a faust
table whose changelog topic in Kafka rebuilds it at start (``memory://`` store by default).

Three agents, because a table must be co-partitioned with the stream that updates it, while the
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
   the products;
3. ``retract`` reads ``lisa.retractions`` (``lisa.segment.retracted.v1``, keyed by segment id)
   and BROADCASTS each retraction to every partition of ``<app id>-by-grid``: a segment id names
   no grid (the grid is in the segment's event, which may not have arrived yet), so no router can
   key it by grid; each partition owns its grids and its ledger, and the retraction takes its
   place in the same ordered stream as the segments of those grids, so whichever of the segment
   and its retraction comes first, the stack agent sees them in one order and the table writes
   stay on that partition's changelog. P partitions cost P records per retraction (one by
   default), not one per grid. On a retraction the stack agent subtracts the segment from every
   grid of its partition that counted it (its statistic read again through the reference the
   state kept), drops its estimates, demotes what falls below the threshold, publishes the
   changed sources (status and ``retracted_segments``), writes the grids, then remembers the id
   in the partition's ledger (so the segment, arriving later or again, is never counted), then
   rewrites the products. A retraction seen again changes nothing. Its processing is traced in
   the retraction's trace, with a span ``catalog retract <segment>`` linked to the segment's own
   flow (the traceparent the state kept for it); a segment refused because it was retracted
   first links to the retraction's trace.

A fourth agent, ``refined``, reads ``lisa.sources.refined`` (the refine step's physical
parameters, keyed by source id) and rewrites the products with them: ``catalog.csv``/``.h5`` gain
fdot, sky position, amplitude and inclination with their sigmas for each refined source. It keeps
no table: the compacted topic is the state, read whole (group-less) when the worker starts, then
followed. Refining feeds nothing back into the stack or the promotion, so no cycle: the catalogue
publishes no update for a refined record.

Pause and resume (``lisa.control``, ``choreo.control``): every agent passes a gate
(``asyncio.Event``) before taking its next event, closed while the latest command for
``catalog`` says ``paused`` and until the control topic was read at start; and the partitions of
the agents' topics are paused in faust's consumer (``pause_partitions``: fetch nothing from
them), so that an agent idle in its stream when the pause comes receives nothing either. faust
itself resumes every stream partition at the end of a rebalance's recovery; the app's
``on_rebalance_end`` pauses them again at once. An agent acks the event it finished before
waiting at the gate, so a paused catalogue holds no event: a rebalance or a SIGTERM (faust waits
for unacked events then) goes through, and nothing is committed past what was processed. The
consumer stays in its group (faust's fetcher keeps polling the changelog and heartbeats go on),
the worker stays live and ready, and ``paused`` shows in its health details and in the
``lisa.step.paused`` gauge. The event in hand when the pause lands is finished, as in the runner.

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
from collections.abc import Callable
from typing import Any, NoReturn

import faust
import numpy as np
import structlog
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from choreo import Consumes, Envelope, Produces, Step, codec, derive_event_id, tracing
from choreo.control import ControlChannel, ControlReader
from choreo.deadletter import DeadLetters, mark_failed
from choreo.errors import PermanentError, TransientError
from choreo.health import Health
from choreo.logs import configure_logging
from choreo.metrics import configure_metrics, observe_paused
from choreo.processing import failure_of, retry_policy
from choreo.publisher import Publisher, default_client_id, make_producer, record_size
from choreo.reader import TopicReader
from choreo.retry import retry
from choreo.runner import instance_id, leave_group, mark_left
from choreo.settings import KafkaSettings, StepSettings
from choreo.store import ArrayRef, Store
from lisa_pipeline.events import (
    CatalogSource,
    SegmentRetracted,
    SourceEstimates,
    SourceRefined,
    StepControl,
)
from lisa_pipeline.topics import CATALOG, CONTROL, RETRACTIONS, SOURCES_ESTIMATES, SOURCES_REFINED
from lisa_services.catalog.products import write_products
from lisa_services.catalog.routing import forward_headers, original_record
from lisa_services.catalog.settings import CatalogSettings
from lisa_services.catalog.state import (
    PROMOTED,
    GridStack,
    RetractionLedger,
    decode_ledger,
    decode_state,
    entry_key,
    grid_key,
    grid_partition,
    is_grid_key,
    is_head,
    ledger_key,
    retract_segment,
    stack_segment,
)

SERVICE = "catalog"

step = Step(
    SERVICE,
    consumes=[
        Consumes(SOURCES_ESTIMATES, SourceEstimates),
        Consumes(RETRACTIONS, SegmentRetracted),
        Consumes(SOURCES_REFINED, SourceRefined),
    ],
    produces=[Produces(CATALOG, CatalogSource)],
    description="stacks segment statistics per frequency bin, promotes and names sources, "
    "subtracts retracted segments and demotes what falls below the threshold; a faust app with "
    "changelog-backed tables (runs its own worker, not the step runner)",
)
CONTROL_CHANNEL = ControlChannel(CONTROL, StepControl)

log = structlog.get_logger(__name__)
_tracer = trace.get_tracer("choreo")
_TYPES = {SourceEstimates.ce_type: SourceEstimates}
_RETRACTION_TYPES = {SegmentRetracted.ce_type: SegmentRetracted}
_REFINED_TYPES = {SourceRefined.ce_type: SourceRefined}


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


class _App(faust.App):
    """faust's app, telling the catalogue when a rebalance is over: faust resumes every stream
    partition at the end of its recovery, which a paused catalogue pauses again at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after_rebalance: list[Any] = []

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        for callback in self.after_rebalance:
            callback()


class Catalog:
    """The faust app, its topics, its table and its three agents."""

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
        self.app = _App(
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
            # faust refuses a request timeout shorter than the session (a heartbeat request
            # must be able to wait that long)
            broker_request_timeout=max(self.settings.request_timeout_s, session),
            producer_request_timeout=self.settings.request_timeout_s,
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
        self.retraction_topic = self.app.topic(
            self.kafka.topic(RETRACTIONS), key_serializer="raw", value_serializer="raw"
        )
        self.stacks = self.app.Table(
            "stacks",
            default=None,
            partitions=self.settings.partitions,
            help="grid key -> GridStack JSON: per-bin sums, counted segment ids, sources; "
            "~retractions/<partition> -> the retracted segment ids of that partition",
        )
        self.entries = self.app.Table(
            "entries",
            default=None,
            partitions=self.settings.partitions,
            help="<grid key>|<segment id> -> a counted segment's statistic reference, trace "
            "context and estimates (the grid's head in ``stacks`` lists the counted ones)",
        )
        # grid key -> (the table value it was decoded from, the state): a segment decodes only
        # what it changes, not every counted segment's entry again
        self._decoded: dict[str, tuple[Any, GridStack]] = {}
        self.app.agent(self.source_topic, name=f"{self.app_id}.route")(self._route)
        self.app.agent(self.retraction_topic, name=f"{self.app_id}.retract")(self._broadcast)
        # agent 4: the refine step's physical parameters, merged into the products (no table:
        # the compacted topic is the state, read whole at start, see ``_read_refined``)
        self.refined_topic = self.app.topic(
            self.kafka.topic(SOURCES_REFINED), key_serializer="raw", value_serializer="raw"
        )
        self.app.agent(self.refined_topic, name=f"{self.app_id}.refined")(self._refine)
        self.refined: dict[str, SourceRefined] = {}
        self.app.agent(self.by_grid, name=f"{self.app_id}.stack")(self._stack)
        self.app.on_before_shutdown.connect(self._close)
        self.app.on_partitions_assigned.connect(self._assigned)
        self._types = {self.kafka.topic(t): m for t, m in step.types_by_topic().items()}
        self.health = Health(SERVICE)
        self.health.details["instance_id"] = self.instance_id
        # pause and resume: the gate every agent passes, closed until the control topic is read
        self.paused = False
        self._running = asyncio.Event()
        self._control = ControlReader(
            self.kafka, CONTROL_CHANNEL, f"{default_client_id(SERVICE)}-control"
        )
        self._control_task: asyncio.Future[None] | None = None
        self.health.set_paused(False)
        observe_paused(SERVICE, lambda: self.paused)
        self.app.after_rebalance.append(self._hold_partitions)
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
        await self._read_refined()
        grids = {key: len(stack.segments) for key, stack in self._grids()}
        if grids:
            await self._write_products()
        self.health.set_ready(True, grids=len(grids))
        log.info(
            "step started",
            step=SERVICE,
            topics=[
                self.source_topic.get_topic_name(),
                self.retraction_topic.get_topic_name(),
                self.by_grid.get_topic_name(),
            ],
            recovered_segments=grids,
            instance_id=self.instance_id,
            paused=self.paused,
        )

    def _grids(self, partition: int | None = None) -> list[tuple[str, GridStack]]:
        """The grids in the table (those of one by-grid partition), without the ledgers."""
        out = []
        for key, value in list(self.stacks.items()):
            if not is_grid_key(key):
                continue
            if partition is not None and grid_partition(key, self.settings.partitions) != partition:
                continue
            stack = self._decode(key, value)
            if stack is not None:
                out.append((key, stack))
        return out

    def _decode(self, key: str, value: Any) -> GridStack | None:
        """The grid's state from its table value (and, for a head, its segments' entries),
        decoded once per value written."""
        cached = self._decoded.get(key)
        if cached is not None and cached[0] is value:
            return cached[1]
        entries = None
        if is_head(value):
            entries = {sid: self.entries.get(entry_key(key, sid)) for sid in value["segments"]}
        stack = decode_state(value, entries)
        if stack is not None:
            self._decoded[key] = (value, stack)
        return stack

    def _write(self, key: str, stack: GridStack, counted: str | None) -> None:
        """The grid's new state: the entry of the segment it now counts (``counted``) first,
        then the head, the commit point (``state``)."""
        if counted is not None:
            self.entries[entry_key(key, counted)] = stack.segment_entry(counted)
        head = stack.head_json()
        self.stacks[key] = head
        self._decoded[key] = (head, stack)

    # -- pause and resume --------------------------------------------------------------------

    def start_control(self) -> None:
        """Follow the control topic (from the worker's first start, before any agent runs)."""
        if self._control_task is None:
            self._control_task = asyncio.ensure_future(self._follow_control())

    async def _follow_control(self) -> None:
        await self._control.start()
        while True:
            self._control.changed.clear()
            self._apply_control()
            await self._control.changed.wait()

    def _apply_control(self) -> None:
        command = self._control.state.command(SERVICE)
        desired = command is not None and command.paused
        opening = not desired and not self.paused and not self._running.is_set()
        if opening:  # the control topic is read and says run: the agents start
            self._running.set()
            return
        if desired == self.paused:
            return
        self.paused = desired
        reason = command.reason if command else ""
        by = command.requested_by if command else ""
        if desired:
            self._running.clear()  # agents stop before their next event
            self._hold_partitions()  # and an agent idle in its stream gets none
        else:
            self._release_partitions()
            self._running.set()
        self.health.set_paused(desired, reason=reason, requested_by=by)
        log.info(
            "step paused" if desired else "step resumed",
            step=SERVICE,
            reason=reason,
            requested_by=by,
            generation=self.app.consumer_generation_id,
        )

    async def _assigned(self, _sender: Any, assigned: Any, **__: Any) -> None:
        self.health.details["generation"] = self.app.consumer_generation_id
        log.info(
            "partitions assigned",
            partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
            generation=self.app.consumer_generation_id,
            instance_id=self.instance_id,
        )

    def _input_partitions(self) -> set[Any]:
        """The assigned partitions of the agents' topics (not the table's changelog)."""
        topics = {
            self.source_topic.get_topic_name(),
            self.retraction_topic.get_topic_name(),
            self.by_grid.get_topic_name(),
            self.refined_topic.get_topic_name(),
        }
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # not started yet: the next rebalance's end applies the pause
            return set()
        return {tp for tp in assignment if tp.topic in topics}

    def _hold_partitions(self) -> None:
        """While paused, fetch nothing from the agents' topics (faust's recovery resumes them at
        the end of each rebalance, after which this runs again)."""
        if self.paused:
            held = self._input_partitions()
            if held:
                self.app.consumer.pause_partitions(held)

    def _release_partitions(self) -> None:
        """Fetch again; during a rebalance faust resumes them itself once recovered."""
        if self.app.rebalancing or getattr(self.app, "in_recovery", False):
            return
        held = self._input_partitions()
        paused = getattr(self.app.consumer, "_paused_partitions", None)
        if paused is not None:  # only what is paused: flow control keeps the buffered ones
            held &= set(paused)
        if held:
            self.app.consumer.resume_partitions(held)

    async def _close(self, *_: Any, **__: Any) -> None:
        if self._control_task is not None:
            self._control_task.cancel()
            self._control_task = None
        await self._control.stop()
        await self.health.close()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        log.info("catalog stopped")

    async def _consume(self, stream: faust.StreamT, handle: Any) -> None:
        """An agent's loop: the gate, then one event at a time, acked as soon as it is done so
        that an agent waiting at a closed gate holds none."""
        await self._running.wait()
        async for event in stream.events():
            try:
                await handle(event.message)
            except Exception as exc:
                _exit_uncommitted(exc)
            await stream.ack(event)
            await self._running.wait()

    # -- agent 1: route each input to the partition that owns its grid ----------------------

    async def _route(self, stream: faust.StreamT) -> None:
        await self._consume(stream, self._route_one)

    async def _forwardable(
        self, message: Any, span: Any, types: Any, key_of: Callable[[Any], str]
    ) -> tuple[Any, str, list] | None:
        """An input of agents 1 and 2 decoded for the by-grid hop: (envelope, key, headers),
        checked to fit one record; a bad one is dead-lettered (None), never raised."""
        try:
            envelope = codec.decode(message.key, message.value, message.headers, types)
            tracing.describe_event(span, envelope)
            key = key_of(envelope.data)
            headers = forward_headers(message)
            size = record_size(key.encode(), message.value, headers)
            if size > self.kafka.max_request_bytes:
                raise PermanentError(
                    "output-too-large",
                    f"{size} bytes forwarded > {self.kafka.max_request_bytes}",
                )
        except PermanentError as exc:
            await self._dead_letter(message, exc, span)
            return None
        except Exception as exc:  # last resort: no input may stop the catalogue
            log.exception("catalog failed on an input")
            error = PermanentError("internal-error", f"{type(exc).__name__}: {exc}")
            await self._dead_letter(message, error, span)
            return None
        return envelope, key, headers

    async def _route_one(self, message: Any) -> None:
        with self._consumer_span(message) as span:
            decoded = await self._forwardable(message, span, _TYPES, grid_key)
            if decoded is None:
                return
            envelope, key, headers = decoded
            topic = self.by_grid.get_topic_name()
            with tracing.send_span(topic, envelope.id, key):
                tracing.inject(headers)
                delivery = await self.by_grid.send(
                    key=key.encode(), value=message.value, headers=headers, force=True
                )
            await delivery  # acknowledged before faust may commit the input's offset

    # -- agent 4: refined parameters into the products ----------------------------------------

    async def _read_refined(self) -> None:
        """The latest refined record of every source (a compacted topic, read group-less)."""
        try:
            async with TopicReader(self.kafka, [SOURCES_REFINED]) as reader:
                records = await reader.snapshot()
        except LookupError:
            return
        for record in sorted(records, key=lambda r: (r.partition, r.offset)):
            try:
                data = codec.decode(record.key, record.value, record.headers, _REFINED_TYPES).data
            except PermanentError:
                continue  # the agent dead-letters it when it comes
            self.refined[data.source_id] = data

    async def _refine(self, stream: faust.StreamT) -> None:
        await self._consume(stream, self._refine_one)

    async def _refine_one(self, message: Any) -> None:
        with self._consumer_span(message) as span:
            try:
                envelope = codec.decode(message.key, message.value, message.headers, _REFINED_TYPES)
            except PermanentError as exc:
                await self._dead_letter(message, exc, span)
                return
            tracing.describe_event(span, envelope)
            span.set_attribute("lisa.source_id", envelope.data.source_id)
            self.refined[envelope.data.source_id] = envelope.data
            await self._write_products()

    # -- agent 2: each retraction to every partition of the by-grid hop ----------------------

    async def _broadcast(self, stream: faust.StreamT) -> None:
        await self._consume(stream, self._broadcast_one)

    async def _broadcast_one(self, message: Any) -> None:
        with self._consumer_span(message) as span:
            decoded = await self._forwardable(
                message, span, _RETRACTION_TYPES, lambda data: data.segment_id
            )
            if decoded is None:
                return
            envelope, segment_id, headers = decoded
            key = segment_id.encode()
            span.set_attribute("lisa.segment_id", envelope.data.segment_id)
            topic = self.by_grid.get_topic_name()
            deliveries = []
            for partition in range(self.settings.partitions):
                copy = list(headers)
                with tracing.send_span(
                    topic,
                    envelope.id,
                    key.decode(),
                    **{"messaging.destination.partition.id": str(partition)},
                ):
                    tracing.inject(copy)
                    deliveries.append(
                        await self.by_grid.send(
                            key=key,
                            value=message.value,
                            headers=copy,
                            partition=partition,
                            force=True,
                        )
                    )
            for delivery in deliveries:  # every partition has it before the input commits
                await delivery

    # -- agent 3: stack, promote, publish, then persist; or retract ---------------------------

    async def _stack(self, stream: faust.StreamT) -> None:
        await self._consume(stream, self._stack_one)

    async def _stack_one(self, message: Any) -> None:
        original = original_record(message)
        key = message.key.decode() if message.key is not None else ""
        partition = message.partition
        with self._consumer_span(message) as span:
            try:
                types = self._types.get(original.topic, {**_TYPES, **_RETRACTION_TYPES})
                envelope = codec.decode(original.key, original.value, original.headers, types)
                tracing.describe_event(span, envelope)
                ledger: RetractionLedger | None = None
                if isinstance(envelope.data, SegmentRetracted):
                    changes = await self._retracted(partition, envelope, span)
                else:
                    stacked, ledger = await self._stacked(key, partition, envelope, span)
                    changes = [(key, stacked, None)] if stacked is not None else []
                # an update the broker would refuse: refuse the input before anything is sent
                publisher, _ = await self._outputs()
                for _, stack, _ in changes:
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
            # broker errors from here on stop the worker, uncommitted
            if isinstance(envelope.data, SegmentRetracted):
                await self._apply_retraction(partition, changes, envelope, span)
                return
            for grid, stack, _ in changes:
                await self._persist(grid, stack, envelope, span)
            if ledger is not None:
                self.stacks[ledger_key(partition)] = ledger.to_json()

    async def _stacked(
        self, key: str, partition: int, envelope: Envelope[Any], span: trace.Span
    ) -> tuple[GridStack | None, RetractionLedger | None]:
        """The grid's state with this segment added and promoted (None if already counted), and
        the partition's ledger if it changed. A segment retracted before it came is not
        counted: its grid lists it as retracted (or will, when created)."""
        data: SourceEstimates = envelope.data
        segment_id = data.timing.segment_id
        span.set_attributes({"lisa.grid": key, "lisa.segment_id": segment_id})
        stack = self._decode(key, self.stacks.get(key))
        if stack is not None and segment_id in stack.segments:
            span.set_attribute("lisa.duplicate", True)
            log.info("segment already counted, ignored", segment_id=segment_id, grid=key)
            return None, None
        ledger = decode_ledger(self.stacks.get(ledger_key(partition)))
        retraction = ledger.get(segment_id)
        if retraction is not None:
            span.set_attribute("lisa.retracted", True)
            links = [lk for lk in [tracing.link_to(retraction.traceparent or "")] if lk]
            with _tracer.start_as_current_span(
                f"catalog refuse {segment_id}",
                links=links,
                attributes={"lisa.segment_id": segment_id, "lisa.grid": key},
            ):
                log.info("retracted segment ignored", segment_id=segment_id, grid=key)
            if stack is None:  # no grid yet: the ledger remembers which it will be
                seen = ledger.seen_in(segment_id, key)
                return None, (seen if seen is not ledger else None)
            refused = stack.refuse(segment_id)
            return (refused if refused is not stack else None), None
        arrays = await self._load(data.statistic)
        stacked = stack_segment(
            stack, data, arrays["f"], arrays["stat"], tracing.current_traceparent(), self.settings
        )
        if stack is None:  # a new grid lists the retracted segments of it seen before
            for retracted in ledger.of_grid(key):
                stacked = stacked.refuse(retracted)
        return stacked, None

    async def _retracted(
        self, partition: int, envelope: Envelope[Any], span: trace.Span
    ) -> list[tuple[str, GridStack, str | None]]:
        """Every grid of this partition that counted the segment, with the segment taken out,
        and the segment's own traceparent (to link its retraction to its flow)."""
        segment_id = envelope.data.segment_id
        span.set_attribute("lisa.segment_id", segment_id)
        changes = []
        for key, stack in self._grids(partition):
            if segment_id not in stack.segments:
                continue
            arrays = await self._load(stack.statistic_of(segment_id))
            stack.check_grid(np.asarray(arrays["f"], dtype=np.float64), stack.n_independent_bins)
            retracted = retract_segment(stack, segment_id, arrays["stat"], self.settings)
            changes.append((key, retracted, stack.traceparent_of(segment_id)))
        return changes

    async def _apply_retraction(
        self,
        partition: int,
        changes: list[tuple[str, GridStack, str | None]],
        envelope: Envelope[Any],
        span: trace.Span,
    ) -> None:
        """Publish and persist each grid without the segment, THEN remember the retraction in
        the partition's ledger (a crash in between replays it: the grids no longer count the
        segment, the ledger learns it), then rewrite the products."""
        data: SegmentRetracted = envelope.data
        segment_id = data.segment_id
        key = ledger_key(partition)
        ledger = decode_ledger(self.stacks.get(key))
        if not changes and segment_id in ledger:
            span.set_attribute("lisa.duplicate", True)
            log.info("retraction already applied", segment_id=segment_id)
            return
        for grid, stack, origin in changes:
            links = [lk for lk in [tracing.link_to(origin or "")] if lk]
            with _tracer.start_as_current_span(
                f"catalog retract {segment_id}",
                kind=SpanKind.INTERNAL,
                links=links,
                attributes={"lisa.segment_id": segment_id, "lisa.grid": grid},
            ) as retract_span:
                await self._persist(grid, stack, envelope, retract_span, rewrite_products=False)
        if segment_id not in ledger:
            here = tracing.current_traceparent()
            self.stacks[key] = ledger.remember(segment_id, here, data.reason).to_json()
        span.set_attributes({"lisa.retraction.grids": len(changes)})
        log.info(
            "segment retracted",
            segment_id=segment_id,
            reason=data.reason,
            grids=[grid for grid, _, _ in changes],
            counted=bool(changes),
            remembered=len(ledger) + (segment_id not in ledger),
        )
        if changes:
            await self._write_products()

    async def _persist(
        self,
        key: str,
        stack: GridStack,
        envelope: Envelope[Any],
        span: trace.Span,
        rewrite_products: bool = True,
    ) -> None:
        """Publish what changed and wait for the acks, THEN write the table, then products."""
        changed = stack.changed(self.settings.association_bins)
        publisher, _ = await self._outputs()
        deliveries = [await self._publish(publisher, body, stack, envelope) for body in changed]
        await asyncio.gather(*deliveries)
        if self.settings.delay_s:
            await asyncio.sleep(self.settings.delay_s)
        if isinstance(envelope.data, SegmentRetracted):
            segment_id, what = envelope.data.segment_id, "grid without a retracted segment"
            counted = False
        else:
            segment_id = envelope.data.timing.segment_id
            counted = segment_id in stack.segments  # else refused: retracted before it came
            what = "segment stacked" if counted else "grid lists a retracted segment"
        self._write(key, stack.mark_published(changed), segment_id if counted else None)
        span.set_attributes({"lisa.n_segments": len(stack.segments), "lisa.updates": len(changed)})
        log.info(
            what,
            segment_id=segment_id,
            grid=key,
            n_segments=len(stack.segments),
            sources=len(stack.sources or {}),
            withdrawn=sorted(stack.status),
            updates=[b.source_id for b in changed],
        )
        if changed and rewrite_products:
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
                "lisa.source_status": body.status,
                "lisa.retracted_segments": len(body.retracted_segments),
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
        """Rewrite catalog.csv / catalog.h5 from every grid this worker owns: the promoted
        sources (demoted and retracted ones are on ``lisa.catalog`` with their status)."""
        bodies = [
            body.with_refined(self.refined.get(body.source_id))
            for _, stack in self._grids()
            for body in stack.catalogue(self.settings.association_bins)
            if body.status == PROMOTED
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
        self._catalog.start_control()  # the agents wait until the control topic is read

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
    meters = configure_metrics(SERVICE)
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
        meters.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
