"""Trace context travels in Kafka headers; spans land in the JSON-lines exporter."""

import json

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from choreo import tracing


def test_context_survives_a_trip_through_kafka_headers(tmp_path):
    provider = TracerProvider()
    path = tmp_path / "spans.jsonl"
    provider.add_span_processor(SimpleSpanProcessor(tracing.JsonLinesSpanExporter(str(path))))
    tracer = provider.get_tracer("test")
    headers = [("ce_id", b"1")]
    with tracer.start_as_current_span("send t") as producer:
        tracing.inject(headers)
    names = [k for k, _ in headers]
    assert "traceparent" in names
    ctx = tracing.extract(headers)
    with tracer.start_as_current_span("process t", context=ctx) as consumer:
        pass
    assert consumer.get_span_context().trace_id == producer.get_span_context().trace_id
    assert consumer.parent.span_id == producer.get_span_context().span_id
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["name"] for r in records] == ["send t", "process t"]
    assert records[1]["parent_id"] == records[0]["span_id"]
    assert records[0]["trace_id"] == f"{producer.get_span_context().trace_id:032x}"


def test_inject_replaces_a_stale_traceparent():
    provider = TracerProvider()
    headers = [("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    with provider.get_tracer("t").start_as_current_span("x"):
        tracing.inject(headers)
    assert len([k for k, _ in headers if k == "traceparent"]) == 1
    assert headers[-1][1] != b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"


def test_no_context_gives_a_root(monkeypatch):
    ctx = tracing.extract(None)
    assert not trace.get_current_span(ctx).get_span_context().is_valid
