"""Pause and resume: the desired state of each step, read by every replica from a control topic.

The runtime knows no pipeline, so which topic carries the commands and which event types they
are comes in from above (``ControlChannel``): a command is any event with ``step`` (the step's
name, also its record key) and ``state`` (``paused`` or ``running``). The pipeline declares both
(``lisa_pipeline.topics.CONTROL``, ``lisa_pipeline.events.StepControl``) and each service's
``main()`` hands them to ``run_step``; the faust catalogue uses the same reader.

- ``ControlState`` (pure): the latest command per step name, from records (key, value, headers).
  A tombstone forgets a step (running). A record that does not decode, or whose key is not the
  step it names, is ignored with a warning: a control record is never an input, so it is never
  dead-lettered and never stops a step.
- ``ControlReader``: reads the whole topic WITHOUT a consumer group (every partition assigned,
  from the beginning), so every replica of every step sees every command, and keeps following
  it. At start it reads up to the end offsets before the step fetches anything, so a step paused
  before a restart comes back paused. A missing or unreadable topic (not created yet, no ACL)
  leaves the step running, and is tried again.
- ``PartitionPause``: applies a desired state to an aiokafka consumer. ``pause(*assignment)``
  stops fetching while the group membership stays (heartbeats run in the consumer's background
  task, and the loop keeps calling ``getmany``, which returns nothing); partitions assigned while
  paused are paused as they arrive; ``resume`` undoes it. aiokafka drops the records it had
  prefetched for a paused partition without moving its position, so nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from choreo import codec
from choreo.errors import DecodeError
from choreo.events import Event
from choreo.reader import partitions_of
from choreo.settings import KafkaSettings

log = structlog.get_logger(__name__)

PAUSED = "paused"
RUNNING = "running"
STATES = (PAUSED, RUNNING)


class StepCommand(Protocol):
    """What the runtime reads of a control event."""

    @property
    def step(self) -> str: ...

    @property
    def state(self) -> str: ...


@dataclass(frozen=True)
class ControlChannel:
    """Where a deployment's step commands travel: a topic (without the deployment prefix, keyed
    by step name, compacted) and the event types that may appear on it."""

    topic: str
    types: tuple[type[Event], ...]

    def __init__(self, topic: str, *types: type[Event]) -> None:
        if not types:
            raise ValueError("a control channel needs at least one event type")
        object.__setattr__(self, "topic", topic)
        object.__setattr__(self, "types", types)

    def decoders(self) -> dict[str, type[Event]]:
        return {t.ce_type: t for t in self.types}


@dataclass(frozen=True)
class Command:
    """The latest command for one step, and where it was read."""

    step: str
    state: str
    partition: int
    offset: int
    event_id: str = ""
    reason: str = ""
    requested_by: str = ""
    timestamp_ms: int | None = None

    @property
    def paused(self) -> bool:
        return self.state == PAUSED


@dataclass
class ControlState:
    """The latest command per step name (compaction's semantics: the last record of a key wins,
    a tombstone deletes it)."""

    decoders: Mapping[str, type[Event]]
    commands: dict[str, Command] = field(default_factory=dict)
    ignored: int = 0

    @classmethod
    def of(cls, channel: ControlChannel) -> ControlState:
        return cls(channel.decoders())

    def paused(self, step: str) -> bool:
        command = self.commands.get(step)
        return command is not None and command.paused

    def command(self, step: str) -> Command | None:
        return self.commands.get(step)

    def apply(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None,
        partition: int = 0,
        offset: int = 0,
        timestamp_ms: int | None = None,
    ) -> str | None:
        """Take one record into account; returns the step whose desired state changed, if any."""
        name = key.decode(errors="replace") if key is not None else None
        if value is None:  # a tombstone: the step's command is gone, it runs
            if name is None or name not in self.commands:
                return None
            before = self.commands.pop(name)
            return name if before.paused else None
        try:
            envelope = codec.decode(key, value, headers, self.decoders)
        except DecodeError as exc:
            self.ignored += 1
            log.warning(
                "control record ignored", reason=exc.reason, partition=partition, offset=offset
            )
            return None
        data: Any = envelope.data
        step, state = getattr(data, "step", None), getattr(data, "state", None)
        if not isinstance(step, str) or state not in STATES or (name is not None and name != step):
            self.ignored += 1
            log.warning(
                "control record ignored",
                reason="not-a-step-command" if name == step else "key-is-not-the-step",
                key=name,
                step=step,
                partition=partition,
                offset=offset,
            )
            return None
        before = self.commands.get(step)
        self.commands[step] = Command(
            step=step,
            state=state,
            partition=partition,
            offset=offset,
            event_id=envelope.id,
            reason=str(getattr(data, "reason", "") or ""),
            requested_by=str(getattr(data, "requested_by", "") or ""),
            timestamp_ms=timestamp_ms,
        )
        was_paused = before is not None and before.paused
        return step if was_paused != (state == PAUSED) else None


class ControlReader:
    """Follows a control topic without a consumer group; ``changed`` is set whenever the desired
    state of a step changes, ``caught_up`` once the topic was read to its end offsets as of the
    start (or found unreadable, in which case every step runs)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        channel: ControlChannel,
        client_id: str,
        retry_s: float = 2.0,
        retry_max_s: float = 60.0,
    ) -> None:
        self.kafka = kafka
        self.channel = channel
        self.client_id = client_id
        self.state = ControlState.of(channel)
        self.changed = asyncio.Event()
        self.caught_up = asyncio.Event()
        self._retry_s = retry_s
        self._retry_max_s = retry_max_s
        self._positions: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def topic(self) -> str:
        return self.kafka.topic(self.channel.topic)

    async def start(self, timeout_s: float = 30.0, stopping: asyncio.Event | None = None) -> bool:
        """Start following; wait until caught up (or ``timeout_s``, or ``stopping``). Returns
        whether the topic was read to its end in time."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        waiters = {asyncio.ensure_future(self.caught_up.wait())}
        if stopping is not None:
            waiters.add(asyncio.ensure_future(stopping.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if not self.caught_up.is_set():
            log.warning(
                "control topic not read to its end in time: running until a command arrives",
                topic=self.topic,
                timeout_s=timeout_s,
            )
        return self.caught_up.is_set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = self._retry_s
        warned = False
        while True:
            try:
                await self._follow()
                delay = self._retry_s
            except asyncio.CancelledError:
                raise
            except (KafkaError, LookupError, OSError) as exc:
                self.caught_up.set()  # nothing to wait for: the steps run
                if not warned:  # once: a deployment without the topic (or its ACL) is valid
                    log.warning(
                        "control topic unreadable (missing, or no READ on it): the step runs "
                        "and cannot be paused; trying again in the background",
                        topic=self.topic,
                        error=repr(exc),
                    )
                    warned = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max_s)

    async def _follow(self) -> None:
        partitions = await partitions_of(self.kafka, [self.topic])
        consumer = AIOKafkaConsumer(
            **self.kafka.client_options(),
            client_id=self.client_id,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=200,
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            fresh = [tp for tp in partitions if tp not in self._positions]
            if fresh:
                await consumer.seek_to_beginning(*fresh)
            for tp in partitions:  # after a reconnection: go on where we were, never back
                if tp in self._positions:
                    consumer.seek(tp, self._positions[tp])
            ends = await consumer.end_offsets(partitions)
            while True:
                if not self.caught_up.is_set():
                    positions = {tp: await consumer.position(tp) for tp in partitions}
                    if all(positions[tp] >= ends[tp] for tp in partitions):
                        self.caught_up.set()
                        log.info(
                            "control topic read",
                            topic=self.topic,
                            paused=sorted(s for s, c in self.state.commands.items() if c.paused),
                        )
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                if self.apply(batch):
                    self.changed.set()
        finally:
            await consumer.stop()

    def apply(self, batch: Mapping[TopicPartition, Iterable[Any]]) -> list[str]:
        """Records of a ``getmany`` into the state; the steps whose desired state changed."""
        changed = []
        for tp, records in batch.items():
            for r in records:
                step = self.state.apply(
                    r.key, r.value, r.headers, r.partition, r.offset, r.timestamp
                )
                self._positions[tp] = r.offset + 1
                if step is not None:
                    changed.append(step)
                    command = self.state.command(step)
                    log.info(
                        "step command",
                        step=step,
                        state=command.state if command else RUNNING,
                        reason=command.reason if command else "",
                        requested_by=command.requested_by if command else "",
                    )
        return changed


class PausableConsumer(Protocol):
    """What ``PartitionPause`` needs of a consumer (aiokafka's ``AIOKafkaConsumer``)."""

    def assignment(self) -> set[TopicPartition]: ...

    def paused(self) -> set[TopicPartition]: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...


class PartitionPause:
    """A step's actual state (paused or running) and its application to its consumer."""

    def __init__(self, clock: Any = time.time) -> None:
        self.paused = False
        self.since: float | None = None
        self._clock = clock

    def apply(self, consumer: PausableConsumer, desired_paused: bool) -> str | None:
        """Bring the consumer to the desired state; returns ``paused`` or ``resumed`` on a
        transition, else None. Called between batches only: the batch in hand was committed."""
        if desired_paused:
            self.pause_assigned(consumer)
            if not self.paused:
                self.paused, self.since = True, self._clock()
                return PAUSED
            return None
        if self.paused:
            held = consumer.paused()
            if held:
                consumer.resume(*held)
            self.paused, self.since = False, None
            return "resumed"
        return None

    def pause_assigned(self, consumer: PausableConsumer) -> None:
        """Pause every assigned partition not paused yet (after a rebalance, the new ones)."""
        missing = set(consumer.assignment()) - set(consumer.paused())
        if missing:
            consumer.pause(*sorted(missing))
