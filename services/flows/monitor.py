"""The flow monitor's Kafka side: read every flow topic, keep the model, raise and persist.

Read-only on the pipeline: it assigns itself every partition of each stage's output topic and of
each dead-letter topic (``lisa_pipeline.flowmodel.OBSERVED_TOPICS``, and the dead letters of any
other declared topic a step consumes, for the view's list), reads committed records only
(ingest publishes in transactions), and commits its positions under its own group
(``<prefix>flows``) without joining it, so it never takes a partition from anyone. It writes only
``lisa.flows.alerts`` and ``lisa.flows.state``.

One round:

1. ``getmany`` a batch; each record becomes a hop of the model (``state.FlowModel.observe``) and a
   data point of the traffic (``traffic.Traffic``);
2. every ``offsets_interval_s``: the consuming groups' committed offsets and the end offsets (lag,
   throughput, the catalogue's progress); every ``check_interval_s``: stuck detection;
3. send the alerts raised, then the snapshots of the flows that changed (the "alerted" marks
   among them), wait for the broker's acks, and only then commit the batch's offsets.

The monitor is ready (``/readyz``) once its state is rebuilt and it has read what was on the
topics when it started; it looks for stuck flows only from then on. A crash before 3 completes
replays the batch into a model rebuilt from the state topic; the alerts
raised again carry the same ids and every id already on the alerts topic is known at start
(``_rebuild``), so none is sent twice. At start the consumed topics are read again from the
earliest offset their consumer has not committed (the records still waiting, for lag and age),
and the dead-letter topics from the beginning (the view lists every letter); the model ignores
what it already knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from choreo import codec
from choreo.events import Envelope
from choreo.health import Health
from choreo.publisher import Publisher, default_client_id, make_producer
from choreo.reader import TopicReader, partitions_of
from choreo.replay import REPLAY_HEADER, Letter
from choreo.retry import start_until_ready
from choreo.settings import KafkaSettings
from choreo.topology import dead_letter_topic
from lisa_pipeline.events import FlowRetraction, FlowSnapshot, SegmentRetracted, StepControl
from lisa_pipeline.flowmodel import (
    DEAD_LETTER_TOPICS,
    OBSERVED_TOPICS,
    STAGE_BY_INPUT,
    hop_of,
)
from lisa_pipeline.topics import CONTROL, FLOWS_ALERTS, FLOWS_STATE, RETRACTIONS, TOPICS
from lisa_services.flows.settings import FlowsSettings
from lisa_services.flows.state import SERVICE, Alert, FlowModel
from lisa_services.flows.traffic import Traffic

log = structlog.get_logger(__name__)
_SNAPSHOT = {FlowSnapshot.ce_type: FlowSnapshot}
_CONTROL = {StepControl.ce_type: StepControl}
_RETRACTION = {SegmentRetracted.ce_type: SegmentRetracted}
SIDE_TOPICS = (CONTROL, RETRACTIONS)
"""Read whole at every start (compacted): each step's desired state, and the retractions."""


def alert_envelope(alert: Alert) -> Envelope[Any]:
    return Envelope(
        id=alert.id,
        source=SERVICE,
        data=alert.body,
        correlation_id=alert.correlation_id,
        causation_id=alert.causation_id,
        subject=alert.segment_id,
        key=alert.segment_id,
    )


def alert_view(alert_id: str, body: dict[str, Any], ce_type: str, at_ms: int | None) -> dict:
    return {"id": alert_id, "type": ce_type, "at_ms": at_ms, **body}


class Monitor:
    def __init__(
        self,
        kafka: KafkaSettings | None = None,
        settings: FlowsSettings | None = None,
        health: Health | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kafka = kafka or KafkaSettings()
        self.settings = settings or FlowsSettings()
        self.health = health or Health(SERVICE)
        self._clock = clock
        self.model = FlowModel(self.settings.deadline_for, started_ms=self.now_ms())
        self.traffic = Traffic(STAGE_BY_INPUT, self.settings.window_s)
        self.recent: deque[dict] = deque(maxlen=200)
        """The last alerts on the topic, newest last (the view's list)."""
        self.letters: dict[str, Letter] = {}
        """Every dead letter read (by ref, without its body), for the view."""
        self.letter_topics: list[str] = list(DEAD_LETTER_TOPICS)
        """Dead-letter topics read: the flow topics' and any other declared topic's."""
        self.replayed: set[str] = set()
        """Refs of letters seen replayed (``lisa_replay_of`` on a consumed topic)."""
        self.controls: dict[str, StepControl] = {}
        """Each step's last pause/resume command (``lisa.control``): the view marks it."""
        self.group = self.kafka.topic(SERVICE)
        self._stopping = asyncio.Event()
        self._pending: list[Alert] = []
        self._unsaved: dict[str, FlowSnapshot | None] = {}
        self._uncommitted: dict[TopicPartition, int] = {}
        self._verify_alerts = False
        self._consumed: list[TopicPartition] = []
        self._next_offsets = 0.0
        self._next_check = 0.0
        self.offsets_read_ms: int | None = None

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stop requested", service=SERVICE)
        self._stopping.set()

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        client_id = default_client_id(SERVICE)
        producer = await self._start(lambda: make_producer(self.kafka, client_id))
        if producer is None:
            return
        consumer: AIOKafkaConsumer | None = None
        admin: AIOKafkaAdminClient | None = None
        try:
            if not await self._rebuild():
                return
            consumer = await self._start(
                lambda: AIOKafkaConsumer(
                    **self.kafka.client_options(),
                    client_id=client_id,
                    group_id=self.group,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    isolation_level="read_committed",
                )
            )
            admin = await self._start(
                lambda: AIOKafkaAdminClient(**self.kafka.client_options(), client_id=client_id)
            )
            if consumer is None or admin is None or not await self._assign(consumer, admin):
                return
            await self._poll_offsets(consumer, admin)
            backlog = await consumer.end_offsets(list(consumer.assignment()))
            publisher = Publisher(producer, self.kafka)
            while not self._stopping.is_set():
                batch = await self._fetch(consumer)
                self.health.beat()
                for tp, records in batch.items():
                    for record in records:
                        self._observe(record)
                    self._uncommitted[tp] = records[-1].offset + 1
                # caught up: everything there at start read, or nothing more to read now
                if backlog and (not batch or await self._caught_up(consumer, backlog)):
                    backlog = {}
                    self.health.set_ready(True, flows=len(self.model.flows), group=self.group)
                    log.info(
                        "flow monitor started",
                        flows=len(self.model.flows),
                        alerts_known=len(self.model.emitted),
                        topics=len({tp.topic for tp in consumer.assignment()}),
                    )
                now = self._clock()
                if now >= self._next_offsets:
                    self._next_offsets = now + self.settings.offsets_interval_s
                    await self._poll_offsets(consumer, admin)
                if backlog:  # no stuck verdict on a model still reading what it missed
                    await self._flush(publisher, consumer)
                    continue
                if now >= self._next_check:
                    self._next_check = now + self.settings.check_interval_s
                    now_ms = self.now_ms()
                    self._pending += self.model.check(now_ms)
                    self.model.prune(now_ms, int(self.settings.retain_s * 1000))
                await self._flush(publisher, consumer)
            await self._flush(publisher, consumer)
        finally:
            self.health.set_ready(False)
            if consumer is not None:
                await consumer.stop()
            if admin is not None:
                await admin.close()
            await producer.stop()
            log.info("flow monitor stopped", flows=len(self.model.flows))

    async def _start(self, make: Callable[[], Any]) -> Any:
        """Start a client, waiting for the cluster as long as it takes (or until SIGTERM)."""
        return await start_until_ready(make, self._stopping, 0.5, 15.0)

    @staticmethod
    async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
        """Has the monitor read everything that was there when it started?"""
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _fetch(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list]:
        timeout_ms = int(1000 * min(0.5, self.settings.check_interval_s))
        fetch = asyncio.ensure_future(consumer.getmany(timeout_ms=timeout_ms, max_records=2000))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not fetch.done():
            fetch.cancel()
            await asyncio.wait({fetch})
            return {}
        return fetch.result()

    # -- start: the state, then the positions --------------------------------------------------

    async def _rebuild(self) -> bool:
        """The flows from the compacted state topic, the alert ids from the alerts topic."""
        while not self._stopping.is_set():
            try:
                async with TopicReader(self.kafka, [FLOWS_STATE]) as reader:
                    state = await reader.snapshot()
                async with TopicReader(self.kafka, [FLOWS_ALERTS]) as reader:
                    alerts = await reader.snapshot()
            except (LookupError, KafkaError) as exc:
                log.warning("cannot read the monitor's topics yet, waiting", error=str(exc))
                await self._pause(2.0)
                continue
            latest: dict[str, Any] = {}
            for r in state:
                if r.key is not None:
                    latest[r.key.decode(errors="replace")] = r
            snapshots = []
            for segment, r in latest.items():
                if r.value is None:
                    continue  # a tombstone: forgotten
                try:
                    env = codec.decode(r.key, r.value, r.headers, _SNAPSHOT)
                except Exception as exc:  # a bad state record must not stop the monitor
                    log.warning("unreadable state record ignored", segment=segment, error=str(exc))
                    continue
                snapshots.append(env.data)
            emitted = set()
            for r in alerts:
                h = codec.header_map(r.headers)
                if h.get("ce_id"):
                    emitted.add(h["ce_id"])
                    self.recent.append(self._alert_record_view(r, h))
            self.model.load(snapshots, emitted)
            for flow in self.model.flows.values():
                self.replayed.update(flow.replays)
            log.info("state rebuilt", flows=len(snapshots), alerts=len(emitted))
            return True
        return False

    @staticmethod
    def _alert_record_view(record: ConsumerRecord, h: dict[str, str]) -> dict:
        try:
            body = codec.parse_json(record.value) if record.value else {}
        except Exception:
            body = {}
        return alert_view(
            h["ce_id"],
            body if isinstance(body, dict) else {},
            h.get("ce_type", ""),
            record.timestamp,
        )

    async def _assign(self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient) -> bool:
        """Every partition of the observed topics (waiting until the flow topics exist; the
        dead-letter topics of other declared topics when they exist), positioned."""
        names = [self.kafka.topic(t) for t in OBSERVED_TOPICS]
        while not self._stopping.is_set():
            try:
                partitions = await partitions_of(self.kafka, names)
                break
            except (LookupError, KafkaError) as exc:
                log.warning("observed topics missing, waiting", error=str(exc))
                await self._pause(2.0)
        else:
            return False
        own = {FLOWS_ALERTS, FLOWS_STATE}
        others = [
            dead_letter_topic(t.name)
            for t in TOPICS
            if t.name not in own and dead_letter_topic(t.name) not in DEAD_LETTER_TOPICS
        ]
        for topic in others:  # a topic some step consumes has dead letters: list them too
            try:
                partitions += await partitions_of(self.kafka, [self.kafka.topic(topic)])
            except LookupError:
                continue
            self.letter_topics.append(topic)
        side = []
        for topic in SIDE_TOPICS:  # absent on an older deployment: the view shows less
            try:
                side += await partitions_of(self.kafka, [self.kafka.topic(topic)])
            except LookupError:
                log.warning("topic missing, not followed", topic=topic)
        partitions += side
        consumer.assign(partitions)
        for tp in side:
            await consumer.seek_to_beginning(tp)
        consumed = {self.kafka.topic(t): t for t in STAGE_BY_INPUT}
        dead = {self.kafka.topic(t) for t in self.letter_topics}
        self._consumed = [tp for tp in partitions if tp.topic in consumed]
        theirs = await self._group_offsets(admin)
        for tp in partitions:
            if tp.topic in dead:
                await consumer.seek_to_beginning(tp)  # every letter, for the view
                continue
            if tp.topic not in consumed:
                continue
            committed = await consumer.committed(tp)
            other = theirs.get(tp)
            if committed is not None and other is not None and other < committed:
                consumer.seek(tp, other)  # the records their consumer still has to take
        return True

    async def _group_offsets(self, admin: AIOKafkaAdminClient) -> dict[TopicPartition, int]:
        """Committed offsets of each consumed topic's consuming group (the stage's service)."""
        out: dict[TopicPartition, int] = {}
        for topic, stage in STAGE_BY_INPUT.items():
            full = self.kafka.topic(topic)
            wanted = [tp for tp in self._consumed if tp.topic == full]
            if not wanted:
                continue
            try:
                offsets = await admin.list_consumer_group_offsets(
                    self.kafka.topic(stage.service), partitions=wanted
                )
            except KafkaError as exc:
                log.warning("committed offsets unreadable", group=stage.service, error=repr(exc))
                continue
            for tp, meta in offsets.items():
                if meta is not None and meta.offset is not None and meta.offset >= 0:
                    out[tp] = meta.offset
        return out

    # -- the round ---------------------------------------------------------------------------

    def _observe(self, record: ConsumerRecord) -> None:
        topic = record.topic.removeprefix(self.kafka.topic_prefix)
        if topic in SIDE_TOPICS:
            self._side(topic, record)
            return
        try:
            headers = codec.header_map(record.headers)
            source = headers.get("ce_source") or "?"
            ts = record.timestamp if record.timestamp is not None else self.now_ms()
            self.traffic.record(topic, record.partition, record.offset, ts, source)
            if topic in self.letter_topics:  # for the list: replay reads the letter again
                letter = replace(Letter.of(record, self.kafka.topic_prefix), value=None)
                self.letters[letter.ref] = letter
            if replay_of := headers.get(REPLAY_HEADER):
                self.replayed.add(replay_of)
            hop = hop_of(topic, record.partition, record.offset, ts, headers)
            if hop is not None:
                self._pending += self.model.observe(hop)
        except Exception:  # no record may stop the monitor
            log.exception("record ignored", topic=topic, offset=record.offset)

    def _side(self, topic: str, record: ConsumerRecord) -> None:
        """A pause/resume command or a retraction; an unreadable one is logged and skipped."""
        if record.value is None:
            return
        try:
            if topic == CONTROL:
                command = codec.decode(record.key, record.value, record.headers, _CONTROL).data
                self.controls[command.step] = command
                return
            retracted = codec.decode(record.key, record.value, record.headers, _RETRACTION).data
        except Exception as exc:  # no record may stop the monitor
            log.warning("record ignored", topic=topic, offset=record.offset, error=str(exc))
            return
        at_ms = record.timestamp if record.timestamp is not None else self.now_ms()
        self.model.retract(
            retracted.segment_id,
            FlowRetraction(
                reason=retracted.reason,
                requested_by=retracted.requested_by,
                source_file=retracted.source_file,
                at_ms=at_ms,
            ),
        )

    def paused(self) -> dict[str, StepControl]:
        """The steps whose last command is ``paused``."""
        return {step: c for step, c in self.controls.items() if c.state == "paused"}

    async def _poll_offsets(self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient) -> None:
        now_ms = self.now_ms()
        try:
            ends = await consumer.end_offsets(self._consumed) if self._consumed else {}
            positions = {tp: await consumer.position(tp) for tp in self._consumed}
        except KafkaError as exc:
            log.warning("end offsets unreadable", error=repr(exc))
            return
        theirs = await self._group_offsets(admin)
        for topic in STAGE_BY_INPUT:
            full = self.kafka.topic(topic)
            committed = {tp.partition: o for tp, o in theirs.items() if tp.topic == full}
            self.traffic.offsets(
                topic,
                committed,
                {tp.partition: o for tp, o in ends.items() if tp.topic == full},
                {tp.partition: o for tp, o in positions.items() if tp.topic == full},
                now_ms,
            )
            for partition, offset in committed.items():
                self._pending += self.model.consumer_committed(topic, partition, offset, now_ms)
        self.offsets_read_ms = now_ms

    async def _flush(self, publisher: Publisher, consumer: AIOKafkaConsumer) -> None:
        """Alerts, then the changed flows' snapshots, acknowledged; then the input offsets."""
        snaps, removed = self.model.take_dirty()
        for snap in snaps:
            self._unsaved[snap.segment_id] = snap
        for segment in removed:
            self._unsaved[segment] = None
        if not (self._pending or self._unsaved or self._uncommitted):
            return
        try:
            if self._verify_alerts:  # a failed flush may have sent some: send none twice
                async with TopicReader(self.kafka, [FLOWS_ALERTS]) as reader:
                    sent = {
                        codec.header_map(r.headers).get("ce_id") for r in await reader.snapshot()
                    }
                self._pending = [a for a in self._pending if a.id not in sent]
                self._verify_alerts = False
            alerts = list(self._pending)
            futures = [await publisher.send(FLOWS_ALERTS, alert_envelope(a)) for a in alerts]
            for segment, snap in self._unsaved.items():
                if snap is None:
                    futures.append(
                        await publisher.send_raw(FLOWS_STATE, segment.encode(), None, [])
                    )
                    continue
                envelope = Envelope(
                    id=str(uuid.uuid4()),
                    source=SERVICE,
                    data=snap,
                    correlation_id=snap.correlation_id,
                    subject=segment,
                    key=segment,
                )
                key, value, headers = codec.encode(envelope)
                futures.append(await publisher.send_raw(FLOWS_STATE, key, value, headers))
            await asyncio.gather(*futures)
            if self._uncommitted:
                await consumer.commit(dict(self._uncommitted))
        except (KafkaError, LookupError) as exc:  # nothing counts as done: all of it goes again
            log.warning("flush failed, retrying", error=repr(exc))
            self._verify_alerts = True
            await self._pause(1.0)
            return
        for a in alerts:
            self.recent.append(
                alert_view(a.id, a.body.model_dump(mode="json"), a.body.ce_type, a.at_ms)
            )
            log.info("alert", kind=a.kind, segment_id=a.segment_id, alert_id=a.id)
        self._pending = self._pending[len(alerts) :]
        self._unsaved.clear()
        self._uncommitted.clear()
