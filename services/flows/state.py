"""The flow monitor's model, with no Kafka in it: each segment's flow, stuck detection, alerts.

Fed with hops (``lisa_pipeline.flowmodel.hop_of``: one record = one stage reached, or one dead
letter) and with the consumers' committed offsets, it keeps per segment the stages reached (record
timestamps, the service that produced each), the dead letter that ended the flow, and the stuck
alert outstanding. Time comes in as arguments (ms since the epoch), so tests drive it with an
injected clock and never sleep.

**Stuck.** A segment whose last stage is k waits on a record of stage k's output topic for the
service of stage k+1. It is stuck when that wait exceeds the stage's deadline AND the service took
nothing from that partition for as long: the clock starts at the later of the record's timestamp
and the partition's last progress (an output or dead letter of a segment that waited there, or
the consumer's committed offset moving). A backlog that drains, however long, is not stuck; a
stopped service is, for every segment it has yet to take. Progress is not persisted: after a
restart every partition counts as having progressed at the restart, so no segment is reported
stuck for less than a deadline of the monitor's own uptime.

**The last stage.** The catalogue publishes sources, not segments, so a segment is catalogued when
the catalogue's group commits past its estimates record (``via="commit"``), or when a catalogue
record names it as its correlation root, whichever the monitor sees first.

**Alerts, once.** Every alert id is derived from what it is about (``derive_event_id``): stuck from
the waiting record's place, dead-lettered from the letter's place, recovered from the stuck
alert's id. A flow keeps the ids raised for it (persisted in its snapshot) and the model keeps
every id it knows of (``emitted``, also filled from the alerts topic at start), and raises no id
twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from choreo.events import derive_event_id
from lisa_pipeline.events import (
    Event,
    FlowDeadLettered,
    FlowDeath,
    FlowMark,
    FlowRecovered,
    FlowRetraction,
    FlowSnapshot,
    FlowStuck,
    FlowStuckMark,
    FlowWait,
)
from lisa_pipeline.flowmodel import FINAL, INDEX, LABELS, STAGE_BY_INPUT, Hop
from lisa_pipeline.stages import STAGES, Stage

SERVICE = "flows"
FIRST_LABEL = STAGES[0].reached
DeadlineFor = Callable[[Stage], float]
"""Seconds a segment may wait to reach ``stage`` (the next one)."""


def iso(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True)
class Alert:
    """One CloudEvent to raise on ``lisa.flows.alerts``."""

    id: str
    segment_id: str
    correlation_id: str
    causation_id: str | None
    body: Event
    at_ms: int

    @property
    def kind(self) -> str:
        return self.body.ce_type.split(".")[2]  # lisa.flow.<kind>.v1


@dataclass
class Flow:
    """One segment's flow, as the records show it."""

    segment_id: str
    correlation_id: str
    marks: dict[str, FlowMark] = field(default_factory=dict)
    death: FlowDeath | None = None
    stuck: FlowStuckMark | None = None
    resumed: FlowWait | None = None
    alerts: list[str] = field(default_factory=list)
    replays: list[str] = field(default_factory=list)
    updated_ms: int = 0
    retraction: FlowRetraction | None = None

    @property
    def furthest(self) -> Stage | None:
        """The last stage reached (None: none seen yet)."""
        if not self.marks:
            return None
        return STAGES[max(INDEX[label] for label in self.marks)]

    @property
    def next_stage(self) -> Stage | None:
        furthest = self.furthest
        if furthest is None:
            return None
        i = INDEX[furthest.reached] + 1
        return STAGES[i] if i < len(STAGES) else None

    @property
    def catalogued(self) -> bool:
        return FINAL.reached in self.marks

    @property
    def finished(self) -> bool:
        """Dead-lettered, catalogued, or retracted before it was ever seen (nothing to wait
        for; if its records come later, it moves again like any flow)."""
        return (
            self.death is not None
            or self.catalogued
            or (self.retraction is not None and not self.marks)
        )

    @property
    def status(self) -> str:
        """Where the flow is; ``retracted`` once a retracted flow has stopped moving (a
        retracted segment still in flight keeps its moving status, flagged ``retraction``)."""
        if self.retraction is not None and self.finished:
            return "retracted"
        if self.death is not None:
            return "dead-lettered"
        if self.catalogued:
            return "catalogued"
        return "stuck" if self.stuck is not None else "waiting"

    @property
    def trace_id(self) -> str | None:
        for label in LABELS:
            mark = self.marks.get(label)
            if mark is not None and mark.trace_id:
                return mark.trace_id
        return self.death.trace_id if self.death is not None else None

    def waiting(self) -> FlowWait | None:
        """The record the next stage's service has yet to take (None: the flow ended)."""
        if self.finished or self.next_stage is None:
            return None
        if self.resumed is not None:
            return self.resumed
        mark = self.marks[self.furthest.reached]  # type: ignore[union-attr]
        return FlowWait(
            topic=mark.topic, partition=mark.partition, offset=mark.offset, since_ms=mark.at_ms
        )

    def snapshot(self) -> FlowSnapshot:
        return FlowSnapshot(
            segment_id=self.segment_id,
            correlation_id=self.correlation_id,
            marks=[self.marks[label] for label in LABELS if label in self.marks],
            death=self.death,
            stuck=self.stuck,
            resumed=self.resumed,
            alerts=list(self.alerts),
            replays=list(self.replays),
            updated_ms=self.updated_ms,
            retraction=self.retraction,
        )

    @classmethod
    def of(cls, snap: FlowSnapshot) -> Flow:
        return cls(
            segment_id=snap.segment_id,
            correlation_id=snap.correlation_id,
            marks={m.stage: m for m in snap.marks if m.stage in INDEX},
            death=snap.death,
            stuck=snap.stuck,
            resumed=snap.resumed,
            alerts=list(snap.alerts),
            replays=list(snap.replays),
            updated_ms=snap.updated_ms,
            retraction=snap.retraction,
        )


class FlowModel:
    """Every flow the monitor follows, and what has to be raised and persisted."""

    def __init__(self, deadline: DeadlineFor, started_ms: int) -> None:
        self.deadline = deadline
        self.started_ms = started_ms
        self.flows: dict[str, Flow] = {}
        self.by_correlation: dict[str, str] = {}
        self.progress: dict[tuple[str, int], int] = {}
        """(input topic, partition) -> when its consumer last took something from it (ms)."""
        self.committed: dict[tuple[str, int], int] = {}
        self.emitted: set[str] = set()
        self._open: set[str] = set()
        self._dirty: set[str] = set()
        self._removed: set[str] = set()

    # -- restart ----------------------------------------------------------------------------

    def load(self, snapshots: Iterable[FlowSnapshot], emitted: Iterable[str] = ()) -> None:
        """The state as persisted (the compacted topic's last value per segment), and the ids
        already on the alerts topic."""
        for snap in snapshots:
            flow = Flow.of(snap)
            self.flows[flow.segment_id] = flow
            if flow.correlation_id:
                self.by_correlation[flow.correlation_id] = flow.segment_id
            self.emitted.update(flow.alerts)
            self._track(flow)
        self.emitted.update(emitted)

    # -- input -------------------------------------------------------------------------------

    def observe(self, hop: Hop) -> list[Alert]:
        """One record of a flow; returns the alerts it raises at once (dead-lettered,
        recovered)."""
        segment = hop.segment_hint or self.by_correlation.get(hop.correlation_id)
        if not segment:
            return []  # a catalogue record of a flow never seen, or a letter with no subject
        flow = self.flows.get(segment)
        if flow is None:
            flow = self.flows[segment] = Flow(segment, hop.correlation_id)
        elif not flow.correlation_id:  # known from its retraction only
            flow.correlation_id = hop.correlation_id
        if hop.kind == "dead":
            return self._dead(flow, hop)
        if hop.stage is STAGES[0] and hop.correlation_id != flow.correlation_id:
            if FIRST_LABEL in flow.marks and hop.event_id != flow.marks[FIRST_LABEL].event_id:
                # the segment published again under a new root (a forced re-ingest): a new run
                flow = self.flows[segment] = Flow(
                    segment,
                    hop.correlation_id,
                    alerts=flow.alerts,
                    replays=flow.replays,
                    retraction=flow.retraction,
                )
            else:
                flow.correlation_id = hop.correlation_id
        if hop.segment_hint:
            self.by_correlation[flow.correlation_id] = segment
        mark = FlowMark(
            stage=hop.stage.reached,
            at_ms=hop.time_ms,
            service=hop.service,
            topic=hop.topic,
            partition=hop.partition,
            offset=hop.offset,
            event_id=hop.event_id,
            trace_id=hop.trace_id,
        )
        return self._reach(flow, mark, replay_of=hop.replay_of)

    def retract(self, segment: str, retraction: FlowRetraction) -> bool:
        """A segment's retraction (idempotent: the first one seen is kept); a flow not seen
        yet is created, so that its records, if they come, show as retracted. True if new."""
        flow = self.flows.get(segment)
        if flow is None:
            flow = self.flows[segment] = Flow(segment, "")
        if flow.retraction is not None:
            return False
        flow.retraction = retraction
        self._touch(flow, retraction.at_ms)
        return True

    def consumer_committed(self, topic: str, partition: int, offset: int, now_ms: int) -> list:
        """The committed offset of the group consuming ``topic`` (the stage's service), as read
        now: progress on that partition, and the last stage reached by commit."""
        key = (topic, partition)
        before = self.committed.get(key)
        self.committed[key] = offset
        moved = before is not None and offset > before
        if moved:
            self.progress[key] = max(self.progress.get(key, 0), now_ms)
        stage = STAGE_BY_INPUT.get(topic)
        if stage is not FINAL:
            return []
        alerts: list[Alert] = []
        for segment in list(self._open):
            flow = self.flows[segment]
            wait = flow.waiting()
            if wait is None or flow.next_stage is not FINAL:
                continue
            if (wait.topic, wait.partition) != key or wait.offset >= offset:
                continue
            # seen moving: now; taken before the monitor looked: no later than its input
            at = now_ms if moved and before is not None and wait.offset >= before else wait.since_ms
            mark = FlowMark(
                stage=FINAL.reached,
                at_ms=at,
                service=FINAL.service,
                topic=topic,
                partition=partition,
                offset=wait.offset,
                via="commit",
            )
            alerts += self._reach(flow, mark)
        return alerts

    def check(self, now_ms: int) -> list[Alert]:
        """Stuck detection at ``now_ms``: a stuck alert for every flow that just overran its
        deadline (see the module)."""
        alerts: list[Alert] = []
        for segment in sorted(self._open):
            flow = self.flows[segment]
            wait, nxt = flow.waiting(), flow.next_stage
            if flow.stuck is not None or wait is None or nxt is None:
                continue
            deadline_s = self.deadline(nxt)
            clock = max(wait.since_ms, self.progress.get((wait.topic, wait.partition), 0))
            clock = max(clock, self.started_ms)
            if now_ms - clock <= deadline_s * 1000:
                continue
            alert_id = derive_event_id(
                flow.correlation_id, SERVICE, f"stuck/{wait.topic}/{wait.partition}/{wait.offset}"
            )
            flow.stuck = FlowStuckMark(
                stage=nxt.reached,
                service=nxt.service,
                topic=wait.topic,
                partition=wait.partition,
                offset=wait.offset,
                since_ms=wait.since_ms,
                detected_ms=now_ms,
                alert_id=alert_id,
            )
            body = FlowStuck(
                segment_id=segment,
                stage=nxt.reached,
                service=nxt.service,
                reached=flow.furthest.reached,  # type: ignore[union-attr]
                topic=wait.topic,
                partition=wait.partition,
                offset=wait.offset,
                since=iso(wait.since_ms),
                waited_s=max(0.0, (now_ms - wait.since_ms) / 1000),
                deadline_s=deadline_s,
                trace_id=flow.trace_id,
            )
            cause = flow.marks[flow.furthest.reached].event_id or None  # type: ignore[union-attr]
            alerts += self._raise(
                flow, Alert(alert_id, segment, flow.correlation_id, cause, body, now_ms)
            )
        return alerts

    def prune(self, now_ms: int, retain_ms: int) -> None:
        """Forget flows that ended more than ``retain_ms`` ago (a tombstone on the state)."""
        for segment, flow in list(self.flows.items()):
            if flow.finished and now_ms - flow.updated_ms > retain_ms:
                del self.flows[segment]
                self.by_correlation.pop(flow.correlation_id, None)
                self._open.discard(segment)
                self._dirty.discard(segment)
                self._removed.add(segment)

    # -- output ------------------------------------------------------------------------------

    def take_dirty(self) -> tuple[list[FlowSnapshot], list[str]]:
        """Snapshots of the flows changed since the last call, and the segments forgotten."""
        snaps = [self.flows[s].snapshot() for s in sorted(self._dirty) if s in self.flows]
        removed = sorted(self._removed)
        self._dirty.clear()
        self._removed.clear()
        return snaps, removed

    # -- internals ---------------------------------------------------------------------------

    def _raise(self, flow: Flow, alert: Alert) -> list[Alert]:
        """Mark the alert on the flow; it is to be sent only if no one sent its id before."""
        if alert.id not in flow.alerts:
            flow.alerts.append(alert.id)
        self._touch(flow, alert.at_ms)
        if alert.id in self.emitted:
            return []
        self.emitted.add(alert.id)
        return [alert]

    def _touch(self, flow: Flow, at_ms: int) -> None:
        flow.updated_ms = max(flow.updated_ms, at_ms)
        self._dirty.add(flow.segment_id)
        self._track(flow)

    def _track(self, flow: Flow) -> None:
        if flow.finished:
            self._open.discard(flow.segment_id)
        else:
            self._open.add(flow.segment_id)

    def _reach(self, flow: Flow, mark: FlowMark, replay_of: str | None = None) -> list[Alert]:
        alerts: list[Alert] = []
        before = flow.furthest
        wait = flow.waiting()
        known = flow.marks.get(mark.stage)
        if known is not None:
            if replay_of is not None and replay_of not in flow.replays:
                # a dead letter replayed to this stage's output: the next service has it again
                flow.replays.append(replay_of)
                if before is not None and before.reached == mark.stage:
                    flow.death = None
                    flow.resumed = FlowWait(
                        topic=mark.topic,
                        partition=mark.partition,
                        offset=mark.offset,
                        since_ms=mark.at_ms,
                    )
                self._touch(flow, mark.at_ms)
            elif known.via == "commit" and mark.via == "record" and mark.at_ms < known.at_ms:
                flow.marks[mark.stage] = mark  # the record is the exact time
                self._touch(flow, mark.at_ms)
            return alerts  # a duplicate (redelivery) or a stage already seen
        flow.marks[mark.stage] = mark
        after = flow.furthest
        advanced = before is None or INDEX[after.reached] > INDEX[before.reached]  # type: ignore[union-attr]
        if advanced and before is not None:
            if wait is not None:
                key = (wait.topic, wait.partition)
                self.progress[key] = max(self.progress.get(key, 0), mark.at_ms)
            flow.resumed = None
            if flow.death is not None and INDEX[flow.death.stage] <= INDEX[mark.stage]:
                flow.death = None  # a replayed letter went through
            if flow.stuck is not None:
                stuck = flow.stuck
                flow.stuck = None
                body = FlowRecovered(
                    segment_id=flow.segment_id,
                    stage=mark.stage,
                    service=mark.service,
                    stuck_alert_id=stuck.alert_id,
                    stuck_for_s=max(0.0, (mark.at_ms - stuck.since_ms) / 1000),
                    at=iso(mark.at_ms),
                )
                alert_id = derive_event_id(stuck.alert_id, SERVICE, "recovered")
                alerts += self._raise(
                    flow,
                    Alert(
                        alert_id,
                        flow.segment_id,
                        flow.correlation_id,
                        stuck.alert_id,
                        body,
                        mark.at_ms,
                    ),
                )
        self._touch(flow, mark.at_ms)
        return alerts

    def _dead(self, flow: Flow, hop: Hop) -> list[Alert]:
        label = hop.stage.reached
        if hop.ref in flow.replays or label in flow.marks:
            return []  # replayed since, or a copy that died while another got through
        if flow.death is not None and flow.death.ref == hop.ref:
            return []
        if hop.origin_partition is not None and hop.stage.consumes is not None:
            key = (hop.stage.consumes, hop.origin_partition)
            self.progress[key] = max(self.progress.get(key, 0), hop.time_ms)
        flow.death = FlowDeath(
            stage=label,
            service=hop.service,
            reason=hop.reason,
            error=hop.error[:500],
            ref=hop.ref,
            at_ms=hop.time_ms,
            trace_id=hop.trace_id,
        )
        flow.resumed = None
        flow.stuck = None  # the letter answers it: the flow ended, with a reason
        body = FlowDeadLettered(
            segment_id=flow.segment_id,
            stage=label,
            service=hop.service,
            reason=hop.reason,
            error=hop.error[:500],
            dead_letter=hop.ref,
            at=iso(hop.time_ms),
            trace_id=hop.trace_id,
        )
        alert_id = derive_event_id(flow.correlation_id, SERVICE, f"deadlettered/{hop.ref}")
        alert = Alert(
            alert_id, flow.segment_id, flow.correlation_id, hop.event_id, body, hop.time_ms
        )
        return self._raise(flow, alert)


# -- views (the web page's JSON) --------------------------------------------------------------


def summary(flow: Flow, now_ms: int) -> dict[str, Any]:
    """One flow in a line: where it is, what it waits for, since when."""
    wait, nxt = flow.waiting(), flow.next_stage
    out: dict[str, Any] = {
        "segment_id": flow.segment_id,
        "status": flow.status,
        "reached": flow.furthest.reached if flow.furthest else None,
        "next": nxt.reached if nxt and not flow.finished else None,
        "waiting_for": nxt.service if nxt and not flow.finished else None,
        "trace_id": flow.trace_id,
        "alerts": len(flow.alerts),
        "updated": iso(flow.updated_ms).isoformat() if flow.updated_ms else None,
    }
    if wait is not None:
        out["waiting"] = {
            "topic": wait.topic,
            "partition": wait.partition,
            "offset": wait.offset,
            "since": iso(wait.since_ms).isoformat(),
            "waited_s": round(max(0, now_ms - wait.since_ms) / 1000, 3),
        }
    if flow.stuck is not None:
        out["stuck"] = {
            "stage": flow.stuck.stage,
            "service": flow.stuck.service,
            "since": iso(flow.stuck.since_ms).isoformat(),
            "detected": iso(flow.stuck.detected_ms).isoformat(),
            "alert_id": flow.stuck.alert_id,
        }
    if flow.retraction is not None:
        out["retraction"] = {
            "reason": flow.retraction.reason,
            "requested_by": flow.retraction.requested_by,
            "source_file": flow.retraction.source_file,
            "at": iso(flow.retraction.at_ms).isoformat(),
        }
    if flow.death is not None:
        out["death"] = {
            "stage": flow.death.stage,
            "service": flow.death.service,
            "reason": flow.death.reason,
            "error": flow.death.error,
            "ref": flow.death.ref,
            "at": iso(flow.death.at_ms).isoformat(),
        }
    return out


def counts(model: FlowModel) -> dict[str, Any]:
    """Per stage: segments that reached it, that are there now (waiting for the next service),
    stuck there, and dead-lettered on their way to it."""
    stages = {label: {"reached": 0, "at": 0, "stuck": 0, "dead": 0} for label in LABELS}
    for flow in model.flows.values():
        for label in flow.marks:
            stages[label]["reached"] += 1
        if flow.death is not None:
            stages[flow.death.stage]["dead"] += 1
        elif not flow.finished and flow.furthest is not None:
            stages[flow.furthest.reached]["at"] += 1
            if flow.stuck is not None:
                stages[flow.furthest.reached]["stuck"] += 1
    total = {
        "segments": len(model.flows),
        "catalogued": sum(f.catalogued and f.death is None for f in model.flows.values()),
        "dead": sum(f.death is not None for f in model.flows.values()),
        "stuck": sum(f.stuck is not None for f in model.flows.values()),
        "in_flight": sum(not f.finished for f in model.flows.values()),
        "retracted": sum(f.retraction is not None for f in model.flows.values()),
    }
    return {"stages": stages, "total": total}


def _outputs_by_service(flows: Iterable[Flow]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for flow in flows:
        for mark in flow.marks.values():
            if mark.via == "record":
                out.setdefault(mark.service, []).append(mark.at_ms)
        if flow.death is not None:
            out.setdefault(flow.death.service, []).append(flow.death.at_ms)
    for times in out.values():
        times.sort()
    return out


def timeline(
    flow: Flow,
    flows: Iterable[Flow],
    queue_waits: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """The flow stage by stage: when each was reached, by which service, the hop from the
    previous stage, and how much of the hop was a queue wait.

    ``queue_waits`` (service -> ms), when given, are the consumers' own measures from their spans
    (``lisa.queue_wait_ms``); otherwise the wait is estimated from record times: the service was
    busy until its previous output (of any segment) after this segment's input arrived."""
    busy = _outputs_by_service(flows) if queue_waits is None else {}
    rows: list[dict[str, Any]] = []
    previous: FlowMark | None = None
    for stage in STAGES:
        mark = flow.marks.get(stage.reached)
        if mark is None:
            if flow.death is not None and flow.death.stage == stage.reached:
                rows.append(
                    {
                        "stage": stage.reached,
                        "service": flow.death.service,
                        "status": "dead-lettered",
                        "at": iso(flow.death.at_ms).isoformat(),
                        "reason": flow.death.reason,
                        "error": flow.death.error,
                        "ref": flow.death.ref,
                        "hop_ms": flow.death.at_ms - previous.at_ms if previous else None,
                    }
                )
            break
        row: dict[str, Any] = {
            "stage": stage.reached,
            "service": mark.service,
            "status": "reached",
            "at": iso(mark.at_ms).isoformat(),
            "at_ms": mark.at_ms,
            "topic": mark.topic,
            "partition": mark.partition,
            "offset": mark.offset,
            "via": mark.via,
            "trace_id": mark.trace_id,
            "hop_ms": None,
            "queue_wait_ms": None,
            "wait_source": None,
        }
        if previous is not None:
            hop = max(0, mark.at_ms - previous.at_ms)
            row["hop_ms"] = hop
            if queue_waits is not None and stage.service in queue_waits:
                row["queue_wait_ms"] = round(min(float(queue_waits[stage.service]), hop), 1)
                row["wait_source"] = "span"
            elif mark.via == "record":
                times = busy.get(mark.service, [])
                before = [t for t in times if previous.at_ms < t < mark.at_ms]
                row["queue_wait_ms"] = max(before) - previous.at_ms if before else 0
                row["wait_source"] = "estimate"
        rows.append(row)
        previous = mark
    return rows
