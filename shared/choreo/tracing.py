"""OpenTelemetry set-up from the standard ``OTEL_*`` variables, and Kafka header propagation.

``OTEL_TRACES_EXPORTER`` names exporters registered under the ``opentelemetry_traces_exporter``
entry point (``otlp`` = OTLP over HTTP/protobuf by default, ``console``, ``none``, and this
project's ``jsonl`` which appends spans to ``LISA_OTEL_JSONL_PATH``, handy for tests and demos).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

if TYPE_CHECKING:
    from choreo.events import Envelope

_ALIASES = {"otlp": "otlp_proto_http"}


class _HeaderGetter(Getter[list[tuple[str, bytes]]]):
    def get(self, carrier: list[tuple[str, bytes]], key: str) -> list[str] | None:
        values = [v.decode(errors="replace") for k, v in carrier if k == key and v is not None]
        return values or None

    def keys(self, carrier: list[tuple[str, bytes]]) -> list[str]:
        return [k for k, _ in carrier]


class _HeaderSetter(Setter[list[tuple[str, bytes]]]):
    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        carrier[:] = [(k, v) for k, v in carrier if k != key]
        carrier.append((key, value.encode()))


HEADER_GETTER = _HeaderGetter()
HEADER_SETTER = _HeaderSetter()
# One tracer for every span of the runtime: ``get_tracer`` builds a new one at each call (an
# instrumentation scope compared against the provider's), two per record. A proxy made at import
# binds to the provider ``configure_tracing`` installs, as a fresh ``get_tracer`` would.
_TRACER = trace.get_tracer("choreo")


def inject(headers: list[tuple[str, bytes]]) -> None:
    """Add ``traceparent``/``tracestate`` of the current span to Kafka headers."""
    propagate.inject(headers, setter=HEADER_SETTER)


def extract(headers: Sequence[tuple[str, bytes]] | None):  # -> opentelemetry Context
    return propagate.extract(list(headers or []), getter=HEADER_GETTER)


def send_span(topic: str, message_id: str, key: str | None, **extra: str):
    """The PRODUCER span ``send <topic>`` (messaging semantic conventions) around one send;
    inject its context into the record's headers inside it."""
    return _TRACER.start_as_current_span(
        f"send {topic}",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.message.id": message_id,
            "messaging.kafka.message.key": key or "",
            **extra,
        },
    )


def current_traceparent() -> str | None:
    """The current span's W3C ``traceparent`` (to remember a trace and link to it later)."""
    carrier: list[tuple[str, bytes]] = []
    inject(carrier)
    return next((v.decode() for k, v in carrier if k == "traceparent"), None)


def link_to(traceparent: str) -> trace.Link | None:
    """A span link to the span a ``traceparent`` names (fan-in: one update, many traces)."""
    context = trace.get_current_span(extract([("traceparent", traceparent.encode())]))
    span_context = context.get_span_context()
    return trace.Link(span_context) if span_context.is_valid else None


def consumer_span(
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: float | None,
    headers: Sequence[tuple[str, bytes]] | None,
    step: str,
    group: str,
):
    """The CONSUMER span ``process <topic>`` around one input, a child of the producer's context
    carried in the record's headers; ``lisa.queue_wait_ms`` is the time the record waited."""
    now_ms = time.time() * 1000
    return _TRACER.start_as_current_span(
        f"process {topic}",
        context=extract(headers),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset,
            "messaging.consumer.group.name": group,
            "lisa.step": step,
            "lisa.queue_wait_ms": max(0.0, now_ms - (timestamp_ms or now_ms)),
        },
    )


def describe_event(span: trace.Span, envelope: Envelope[Any]) -> None:
    """What a consumer span learns once its input is decoded."""
    span.set_attributes(
        {
            "messaging.message.id": envelope.id,
            "cloudevents.event_type": envelope.type,
            "cloudevents.event_subject": envelope.subject or "",
            "lisa.correlation_id": envelope.correlation_id,
        }
    )


def configure_tracing(service_name: str) -> TracerProvider:
    """Install a tracer provider whose exporters follow ``OTEL_TRACES_EXPORTER``.

    Spans leave through a batch processor, so exporting never sits on the message path.
    """
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    for name in (n.strip() for n in names.split(",")):
        if not name or name == "none":
            continue
        provider.add_span_processor(BatchSpanProcessor(_load_exporter(name)))
    trace.set_tracer_provider(provider)
    return provider


def _load_exporter(name: str) -> SpanExporter:
    wanted = _ALIASES.get(name, name)
    for ep in entry_points(group="opentelemetry_traces_exporter"):
        if ep.name == wanted:
            return ep.load()()
    known = sorted({ep.name for ep in entry_points(group="opentelemetry_traces_exporter")})
    raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: no such exporter (known: {known})")


def span_record(span: ReadableSpan) -> dict:
    """A compact, self-contained JSON view of one finished span."""
    ctx = span.get_span_context()
    return {
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name"),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "links": [
            {"trace_id": f"{lk.context.trace_id:032x}", "span_id": f"{lk.context.span_id:016x}"}
            for lk in span.links
        ],
        "events": [
            {"name": ev.name, "attributes": dict(ev.attributes or {})} for ev in span.events
        ],
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends spans as JSON lines to ``LISA_OTEL_JSONL_PATH`` (one ``write`` per batch)."""

    def __init__(self, path: str | None = None) -> None:
        self._path = path or os.environ.get("LISA_OTEL_JSONL_PATH", "spans.jsonl")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        with self._lock, open(self._path, "a", encoding="utf-8") as fh:
            fh.write(text)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def zipkin_messaging_exporter() -> SpanExporter:
    """Zipkin's JSON v2 exporter whose Kafka spans carry the topic as remote endpoint.

    Zipkin's dependency view links services through the remote endpoints of their spans; the
    OpenTelemetry exporter sets none, so the choreography showed no link at all. With the topic
    as the remote service of every PRODUCER and CONSUMER span, the view draws
    ingest -> lisa.segments.raw -> condition -> ... -> catalog."""
    from opentelemetry.exporter.zipkin.json import ZipkinExporter
    from opentelemetry.exporter.zipkin.json.v2 import JsonV2Encoder

    class MessagingEncoder(JsonV2Encoder):
        def _encode_span(self, span, encoded_local_endpoint: dict) -> dict:
            encoded = super()._encode_span(span, encoded_local_endpoint)
            topic = (span.attributes or {}).get("messaging.destination.name")
            if span.kind in (trace.SpanKind.PRODUCER, trace.SpanKind.CONSUMER) and topic:
                encoded["remoteEndpoint"] = {"serviceName": str(topic)}
            return encoded

    exporter = ZipkinExporter()
    exporter.encoder = MessagingEncoder(exporter.encoder.max_tag_value_length)  # same limits
    return exporter
