"""Pause and resume without a broker: the control records, the desired state per step, its
application to a consumer, the runner between batches, health and the paused gauge."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest
from aiokafka import TopicPartition
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from choreo import Consumes, Envelope, Produces, Step, codec
from choreo import metrics as choreo_metrics
from choreo.control import ControlChannel, ControlReader, ControlState, PartitionPause
from choreo.health import Health, HealthSettings
from choreo.runner import StepRunner
from choreo.settings import KafkaSettings, StepSettings
from lisa_pipeline.events import SegmentRetracted, StepControl
from lisa_pipeline.topics import CONTROL
from tests.toy.events import NUMBERS, SQUARES, Number, Square

CHANNEL = ControlChannel(CONTROL, StepControl)


@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int = 0
    offset: int = 0
    timestamp: int = 1_700_000_000_000


def command(step: str, state: str, key: str | None = None, reason: str = "", offset: int = 0):
    envelope = Envelope.root(
        StepControl(step=step, state=state, reason=reason, requested_by="ops@host"),
        source="lisa-choreo",
        subject=step,
        key=key if key is not None else step,
    )
    k, v, h = codec.encode(envelope)
    return Rec(k, v, h, offset=offset)


def feed(state: ControlState, *records: Rec) -> list[str | None]:
    return [state.apply(r.key, r.value, r.headers, r.partition, r.offset) for r in records]


def test_the_latest_command_per_step_wins_and_only_transitions_are_reported() -> None:
    state = ControlState.of(CHANNEL)
    assert not state.paused("condition")
    changes = feed(
        state,
        command("condition", "paused", reason="disk full", offset=0),
        command("condition", "paused", offset=1),  # the same state again: no change
        command("estimate", "running", offset=2),  # running is the default: no change
        command("gb-search", "paused", offset=3),
    )
    assert changes == ["condition", None, None, "gb-search"]
    assert state.paused("condition")
    assert state.paused("gb-search")
    assert not state.paused("estimate")
    assert not state.paused("catalog")
    assert state.command("condition").offset == 1  # the latest record
    assert state.command("condition").requested_by == "ops@host"
    assert feed(state, command("condition", "running", offset=4)) == ["condition"]
    assert not state.paused("condition")
    assert state.paused("gb-search")  # another step's command is untouched


def test_a_tombstone_forgets_the_step_which_then_runs() -> None:
    state = ControlState.of(CHANNEL)
    feed(state, command("condition", "paused"))
    assert state.apply(b"condition", None, [], 0, 5) == "condition"
    assert not state.paused("condition")
    assert state.command("condition") is None
    assert state.apply(b"condition", None, [], 0, 6) is None  # nothing to forget
    assert state.apply(None, None, [], 0, 7) is None


def test_records_that_are_no_step_command_are_ignored_never_fatal() -> None:
    state = ControlState.of(CHANNEL)
    good = command("condition", "paused")
    other_type = codec.encode(
        Envelope.root(SegmentRetracted(segment_id="s"), source="x", subject="condition")
    )
    assert feed(
        state,
        Rec(b"condition", b"{not json", good.headers),  # unreadable body
        Rec(b"condition", other_type[1], other_type[2]),  # a type the channel does not carry
        Rec(b"condition", good.value, []),  # no CloudEvent headers
        command("condition", "paused", key="estimate"),  # key and body disagree
    ) == [None, None, None, None]
    assert state.ignored == 4
    assert not state.paused("condition")
    assert not state.paused("estimate")
    assert feed(state, good) == ["condition"]


def test_the_reader_keeps_its_position_and_reports_the_steps_that_changed() -> None:
    reader = ControlReader(KafkaSettings(), CHANNEL, "test")  # no connection until start()
    tp = TopicPartition(CONTROL, 0)
    changed = reader.apply(
        {tp: [command("condition", "paused", offset=0), command("estimate", "paused", offset=1)]}
    )
    assert changed == ["condition", "estimate"]
    assert reader._positions[tp] == 2
    assert reader.apply({tp: [command("condition", "paused", offset=2)]}) == []
    assert reader.state.paused("condition")


@dataclass
class FakeConsumer:
    """What ``PartitionPause`` and the runner's control path use of an aiokafka consumer."""

    assigned: set[TopicPartition] = field(default_factory=set)
    held: set[TopicPartition] = field(default_factory=set)
    calls: list[tuple[str, tuple]] = field(default_factory=list)
    _coordinator: object = None

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def paused(self) -> set[TopicPartition]:
        return set(self.held)

    def pause(self, *partitions: TopicPartition) -> None:
        assert set(partitions) <= self.assigned, "aiokafka refuses to pause an unassigned one"
        self.calls.append(("pause", partitions))
        self.held |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.calls.append(("resume", partitions))
        self.held -= set(partitions)


def tps(*numbers: int) -> set[TopicPartition]:
    return {TopicPartition("in", n) for n in numbers}


def test_partition_pause_pauses_every_assigned_partition_and_new_ones_then_resumes() -> None:
    consumer = FakeConsumer(assigned=tps(0, 1, 2))
    pause = PartitionPause(clock=lambda: 100.0)
    assert pause.apply(consumer, False) is None  # running, nothing to do
    assert consumer.calls == []
    assert pause.apply(consumer, True) == "paused"
    assert consumer.held == tps(0, 1, 2)
    assert (pause.paused, pause.since) == (True, 100.0)
    assert pause.apply(consumer, True) is None  # still paused: no call for nothing
    assert len(consumer.calls) == 1
    consumer.assigned = tps(1, 2, 3, 4)  # a rebalance: 0 went away, 3 and 4 came
    consumer.held &= consumer.assigned
    pause.pause_assigned(consumer)
    assert consumer.held == tps(1, 2, 3, 4)
    assert pause.apply(consumer, False) == "resumed"
    assert consumer.held == set()
    assert (pause.paused, pause.since) == (False, None)


def _toy_step() -> Step:
    step = Step("toy-square", [Consumes(NUMBERS, Number)], [Produces(SQUARES, Square)])
    step.handler(lambda e: [])
    return step


def test_the_runner_pauses_between_batches_and_says_so_in_health() -> None:
    async def scenario() -> tuple[list, dict, dict, dict]:
        runner = StepRunner(
            _toy_step(),
            KafkaSettings(),
            StepSettings(),
            Health("toy-square", HealthSettings(port=None)),
            control=CHANNEL,
        )
        runner._control = ControlReader(runner.kafka, CHANNEL, "test")
        runner.health.set_ready(True, partitions=2)
        consumer = FakeConsumer(assigned=tps(0, 1))
        first = runner.health.snapshot()
        tp = TopicPartition(CONTROL, 0)
        runner._control.apply({tp: [command("toy-square", "paused", reason="maintenance")]})
        runner._apply_control(consumer)  # type: ignore[arg-type]
        paused = runner.health.snapshot()
        assert runner.paused
        assert consumer.held == tps(0, 1)
        runner._assigned(consumer)  # type: ignore[arg-type]  # no-op: all held already
        consumer.assigned |= tps(2)
        runner._assigned(consumer)  # type: ignore[arg-type]  # the listener, on a rebalance
        assert consumer.held == tps(0, 1, 2)
        runner._control.apply({tp: [command("other-step", "paused", offset=1)]})
        runner._apply_control(consumer)  # type: ignore[arg-type]
        assert runner.paused
        runner._control.apply({tp: [command("toy-square", "running", offset=2)]})
        runner._apply_control(consumer)  # type: ignore[arg-type]
        resumed = runner.health.snapshot()
        await runner._pause(0.01)  # the runner's own backoff sleep is still there, unshadowed
        return consumer.calls, first, paused, resumed

    calls, first, paused, resumed = asyncio.run(scenario())
    assert first["paused"] is False
    assert paused["paused"] is True
    assert paused["pause_reason"] == "maintenance"
    assert paused["paused_by"] == "ops@host"
    assert paused["paused_since"]
    assert (paused["ready"], paused["live"]) == (True, True)  # paused is neither dead nor unready
    assert resumed["paused"] is False
    assert "paused_since" not in resumed
    assert resumed["ready"] is True
    assert [c for c, _ in calls] == ["pause", "pause", "resume"]


def test_a_command_cuts_the_fetch_short_and_loses_nothing() -> None:
    class SlowConsumer(FakeConsumer):
        fetched = False

        async def getmany(self, timeout_ms: int, max_records: int) -> dict:
            await asyncio.sleep(timeout_ms / 1000)
            self.fetched = True
            return {TopicPartition("in", 0): ["record"]}

    async def scenario() -> tuple[dict, float, bool]:
        runner = StepRunner(
            _toy_step(),
            KafkaSettings(),
            StepSettings(poll_timeout_ms=5000),
            Health("toy-square", HealthSettings(port=None)),
            control=CHANNEL,
        )
        runner._control = ControlReader(runner.kafka, CHANNEL, "test")
        consumer = SlowConsumer()
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, runner._control.changed.set)
        t0 = time.monotonic()
        batch = await runner._fetch(consumer)  # type: ignore[arg-type]
        return batch, time.monotonic() - t0, consumer.fetched

    batch, elapsed, fetched = asyncio.run(scenario())
    assert batch == {}
    assert elapsed < 2.0
    assert not fetched  # cancelled before it drained anything


def test_the_paused_gauge(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(choreo_metrics.metrics, "get_meter", provider.get_meter)
    state = {"paused": False}
    choreo_metrics.observe_paused("condition", lambda: state["paused"])

    def value() -> int:
        data = reader.get_metrics_data()
        points = [
            p
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "lisa.step.paused"
            for p in m.data.data_points
        ]
        (point,) = points
        assert dict(point.attributes) == {"lisa.step": "condition"}
        return point.value

    assert value() == 0
    state["paused"] = True
    assert value() == 1
    provider.shutdown()


def test_a_channel_needs_a_type() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ControlChannel(CONTROL)
    assert CHANNEL.decoders() == {"lisa.control.step.v1": StepControl}
