"""What one record says about a segment's flow, and which records make up one flow.

Pure functions over a record's place and its headers (decoded as ``choreo.codec.header_map``
does), shared by the trace tool (``lisa_choreo.flows``, which rebuilds one flow from the topics)
and the flow monitor (``lisa_services.flows``, which follows every flow as it happens):

- a record on a stage's output topic marks that stage reached (``lisa_pipeline.stages``); its
  ``ce_subject`` is the segment id, except on the catalogue, whose records are keyed by source:
  those belong to the segment whose raw event is their ``ce_correlationid`` (the flow's root);
- a record on ``<input>.dlq`` says the stage consuming ``<input>`` gave up on the segment, with the
  reason in its ``dlq_*`` headers; the original headers (subject, lineage, trace) are untouched;
- ``traceparent`` carries the trace id; ``lisa_replay_of`` marks a replayed dead letter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from choreo.codec import CAUSATION, CORRELATION
from choreo.replay import REPLAY_HEADER
from choreo.topology import DLQ_SUFFIX, dead_letter_topic
from lisa_pipeline.stages import STAGES, Stage

STAGE_BY_OUTPUT: dict[str, Stage] = {s.produces: s for s in STAGES}
"""Output topic -> the stage a record on it marks reached."""
STAGE_BY_INPUT: dict[str, Stage] = {s.consumes: s for s in STAGES if s.consumes is not None}
"""Input topic -> the stage whose service consumes it."""
FIRST, FINAL = STAGES[0], STAGES[-1]
LABELS: tuple[str, ...] = tuple(s.reached for s in STAGES)
INDEX: dict[str, int] = {s.reached: i for i, s in enumerate(STAGES)}
DEAD_LETTER_TOPICS: tuple[str, ...] = tuple(dead_letter_topic(t) for t in STAGE_BY_INPUT)
OBSERVED_TOPICS: tuple[str, ...] = (*STAGE_BY_OUTPUT, *DEAD_LETTER_TOPICS)
"""Every topic a flow crosses: each stage's output and each consumed topic's dead letters."""


def trace_id_of(headers: Mapping[str, str]) -> str | None:
    """The W3C ``traceparent``'s trace id (32 hex digits), if the record carries one."""
    parts = headers.get("traceparent", "").split("-")
    return parts[1].lower() if len(parts) == 4 and len(parts[1]) == 32 else None


def service_of(headers: Mapping[str, str]) -> str:
    """Who produced the record (``ce_source``)."""
    return headers.get("ce_source") or "?"


@dataclass(frozen=True)
class Hop:
    """One record's place in a flow.

    ``kind`` is ``stage`` (``stage`` reached, by ``service``, the record's producer) or ``dead``
    (``service`` gave up on reaching ``stage``; ``reason`` and ``error`` say why, ``origin_*``
    where the input was). ``topic`` is without the deployment prefix.
    """

    kind: Literal["stage", "dead"]
    stage: Stage
    topic: str
    partition: int
    offset: int
    time_ms: int
    event_id: str
    correlation_id: str
    causation_id: str | None
    subject: str | None
    service: str
    trace_id: str | None
    reason: str = ""
    error: str = ""
    origin_partition: int | None = None
    origin_offset: int | None = None
    replay_of: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def segment_hint(self) -> str | None:
        """The segment id the record names itself; None on the catalogue (a source id there:
        the segment is found through the correlation id)."""
        if self.kind == "stage" and self.stage is FINAL:
            return None
        return self.subject


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def hop_of(
    topic: str, partition: int, offset: int, time_ms: int | None, headers: Mapping[str, str]
) -> Hop | None:
    """The hop a record makes (``topic`` without the prefix); None when the record is not a
    CloudEvent of a flow (no ``ce_id``) or the topic is not one a flow crosses."""
    event_id = headers.get("ce_id")
    if not event_id:
        return None
    common = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "time_ms": time_ms if time_ms is not None and time_ms >= 0 else 0,
        "event_id": event_id,
        "correlation_id": headers.get(CORRELATION) or event_id,
        "causation_id": headers.get(CAUSATION),
        "subject": headers.get("ce_subject"),
        "trace_id": trace_id_of(headers),
    }
    if topic in STAGE_BY_OUTPUT:
        return Hop(
            kind="stage",
            stage=STAGE_BY_OUTPUT[topic],
            service=service_of(headers),
            replay_of=headers.get(REPLAY_HEADER),
            **common,
        )
    if topic.endswith(DLQ_SUFFIX) and topic.removesuffix(DLQ_SUFFIX) in STAGE_BY_INPUT:
        stage = STAGE_BY_INPUT[topic.removesuffix(DLQ_SUFFIX)]
        error = ": ".join(
            p for p in (headers.get("dlq_error_type"), headers.get("dlq_error_message")) if p
        )
        return Hop(
            kind="dead",
            stage=stage,
            service=headers.get("dlq_service") or stage.service,
            reason=headers.get("dlq_reason") or "?",
            error=error,
            origin_partition=_int(headers.get("dlq_partition")),
            origin_offset=_int(headers.get("dlq_offset")),
            **common,
        )
    return None


class Lineage(Protocol):
    """What flow selection reads of a record (``lisa_choreo.records.Record`` has it)."""

    @property
    def event_id(self) -> str | None: ...

    @property
    def headers(self) -> dict[str, str]: ...

    @property
    def trace_id(self) -> str | None: ...


def select_flow(key: str, records: Iterable[Lineage], by_trace: bool = False) -> set[str]:
    """Event ids of one flow: those of segment ``key`` (or trace ``key`` when ``by_trace``),
    every event of their correlation group, and their descendants (whose subject changed: the
    catalogue's sources)."""
    records = list(records)
    if by_trace:
        chosen = {r.event_id for r in records if r.trace_id == key.lower()}
    else:
        of_key = [r for r in records if r.headers.get("ce_subject") == key]
        roots = {r.headers[CORRELATION] for r in of_key if r.headers.get(CORRELATION)}
        chosen = {r.event_id for r in of_key}
        chosen |= {r.event_id for r in records if r.headers.get(CORRELATION) in roots}
    while True:
        more = {
            r.event_id
            for r in records
            if r.event_id not in chosen and r.headers.get(CAUSATION) in chosen
        }
        if not more:
            return {c for c in chosen if c is not None}
        chosen |= more
