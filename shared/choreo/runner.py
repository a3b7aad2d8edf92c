"""Runs a step on Kafka: topic -> decode -> handler -> encode -> topic, at least once, traced.

The loop, in one sitting:
1. ``getmany`` a batch (up to ``max_batch`` records across partitions);
2. for each record, ``choreo.processing.RecordProcessor`` (no Kafka in it): open
   ``process <topic>`` as a child of the producer's trace context, decode, call the handler, send
   its outputs inside that span (dead-letter it instead if it failed);
3. wait until the broker acknowledged every output of the batch (acks=all);
4. commit the batch's offsets. Then, and only then, the inputs count as done.

Commits are coalesced (``LISA_STEP_COMMIT_INTERVAL_MS``): a settled batch's offsets join those
not yet committed, and one commit carries them all once the interval has passed since the last
one, or when the step goes idle (a fetch returns nothing), hands partitions over, or stops. A
step fed one record at a time would otherwise send the broker a commit per input. Only offsets
whose outputs were acknowledged are ever committed, so at-least-once holds; a crash replays the
acknowledged but uncommitted inputs too, whose outputs carry the same deterministic ids.

Steps 3-4 (the batch's *settle*) run behind the next batch: while batch N's acknowledgements and
commit travel, batch N+1 is fetched, decoded, handled and sent; N+1's settle starts only once N's
has ended, so commits stay in order and at most one batch is unsettled while another is in hand.
An input arriving during a settle is thus handled at once instead of a whole cycle later (the hop
benchmark's p99). At-least-once is unchanged: an input is committed only after its outputs are
acknowledged. A settle that fails with a broker error rewinds every partition of every unsettled
batch to its first offset; a rebalance waits for the pending settle (its commit) before handing
partitions over; a stop settles it before the consumer leaves.

A crash between 3 and 4 redelivers the batch; outputs carry deterministic ids, so the repeats are
recognisable. SIGTERM/SIGINT stop fetching; the batch in hand finishes and is committed.

Pause and resume (``choreo.control``): given a ``ControlChannel``, the runner follows the control
topic without a consumer group and, between batches (the batch in hand finished and committed),
pauses every assigned partition while the latest command for its step says ``paused``: it keeps
its group membership (heartbeats go on, ``getmany`` returns nothing), stays live and ready, and
shows ``paused`` in its health details and the ``lisa.step.paused`` gauge. A command arriving
while ``getmany`` waits cuts the wait short, so a pause takes effect within one batch.

Group membership is static (KIP-345): each replica joins with a ``group.instance.id`` that
survives its restarts (``instance_id``), so a SIGKILLed replica started again takes its partitions
back at once, without a rebalance and without waiting out the session timeout. A static member's
normal close sends no LeaveGroup (KIP-345's semantics), so after the final commit the runner
removes itself explicitly (``leave_group``: LeaveGroup v3 naming its instance id) and the other
replicas take its partitions at their next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import re
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.errors import CommitFailedError, KafkaError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String
from opentelemetry import trace

from choreo import tracing
from choreo.control import ControlChannel, ControlReader, PartitionPause
from choreo.deadletter import DeadLetters
from choreo.health import Health
from choreo.logs import configure_logging
from choreo.metrics import StepMetrics, configure_metrics
from choreo.processing import RecordProcessor
from choreo.publisher import Publisher, default_client_id, make_producer
from choreo.retry import start_until_ready
from choreo.settings import KafkaSettings, StepSettings, home
from choreo.step import Step

log = structlog.get_logger(__name__)
_tracer = trace.get_tracer("choreo")
_claims: list[int] = []  # lock files of the instance ids this process holds, open until exit
_claimed: dict[str, str] = {}  # group -> the instance id this process claimed in it
_RUNNING, _LEFT = b"running\n", b"left\n"


def instance_id(step_name: str, group: str, settings: StepSettings) -> str | None:
    """This process's ``group.instance.id`` (None: dynamic membership).

    ``LISA_STEP_INSTANCE_ID`` as given, else ``<step>-<hostname>-<replica>`` with the replica index
    ``LISA_STEP_REPLICA`` or, unset, one claimed with a lock file per group and index under
    ``$LISA_CHOREO_HOME/instances``: two live replicas on one host never share an id (they would
    fence each other in turn). The kernel drops the lock of a killed process, whose file still
    says ``running`` (a clean stop writes ``left``, see ``mark_left``): a new process takes such
    an orphan first, i.e. the identity of a killed predecessor whose membership, and partitions,
    the broker still holds for it; else the lowest free index."""
    if not settings.static_membership:
        return None
    if settings.instance_id:
        return settings.instance_id
    base = f"{step_name}-{socket.gethostname()}"
    if settings.replica is not None:
        return f"{base}-{settings.replica}"
    if group in _claimed:
        return _claimed[group]
    folder = home() / "instances"
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", group)

    def claim(index: int, orphan_only: bool) -> bool:
        fd = os.open(folder / f"{safe}.{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if orphan_only and os.pread(fd, 64, 0) != _RUNNING:
            os.close(fd)  # releases the lock
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, _RUNNING, 0)
        _claims.append(fd)
        return True

    existing = sorted(
        int(m.group(1))
        for path in folder.glob(f"{safe}.*.lock")
        if (m := re.fullmatch(rf"{re.escape(safe)}\.(\d+)\.lock", path.name))
    )
    index = next((i for i in existing if claim(i, orphan_only=True)), None)
    if index is None:
        index = next(i for i in itertools.count() if claim(i, orphan_only=False))
    _claimed[group] = f"{base}-{index}"
    return _claimed[group]


def mark_left() -> None:
    """This process has left its group cleanly: its instance id is not an orphan to take over."""
    for fd in _claims:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, _LEFT, 0)


# LeaveGroup v3 (KIP-345): members named by member id and group.instance.id. aiokafka 0.14 has
# only v0-v1 (member id alone) and sends none for a static member, which is what KIP-345 wants
# of a member that is about to come back; one that stops for good must say so itself.
class _LeaveGroupResponse_v3(Response):
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        (
            "members",
            Array(
                ("member_id", String("utf-8")),
                ("group_instance_id", String("utf-8")),
                ("error_code", Int16),
            ),
        ),
    )


class _LeaveGroupRequest_v3(RequestStruct):
    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = _LeaveGroupResponse_v3
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


class StaticLeaveGroupRequest(Request[_LeaveGroupRequest_v3]):
    API_KEY = 13

    def __init__(self, group: str, members: list[tuple[str, str]]) -> None:
        self._group = group
        self._members = members

    def build(self, request_struct_class: type[_LeaveGroupRequest_v3]) -> _LeaveGroupRequest_v3:
        return request_struct_class(self._group, self._members)


async def leave_group(
    kafka: KafkaSettings, group: str, instance: str, member_id: str = "", timeout_s: float = 5.0
) -> bool:
    """Remove the static member ``instance`` from ``group`` now (the admin operation Kafka's Java
    client calls ``removeMembersFromConsumerGroup``), so that the others take its partitions at
    their next heartbeat instead of after the session timeout. Call it once the member's consumer
    is stopped (it commits nothing and heartbeats no more). ``member_id``, when known, makes the
    broker refuse (FENCED_INSTANCE_ID) if another process has taken the instance id since."""
    t0 = time.monotonic()
    client = AIOKafkaClient(
        **kafka.client_options(), client_id=f"{instance}-leave", request_timeout_ms=3000
    )
    try:
        async with asyncio.timeout(timeout_s):
            await client.bootstrap()
            node = await client.coordinator_lookup(CoordinationType.GROUP, group)
            response = await client.send(
                node, StaticLeaveGroupRequest(group, [(member_id, instance)])
            )
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning(
            "could not leave the group: its partitions move after the session timeout",
            group=group,
            instance_id=instance,
            error=repr(exc),
        )
        return False
    finally:
        await client.close()
    codes = [response.error_code] + [code for _, _, code in response.members]
    errors = [for_code(code).__name__ for code in codes if code]
    if errors:
        log.warning("leave group refused", group=group, instance_id=instance, errors=errors)
        return False
    log.info(
        "left the group",
        group=group,
        instance_id=instance,
        ms=round(1e3 * (time.monotonic() - t0), 1),
    )
    return True


def _generation(consumer: AIOKafkaConsumer | None) -> int | None:
    """The group generation the consumer joined (faust reads it from the same place); a static
    member that replaces its killed predecessor joins the same generation: no rebalance."""
    return getattr(getattr(consumer, "_coordinator", None), "generation", None)


class _CommitBeforeRevoke(ConsumerRebalanceListener):
    """Partitions are handed over only between batches, after their offsets are committed."""

    def __init__(
        self,
        lock: asyncio.Lock,
        generation: Callable[[], int | None],
        assigned: Callable[[], None] = lambda: None,
        settled: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._lock = lock
        self._generation = generation
        self._assigned = assigned
        self._settled = settled

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        async with self._lock:
            if self._settled is not None:  # the batch still settling commits before hand-over
                await self._settled()
            log.info("partitions revoked", partitions=sorted(str(tp) for tp in revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._assigned()  # a paused step pauses them before anything is fetched
        log.info(
            "partitions assigned",
            partitions=sorted(str(tp) for tp in assigned),
            generation=self._generation(),
        )


@dataclass
class _Settling:
    """A batch whose outputs were sent and whose acknowledgements and commit are under way."""

    task: asyncio.Task[None]
    first: dict[TopicPartition, int]
    """each partition's first offset in the batch: where a failed settle rewinds to."""
    records: int


class StepRunner:
    def __init__(
        self,
        step: Step,
        kafka: KafkaSettings | None = None,
        settings: StepSettings | None = None,
        health: Health | None = None,
        control: ControlChannel | None = None,
    ) -> None:
        self.step = step
        self.kafka = kafka or KafkaSettings()
        self.settings = settings or StepSettings()
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()
        self.processed = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._settling: _Settling | None = None
        self._uncommitted: dict[TopicPartition, int] = {}  # settled, not yet committed
        self._committed_at = time.monotonic()
        self.control = control
        self._control: ControlReader | None = None
        self._partitions_paused = PartitionPause()
        self.metrics = StepMetrics(step.name, self._lag, lambda: self._partitions_paused.paused)
        self.health = health or Health(step.name)
        if control is not None:
            self.health.set_paused(False)
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

    @property
    def paused(self) -> bool:
        """The step's actual state: its partitions are paused (not merely asked to be)."""
        return self._partitions_paused.paused

    def _apply_control(self, consumer: AIOKafkaConsumer) -> None:
        """Between batches: bring the consumer to the desired state of the control topic."""
        if self._control is None:
            return
        self._control.changed.clear()
        command = self._control.state.command(self.step.name)
        desired = command is not None and command.paused
        transition = self._partitions_paused.apply(consumer, desired)
        if transition is None:
            return
        reason = command.reason if command else ""
        by = command.requested_by if command else ""
        self.health.set_paused(desired, reason=reason, requested_by=by)
        log.info(
            "step paused" if desired else "step resumed",
            step=self.step.name,
            reason=reason,
            requested_by=by,
            partitions=len(consumer.assignment()),
            generation=_generation(consumer),
            processed=self.processed,
        )

    def _assigned(self, consumer: AIOKafkaConsumer) -> None:
        if self._partitions_paused.paused:
            self._partitions_paused.pause_assigned(consumer)

    def stop(self) -> None:
        """Stop fetching; the batch in hand is finished and committed first."""
        if not self._stopping.is_set():
            log.info("stop requested", step=self.step.name)
        self._stopping.set()

    async def run(self) -> None:
        client_id = self.settings.client_id or default_client_id(self.step.name)
        instance = instance_id(self.step.name, self.processor.group, self.settings)
        self.health.details["instance_id"] = instance

        def make_consumer() -> AIOKafkaConsumer:
            consumer = AIOKafkaConsumer(
                **self.kafka.client_options(),
                client_id=client_id,
                group_id=self.processor.group,
                group_instance_id=instance,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                session_timeout_ms=self.settings.session_timeout_ms,
                heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
                fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
                max_poll_interval_ms=self.settings.max_poll_interval_ms,
            )
            listener = _CommitBeforeRevoke(
                self._lock,
                lambda: _generation(consumer),
                lambda: self._assigned(consumer),
                self._await_settle,
            )
            consumer.subscribe(self.processor.topics, listener=listener)
            return consumer

        def make_producer_() -> Any:
            return make_producer(self.kafka, client_id, self.settings.linger_ms)

        producer = await self._start_with_backoff(make_producer_)
        if producer is None:
            return
        consumer = await self._start_with_backoff(make_consumer)
        if consumer is None:
            await producer.stop()
            return
        self._consumer = consumer
        try:
            if self.control is not None:  # read the commands before fetching anything
                self._control = ControlReader(self.kafka, self.control, f"{client_id}-control")
                await self._control.start(stopping=self._stopping)
            log.info(
                "step started",
                step=self.step.name,
                topics=sorted(self.processor.topics),
                instance_id=instance,
                control=self._control.topic if self._control else None,
            )
            while not self._stopping.is_set():
                self._apply_control(consumer)
                batch = await self._fetch(consumer)
                self.health.beat()
                self.health.set_ready(
                    True, partitions=len(consumer.assignment()), generation=_generation(consumer)
                )
                if not batch:
                    if self._settling is not None or self._uncommitted:
                        async with self._lock:  # idle: end the pending settle, commit it now
                            ok = await self._settle_previous(consumer)
                            await self._flush_commits(consumer)
                        if not ok:
                            producer = await self._restart_producer(producer, make_producer_)
                            if producer is None:
                                return
                    continue
                if self.paused:  # fetched as the pause landed: hand it back untouched
                    for tp, records in batch.items():
                        if tp in consumer.assignment():
                            consumer.seek(tp, records[0].offset)
                    continue
                publisher = Publisher(producer, self.kafka)
                dead_letters = DeadLetters(publisher, self.step.name)
                async with self._lock:
                    try:
                        sent = await self._process_batch(batch, publisher, dead_letters)
                    except KafkaError as exc:
                        # A send failed: the previous batch settles (or rewinds with this one),
                        # then this one is fetched again once the cluster answers.
                        log.warning("broker error, replaying the batch", error=repr(exc))
                        if await self._settle_previous(consumer, also=batch):
                            self._rewind(consumer, _first_offsets(batch))
                        ok = False
                    else:
                        ok = await self._settle_previous(consumer, also=batch)
                        if ok:  # under the lock: a revocation waits for this batch's commit
                            self._settling = self._start_settle(
                                batch, sent, consumer, publisher, dead_letters
                            )
                            if not self.settings.settle_behind:
                                ok = await self._settle_previous(consumer)
                if not ok:
                    producer = await self._restart_producer(producer, make_producer_)
                    if producer is None:
                        return
        finally:
            if self._settling is not None or self._uncommitted:
                async with self._lock:  # the last batch is committed before leaving
                    await self._settle_previous(consumer)
                    await self._flush_commits(consumer)
            log.info("step stopping", step=self.step.name, processed=self.processed)
            self.health.set_ready(False)
            if self._control is not None:
                await self._control.stop()
            coordinator = getattr(consumer, "_coordinator", None)
            member_id = getattr(coordinator, "member_id", "") or ""  # reset by stop()
            await consumer.stop()  # the last batch is committed; no heartbeat from here on
            group = self.processor.group
            if instance is not None and await leave_group(self.kafka, group, instance, member_id):
                mark_left()  # else a successor may take the id, and the partitions, over
            if producer is not None:
                await producer.stop()

    async def _fetch(
        self, consumer: AIOKafkaConsumer
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """``getmany``, cut short by SIGTERM so that the hand-over does not wait out the poll,
        and by a control command so that a pause or resume takes effect at once. Cancelling it
        loses nothing: aiokafka drains records only after its last await."""
        fetch = asyncio.ensure_future(
            consumer.getmany(
                timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.max_batch
            )
        )
        wakers = [asyncio.ensure_future(self._stopping.wait())]
        if self._control is not None:
            wakers.append(asyncio.ensure_future(self._control.changed.wait()))
        try:
            await asyncio.wait({fetch, *wakers}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waker in wakers:
                waker.cancel()
        if not fetch.done():
            fetch.cancel()
            await asyncio.wait({fetch})
            return {}
        return fetch.result()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once on SIGTERM."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _start_with_backoff(self, make: Callable[[], Any]) -> Any:
        """Start a client, waiting for the cluster as long as it takes (or until SIGTERM)."""
        return await start_until_ready(
            make, self._stopping, self.settings.retry_backoff_s, self.settings.retry_backoff_max_s
        )

    async def _process_batch(
        self,
        batch: dict[TopicPartition, list[ConsumerRecord]],
        publisher: Publisher,
        dead_letters: DeadLetters,
    ) -> list[tuple[ConsumerRecord, list[asyncio.Future]]]:
        """Handle every record of the batch and queue its outputs (no waiting for the broker)."""
        sent: list[tuple[ConsumerRecord, list[asyncio.Future]]] = []
        for tp, records in batch.items():
            for record in records:
                sent.append((record, await self.processor.process(record, publisher, dead_letters)))
                self._positions[tp] = record.offset + 1
        return sent

    def _start_settle(
        self,
        batch: dict[TopicPartition, list[ConsumerRecord]],
        sent: list[tuple[ConsumerRecord, list[asyncio.Future]]],
        consumer: AIOKafkaConsumer,
        publisher: Publisher,
        dead_letters: DeadLetters,
    ) -> _Settling:
        """A task that waits for the batch's acknowledgements, then commits its offsets (with
        those of earlier settled batches, once the commit interval has passed)."""
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        interval_s = self.settings.commit_interval_ms / 1000

        async def settle() -> None:
            await self.processor.settle(sent, publisher, dead_letters)
            for tp, offset in offsets.items():  # acknowledged: may be committed from now on
                self._uncommitted[tp] = max(offset, self._uncommitted.get(tp, offset))
            if time.monotonic() - self._committed_at >= interval_s:
                await self._commit(consumer)

        return _Settling(
            asyncio.ensure_future(settle()),
            _first_offsets(batch),
            sum(len(r) for r in batch.values()),
        )

    async def _settle_previous(
        self,
        consumer: AIOKafkaConsumer,
        also: dict[TopicPartition, list[ConsumerRecord]] | None = None,
    ) -> bool:
        """Wait for the pending settle (call it holding the lock). False: it failed on a broker
        error, and every unsettled input (its batch and ``also``, the one in hand, whose outputs
        may be sent already) was rewound for a replay."""
        settling, self._settling = self._settling, None
        if settling is None:
            return True
        try:
            await settling.task
        except CommitFailedError as exc:
            # The group rebalanced under us: the partitions' new owner redoes the batch,
            # and our outputs' deterministic ids make the repeats recognisable.
            log.warning("commit failed after a rebalance", error=str(exc))
            self._uncommitted.clear()
            return True
        except KafkaError as exc:
            # Broker trouble: outputs may not be durable, inputs are not committed.
            # Rewind to the batch (and the one in hand) and try again once the cluster answers.
            log.warning("broker error, replaying the batch", error=repr(exc))
            first = dict(settling.first)
            for tp, offset in _first_offsets(also or {}).items():
                first[tp] = min(offset, first.get(tp, offset))
            self._rewind(consumer, first)
            return False
        self.processed += settling.records
        return True

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit every settled offset of a partition still assigned (raises as ``commit``)."""
        assigned = consumer.assignment()
        offsets = {tp: o for tp, o in self._uncommitted.items() if tp in assigned}
        if offsets:
            await consumer.commit(offsets)
        for tp, offset in offsets.items():
            if self._uncommitted.get(tp) == offset:  # nothing newer settled meanwhile
                del self._uncommitted[tp]
        for tp in [tp for tp in self._uncommitted if tp not in assigned]:
            del self._uncommitted[tp]  # not ours any more: its new owner replays from its commit
        self._committed_at = time.monotonic()

    async def _flush_commits(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what settled now (idle, hand-over, stop). A failure loses nothing: the
        outputs are acknowledged, and the inputs are replayed from the last commit."""
        if not self._uncommitted:
            return
        try:
            await self._commit(consumer)
        except CommitFailedError as exc:  # the partitions moved: their new owner replays
            log.warning("commit failed after a rebalance", error=str(exc))
            self._uncommitted.clear()
        except KafkaError as exc:  # kept: committed with the next settle or idle poll
            log.warning("commit failed, kept for the next one", error=repr(exc))

    async def _await_settle(self) -> None:
        """For the rebalance listener (which holds the lock): the pending settle ends first,
        then every settled offset is committed, before the partitions are handed over (or
        rewound for a replay by whoever owns them next)."""
        consumer = self._consumer
        if consumer is None:
            return
        if self._settling is not None:
            await self._settle_previous(consumer)
        await self._flush_commits(consumer)
        self._uncommitted.clear()  # what did not commit is replayed by the next owner

    def _rewind(self, consumer: AIOKafkaConsumer, first: dict[TopicPartition, int]) -> None:
        for tp, offset in first.items():
            if tp in consumer.assignment():
                consumer.seek(tp, offset)

    async def _restart_producer(self, producer: Any, make: Callable[[], Any]) -> Any:
        """After a broker error: a fresh producer once the cluster answers (None: stopping)."""
        await producer.stop()
        await self._pause(self.settings.retry_backoff_max_s)
        return await self._start_with_backoff(make)


def _first_offsets(batch: dict[TopicPartition, list[ConsumerRecord]]) -> dict[TopicPartition, int]:
    return {tp: records[0].offset for tp, records in batch.items() if records}


def run_step(step: Step, control: ControlChannel | None = None) -> int:
    """Process entry point: configure logs and tracing, run until SIGTERM/SIGINT, exit 0.
    ``control``: the deployment's control topic and command types; the step then pauses and
    resumes on command (``choreo.control``)."""
    configure_logging(step.name)
    provider = tracing.configure_tracing(step.name)
    meters = configure_metrics(step.name)
    runner = StepRunner(step, control=control)

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
