"""One segment's flow through the choreography, rebuilt from the tracing backend or the topics.

Two sources, because traces are sampled, expire and can be switched off, while the events' lineage
(``ce_causationid`` = the parent event, ``ce_correlationid`` = the raw segment's event) travels
with the data as long as the topics keep it:

- ``backend``: Zipkin's query API returns the trace(s) holding a span tagged with the segment id
  (``lisa.segment_id``, else ``cloudevents.event_subject``), or one trace by id;
- ``topics``: the pipeline's topics and their dead-letter topics are read without a consumer
  group; every event becomes a ``send <topic>`` span of the service that produced it
  (``ce_source``), under a ``process <input topic>`` span linking it to its cause. Record
  timestamps give the timeline, so a process span runs from the input's append to the last
  output's: queue wait included, not separable.

Both give spans of ``choreo.tracing.span_record`` shape, so ``traceview`` renders both alike and a
test can compare them.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from choreo import codec
from choreo.settings import KafkaSettings
from choreo.topology import dead_letter_topic
from lisa_choreo import traceview
from lisa_choreo.localstack.tracing_ui import backend_url, query
from lisa_choreo.records import Record, printable
from lisa_pipeline.flowmodel import select_flow, service_of
from lisa_pipeline.topics import (
    CANDIDATES_GB,
    CATALOG,
    SEGMENTS_CONDITIONED,
    SEGMENTS_RAW,
    SOURCES_ESTIMATES,
)

SOURCES = ("auto", "backend", "topics")
PIPELINE_TOPICS = (SEGMENTS_RAW, SEGMENTS_CONDITIONED, CANDIDATES_GB, SOURCES_ESTIMATES, CATALOG)
# Tags naming the segment: the ingest root span's, then any consumer's CloudEvents subject.
SEGMENT_TAGS = ("lisa.segment_id", "cloudevents.event_subject")
LOOKBACK_MS = 365 * 86_400_000  # the memory store forgets by size, not age: look back far
_TRACE_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{16}")
# Resource and scope tags the Zipkin exporter copies onto every span: noise in a flow.
_NOISE_PREFIXES = ("otel.library.", "otel.scope.", "telemetry.sdk.")
_NOISE = frozenset({"service.name", "service.instance.id", "otel.status_code", "error"})
_NUMERIC_TAGS = frozenset({"lisa.queue_wait_ms"})  # Zipkin keeps tags as strings


class FlowNotFound(LookupError):
    """Neither source knows the segment or trace."""


class SourceUnavailable(RuntimeError):
    """The backend or the broker could not be asked."""


def is_trace_id(key: str) -> bool:
    """Segment ids are ``<sha256[:16]>-<index>``, so a bare 16/32-hex string is a trace id."""
    return _TRACE_ID.fullmatch(key.lower()) is not None


@dataclass
class Flow:
    key: str
    source: str  # "backend" | "topics"
    origin: str  # the backend's URL, or the topics read
    spans: list[dict]
    notes: list[str] = field(default_factory=list)

    @property
    def trace_ids(self) -> list[str]:
        return sorted({s["trace_id"] for s in self.spans})

    @property
    def services(self) -> set[str]:
        return {s["service"] for s in self.spans if s["service"]}

    def operations(self) -> set[tuple[str, str]]:
        """(service, span name) of the messaging spans, which both sources produce alike."""
        return {
            (s["service"], s["name"].lower())
            for s in self.spans
            if s["name"].startswith(("process ", "send "))
        }

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "source": self.source,
            "origin": self.origin,
            "notes": self.notes,
            "trace_ids": self.trace_ids,
            "services": sorted(self.services),
            "spans": sorted(self.spans, key=lambda s: (s["start_ns"], s["end_ns"])),
        }

    def render(self) -> list[str]:
        what = "trace" if is_trace_id(self.key) else "segment"
        where = (
            f"the tracing backend ({self.origin})"
            if self.source == "backend"
            else f"the topics ({self.origin}); spans run from input to output append times, "
            "queue wait included"
        )
        lines = [*(f"note: {n}" for n in self.notes)]
        lines.append(
            f"{what} {self.key}: {len(self.spans)} spans, {len(self.services)} services, "
            f"{len(self.trace_ids)} trace(s), from {where}"
        )
        for trace_id, spans in sorted(traceview.by_trace(self.spans).items()):
            lines.append(f"trace {trace_id}")
            lines += ["  " + line for line in traceview.render(spans)]
        # services, reasons and trace ids come from the records' headers: escape what they carry
        return [printable(line) for line in lines]


def rebuild(
    key: str,
    source: str = "auto",
    url: str | None = None,
    settings: KafkaSettings | None = None,
) -> Flow:
    """The flow of a segment (or one trace): from the backend, else (``auto``) from the topics."""
    if source not in SOURCES:
        raise ValueError(f"source {source!r} not in {SOURCES}")
    url = (url or backend_url()).rstrip("/")
    notes: list[str] = []
    if source in ("auto", "backend"):
        try:
            spans = backend_spans(key, url)
        except SourceUnavailable as exc:
            if source == "backend":
                raise
            notes.append(f"tracing backend unavailable ({exc})")
        else:
            if spans:
                return Flow(key, "backend", url, spans)
            if source == "backend":
                raise FlowNotFound(f"no trace of {key} in the tracing backend {url}")
            notes.append(f"no trace of {key} in the tracing backend {url}")
    settings = settings or KafkaSettings()
    try:
        records = read_topics(settings)
    except SourceUnavailable as exc:
        raise SourceUnavailable("; ".join([*notes, str(exc)])) from exc
    spans = topic_spans(key, records)
    origin = ", ".join(PIPELINE_TOPICS) + " and their .dlq"
    unreadable = unreadable_notes(records)
    if not spans:
        missing = f"no event of {key} on {origin} ({settings.bootstrap_servers})"
        raise FlowNotFound("; ".join([missing, *unreadable]))
    return Flow(key, "topics", origin, spans, [*notes, *unreadable])


def unreadable_notes(records: Iterable[Record], shown: int = 3) -> list[str]:
    """A note naming the records whose headers were not all UTF-8 (still followed: their values
    are read as hex, as the runtime reads them)."""
    bad = [r for r in records if r.problems]
    if not bad:
        return []
    refs = ", ".join(f"{r.ref} ({'; '.join(r.problems)})" for r in bad[:shown])
    more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
    return [f"{len(bad)} record(s) with undecodable headers: {refs}{more}"]


# -- the tracing backend ---------------------------------------------------------------------


def backend_spans(key: str, url: str, timeout_s: float = 10.0) -> list[dict]:
    """Spans of the traces of ``key`` in Zipkin, as span records ([] if it knows none)."""
    try:
        if is_trace_id(key):
            try:
                traces = [query(url, f"/api/v2/trace/{quote(key.lower())}", timeout_s)]
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return []
                raise
        else:
            traces = []
            for tag in SEGMENT_TAGS:
                params = {
                    "annotationQuery": f"{tag}={key}",
                    "endTs": int(time.time() * 1000),
                    "lookback": LOOKBACK_MS,
                    "limit": 100,
                }
                traces = query(url, f"/api/v2/traces?{urlencode(params)}", timeout_s)
                if traces:
                    break
    except urllib.error.HTTPError as exc:
        raise SourceUnavailable(f"{url} answered HTTP {exc.code}") from exc
    except (OSError, ValueError) as exc:
        raise SourceUnavailable(f"{url}: {exc}") from exc
    return [from_zipkin(span) for trace in traces for span in trace]


def from_zipkin(span: dict) -> dict:
    """A Zipkin v2 span as a span record (Zipkin has no links: fan-in links are lost)."""
    tags: dict[str, str] = span.get("tags") or {}
    start_ns = int(span.get("timestamp", 0)) * 1000
    status = tags.get("otel.status_code", "UNSET")
    if "error" in tags:
        status = "ERROR"
    attributes: dict[str, object] = {
        k: (_number(v) if k in _NUMERIC_TAGS else v)
        for k, v in tags.items()
        if k not in _NOISE and not k.startswith(_NOISE_PREFIXES)
    }
    if tags.get("error"):
        attributes["error.message"] = tags["error"]
    return {
        "trace_id": span["traceId"],
        "span_id": span["id"],
        "parent_id": span.get("parentId"),
        "name": span.get("name", ""),
        "kind": span.get("kind", "INTERNAL"),
        "service": (span.get("localEndpoint") or {}).get("serviceName"),
        "start_ns": start_ns,
        "end_ns": start_ns + int(span.get("duration", 0)) * 1000,
        "status": status,
        "attributes": attributes,
        "links": [],
        "events": [_event(a) for a in span.get("annotations") or ()],
    }


def _number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def _event(annotation: dict) -> dict:
    """The OTel exporter writes an event as the annotation ``{"<name>": {attributes}}``."""
    try:
        ((name, attributes),) = json.loads(annotation["value"]).items()
    except (ValueError, TypeError, AttributeError):
        return {"name": str(annotation.get("value")), "attributes": {}}
    return {"name": name, "attributes": attributes if isinstance(attributes, dict) else {}}


# -- the topics ------------------------------------------------------------------------------


def read_topics(settings: KafkaSettings, topics: Sequence[str] = PIPELINE_TOPICS) -> list[Record]:
    """Every record of the topics and their dead-letter topics as of now (no consumer group)."""
    try:
        return asyncio.run(_read(settings, [*topics, *map(dead_letter_topic, topics)]))
    except Exception as exc:  # aiokafka's connection errors share no base class worth naming
        raise SourceUnavailable(f"reading topics on {settings.bootstrap_servers}: {exc}") from exc


async def _read(settings: KafkaSettings, topics: list[str]) -> list[Record]:
    from aiokafka.admin import AIOKafkaAdminClient

    from choreo.reader import TopicReader

    admin = AIOKafkaAdminClient(**settings.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    present = [t for t in topics if settings.topic(t) in existing]
    if not present:
        return []
    async with TopicReader(settings, present) as reader:
        records = await reader.snapshot()
    # Full topic names (no prefix stripped): span names must be the runtime's, ``send <topic>``.
    return [Record.of(r) for r in records]


def topic_spans(key: str, records: Iterable[Record]) -> list[dict]:
    """The flow of ``key`` rebuilt from event lineage, as span records ([] if none)."""
    events: dict[str, Record] = {}
    copies: dict[str, int] = {}
    dead: list[Record] = []
    for rec in sorted(records, key=lambda r: (_ms(r), r.topic, r.offset)):
        if rec.event_id is None:
            continue  # not a CloudEvent: it has no lineage to follow
        if rec.dead_letter:
            dead.append(rec)
        elif rec.event_id in events:  # a redelivered input reproduced the same id
            copies[rec.event_id] += 1
        else:
            events[rec.event_id] = rec
            copies[rec.event_id] = 1
    chosen = _select(key, [*events.values(), *dead])
    spans: list[dict] = []
    process: dict[tuple[str, str], dict] = {}

    def process_span(cause: Record, service: str, at_ms: int) -> dict:
        """The span of ``service`` handling ``cause`` (an event, or its dead-lettered copy)."""
        node = process.get((cause.event_id, service))
        if node is None:
            known = not cause.dead_letter and cause.event_id in chosen
            node = _span(
                cause,
                f"{cause.event_id}/{service}",
                cause.event_id if known else None,
                f"process {cause.topic.removesuffix('.dlq')}",
            )
            node.update(kind="CONSUMER", service=service)
            node["attributes"]["messaging.message.id"] = cause.event_id
            process[(cause.event_id, service)] = node
            spans.append(node)
        node["end_ns"] = max(node["end_ns"], at_ms * 1_000_000)
        return node

    for rec in (e for e in events.values() if e.event_id in chosen):
        cause_id = rec.headers.get(codec.CAUSATION)
        cause = events.get(cause_id) if cause_id else None
        parent = None
        if cause is not None and cause.event_id in chosen:
            parent = process_span(cause, _service(rec), _ms(rec))
        send = _span(rec, rec.event_id, parent["span_id"] if parent else None, f"send {rec.topic}")
        send["attributes"].update(
            {
                "messaging.message.id": rec.event_id,
                "messaging.destination.partition.id": str(rec.partition),
                "messaging.kafka.offset": rec.offset,
                "cloudevents.event_type": rec.headers.get("ce_type", ""),
                "cloudevents.event_subject": rec.headers.get("ce_subject", ""),
                "lisa.correlation_id": rec.headers.get(codec.CORRELATION, ""),
            }
        )
        if copies[rec.event_id] > 1:
            send["attributes"]["lisa.copies"] = copies[rec.event_id]
        spans.append(send)
    for rec in (d for d in dead if d.event_id in chosen):
        service = rec.headers.get("dlq_service", "?")
        node = process_span(events.get(rec.event_id, rec), service, _ms(rec))
        node["status"] = "ERROR"
        node["attributes"]["lisa.dead_letter_reason"] = rec.headers.get("dlq_reason", "")
        node["attributes"]["error.message"] = rec.headers.get("dlq_error_message", "")
    return spans


def _select(key: str, records: list[Record]) -> set[str]:
    """Event ids of the flow: those of the key, their correlation group, and descendants
    (``lisa_pipeline.flowmodel``, the flow monitor's rules too)."""
    return select_flow(key, records, by_trace=is_trace_id(key))


def _ms(rec: Record) -> int:
    return rec.timestamp_ms if rec.timestamp_ms is not None else -1  # Kafka's "no timestamp"


def _service(rec: Record) -> str:
    return service_of(rec.headers)


def _span(rec: Record, span_id: str, parent_id: str | None, name: str) -> dict:
    """A zero-length span at the record's append time; the trace is the record's (or its
    correlation id when it carries no ``traceparent``)."""
    at_ns = _ms(rec) * 1_000_000
    return {
        "trace_id": rec.trace_id or rec.headers.get(codec.CORRELATION, "?"),
        "span_id": span_id,
        "parent_id": parent_id,
        "name": name,
        "kind": "PRODUCER",
        "service": _service(rec),
        "start_ns": at_ns,
        "end_ns": at_ns,
        "status": "UNSET",
        "attributes": {},
        "links": [],
        "events": [],
    }
