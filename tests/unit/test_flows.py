"""Flow reconstruction without a broker or a JVM: Zipkin JSON, event lineage, the source choice.

The backend side is a loopback HTTP server answering as Zipkin's query API does; the topic side
is records built here with the headers the runtime writes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from lisa_choreo import flows, traceview
from lisa_choreo.flows import Record

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SEG = "e46c63a40b18da1b-00000"


def zipkin_span(span_id: str, parent: str | None, service: str, name: str, **tags) -> dict:
    span = {
        "traceId": TRACE,
        "id": span_id,
        "name": name,
        "timestamp": 1_700_000_000_000_000 + int(span_id, 16) * 1000,
        "duration": 1500,
        "localEndpoint": {"serviceName": service},
        "tags": {"service.name": service, "telemetry.sdk.language": "python", **tags},
    }
    if parent:
        span["parentId"] = parent
        span["kind"] = "CONSUMER"
    return span


ZIPKIN_TRACE = [
    zipkin_span("0000000000000001", None, "ingest", "ingest segment", **{"lisa.segment_id": SEG}),
    zipkin_span(
        "0000000000000002",
        "0000000000000001",
        "condition",
        "process lisa.segments.raw",
        **{"lisa.queue_wait_ms": "12.5", "otel.status_code": "ERROR", "error": "schema-invalid"},
    ),
]


def test_a_zipkin_span_becomes_a_span_record():
    record = flows.from_zipkin(
        {
            **ZIPKIN_TRACE[1],
            "annotations": [{"timestamp": 1, "value": json.dumps({"retry": {"attempt": 2}})}],
        }
    )
    assert record["trace_id"] == TRACE
    assert record["parent_id"] == "0000000000000001"
    assert record["kind"] == "CONSUMER"
    assert record["service"] == "condition"
    assert record["end_ns"] - record["start_ns"] == 1_500_000
    assert record["status"] == "ERROR"
    assert record["attributes"] == {
        "lisa.queue_wait_ms": 12.5,  # a number again, as the runner set it
        "error.message": "schema-invalid",
    }
    assert record["events"] == [{"name": "retry", "attributes": {"attempt": 2}}]
    assert record["links"] == []
    root = flows.from_zipkin(ZIPKIN_TRACE[0])
    assert (root["parent_id"], root["kind"], root["status"]) == (None, "INTERNAL", "UNSET")


def test_segment_ids_and_trace_ids_are_told_apart():
    assert flows.is_trace_id(TRACE)
    assert flows.is_trace_id(TRACE.upper())
    assert flows.is_trace_id("a3ce929d0e0e4736")
    assert not flows.is_trace_id(SEG)
    assert not flows.is_trace_id("seg-001")


class FakeZipkin(BaseHTTPRequestHandler):
    """Zipkin's query API over one trace: tag search and lookup by id, 404 for the unknown."""

    queries: ClassVar[list[dict]] = []

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/api/v2/traces":
            params = parse_qs(url.query)
            FakeZipkin.queries.append(params)
            hit = params["annotationQuery"] == [f"lisa.segment_id={SEG}"]
            self._json([ZIPKIN_TRACE] if hit else [])
        elif url.path == f"/api/v2/trace/{TRACE}":
            self._json(ZIPKIN_TRACE)
        else:
            self.send_error(404)

    def _json(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_zipkin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeZipkin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_backend_is_asked_by_segment_tag_and_by_trace_id(fake_zipkin: str):
    FakeZipkin.queries.clear()
    by_segment = flows.rebuild(SEG, "backend", fake_zipkin)
    assert by_segment.source == "backend"
    assert by_segment.services == {"ingest", "condition"}
    (query,) = FakeZipkin.queries
    assert int(query["lookback"][0]) >= 86_400_000  # older than Zipkin's default day
    by_trace = flows.rebuild(TRACE, "backend", fake_zipkin)
    assert [s["span_id"] for s in by_trace.spans] == [s["span_id"] for s in by_segment.spans]
    with pytest.raises(flows.FlowNotFound):
        flows.rebuild("f" * 32, "backend", fake_zipkin)
    # an unknown segment: both tags are tried before giving up
    FakeZipkin.queries.clear()
    with pytest.raises(flows.FlowNotFound):
        flows.rebuild("0123456789abcdef-7", "backend", fake_zipkin)
    assert [q["annotationQuery"][0].split("=")[0] for q in FakeZipkin.queries] == list(
        flows.SEGMENT_TAGS
    )


def header(**values: str) -> dict[str, str]:
    names = {"causation": "ce_causationid", "correlation": "ce_correlationid"}
    return {names.get(k, k if k == "traceparent" else f"ce_{k}"): v for k, v in values.items()}


def event(
    topic: str,
    offset: int,
    ts: int,
    id: str,
    source: str,
    cause: str | None,
    subject: str = SEG,
    trace: str = TRACE,
    correlation: str = "raw-1",
) -> Record:
    headers = header(
        id=id,
        source=source,
        subject=subject,
        type=f"lisa.{source}.v1",
        correlation=correlation,
        traceparent=f"00-{trace}-{offset + 1:016x}-01",
    )
    if cause:
        headers["ce_causationid"] = cause
    return Record(topic, 0, offset, ts, headers=headers)


# One segment: ingest -> condition -> gb-search -> estimate -> catalog (another subject), the
# estimate redelivered once; a second segment's chain that must stay out; a dead letter.
RECORDS = [
    event("p.lisa.segments.raw", 0, 1000, "raw-1", "ingest", None),
    event("p.lisa.segments.conditioned", 0, 1300, "cond-1", "condition", "raw-1"),
    event("p.lisa.candidates.gb", 0, 1400, "gb-1", "gb-search", "cond-1"),
    event("p.lisa.sources.estimates", 0, 1800, "est-1", "estimate", "gb-1"),
    event("p.lisa.sources.estimates", 1, 2500, "est-1", "estimate", "gb-1"),
    event("p.lisa.catalog", 0, 1900, "cat-1", "catalog", "est-1", subject="gb0001.000"),
    event("p.lisa.segments.raw", 1, 1000, "raw-2", "ingest", None, "other-0", "b" * 32, "raw-2"),
    Record(
        "p.lisa.segments.conditioned.dlq",
        0,
        0,
        1350,
        headers={
            **header(id="cond-1", source="condition", subject=SEG, correlation="raw-1"),
            "ce_causationid": "raw-1",
            "dlq_service": "noise-monitor",
            "dlq_reason": "schema-invalid",
            "dlq_error_message": "timing: field required",
        },
    ),
    Record("p.lisa.segments.raw", 0, 9, 999, headers={"content-type": "text/plain"}),  # no lineage
]


def test_the_topics_give_the_segment_flow_as_spans_linked_by_causation():
    spans = flows.topic_spans(SEG, RECORDS)
    by_name = {(s["service"], s["name"]): s for s in spans}
    assert set(by_name) == {
        ("ingest", "send p.lisa.segments.raw"),
        ("condition", "process p.lisa.segments.raw"),
        ("condition", "send p.lisa.segments.conditioned"),
        ("gb-search", "process p.lisa.segments.conditioned"),
        ("gb-search", "send p.lisa.candidates.gb"),
        ("estimate", "process p.lisa.candidates.gb"),
        ("estimate", "send p.lisa.sources.estimates"),
        ("catalog", "process p.lisa.sources.estimates"),
        ("catalog", "send p.lisa.catalog"),
        ("noise-monitor", "process p.lisa.segments.conditioned"),
    }
    ids = {s["span_id"]: s for s in spans}

    def chain(span: dict) -> list[str]:
        out = [span["service"]]
        while span["parent_id"]:
            span = ids[span["parent_id"]]
            out.append(span["service"])
        return out[::-1]

    leaf = by_name[("catalog", "send p.lisa.catalog")]
    steps = ("condition", "gb-search", "estimate", "catalog")
    assert chain(leaf) == ["ingest", *(name for name in steps for _ in ("process", "send"))]
    process = by_name[("estimate", "process p.lisa.candidates.gb")]
    # from the input's append to the output's (the first copy: the redelivery is a repeat)
    assert (process["start_ns"], process["end_ns"]) == (1400 * 10**6, 1800 * 10**6)
    assert by_name[("estimate", "send p.lisa.sources.estimates")]["attributes"]["lisa.copies"] == 2
    failed = by_name[("noise-monitor", "process p.lisa.segments.conditioned")]
    assert failed["status"] == "ERROR"
    assert failed["parent_id"] == "cond-1"
    assert failed["attributes"]["lisa.dead_letter_reason"] == "schema-invalid"
    assert {s["trace_id"] for s in spans} == {TRACE}


def test_a_trace_id_selects_the_same_flow_and_unknown_keys_select_nothing():
    by_segment = flows.topic_spans(SEG, RECORDS)
    by_trace = flows.topic_spans(TRACE, RECORDS)
    assert sorted(s["span_id"] for s in by_trace) == sorted(s["span_id"] for s in by_segment)
    assert {s["service"] for s in flows.topic_spans("other-0", RECORDS)} == {"ingest"}
    assert flows.topic_spans("nope-1", RECORDS) == []


def test_auto_falls_back_to_the_topics_and_says_why(monkeypatch, fake_zipkin: str):
    monkeypatch.setattr(flows, "read_topics", lambda settings: RECORDS)
    down = flows.rebuild(SEG, "auto", "http://127.0.0.1:9")
    assert down.source == "topics"
    assert "tracing backend unavailable" in down.notes[0]
    unknown = flows.rebuild("other-0", "auto", fake_zipkin)
    assert unknown.source == "topics"
    assert "no trace of other-0" in unknown.notes[0]
    assert flows.rebuild(SEG, "auto", fake_zipkin).source == "backend"
    with pytest.raises(flows.SourceUnavailable):
        flows.rebuild(SEG, "backend", "http://127.0.0.1:9")
    text = "\n".join(down.render())
    assert text.startswith("note: tracing backend unavailable")
    assert f"segment {SEG}: 10 spans, 6 services, 1 trace(s), from the topics" in text
    json.dumps(down.to_json())  # machine output is plain JSON


def test_render_shows_waits_errors_and_links():
    spans = [flows.from_zipkin(s) for s in ZIPKIN_TRACE]
    spans.append({**spans[0], "span_id": "9", "name": "catalog update", "links": [{}, {}]})
    lines = traceview.render(spans)
    assert lines[0].startswith("ingest")
    assert lines[1].startswith("  condition")
    assert "waited    12.5 ms" in lines[1]
    assert "ERROR" in lines[1]
    assert lines[2].endswith("links 2 trace(s)")
    assert len({line.index(" ms") for line in lines}) == 1  # columns line up


def test_hostile_headers_are_escaped_and_undecodable_ones_noted(monkeypatch):
    from aiokafka import ConsumerRecord

    def consumer_record(offset: int, headers: list) -> ConsumerRecord:
        return ConsumerRecord(
            topic="p.lisa.segments.raw",
            partition=0,
            offset=offset,
            timestamp=1000 + offset,
            timestamp_type=0,
            key=None,
            value=b"\xffnot json",
            checksum=None,
            serialized_key_size=0,
            serialized_value_size=9,
            headers=headers,
        )

    lineage = [("ce_id", b"raw-9"), ("ce_subject", SEG.encode()), ("ce_correlationid", b"raw-9")]
    records = [
        Record.of(consumer_record(0, [*lineage, ("ce_source", "\x1b[2Jingest\r\x9b".encode())])),
        *(Record.of(consumer_record(i, [*lineage, ("x", b"\xff"), ("y", None)])) for i in (1, 2)),
        Record.of(consumer_record(3, [("ce_id", b"\xfe"), ("ce_subject", b"other")])),
        Record.of(consumer_record(4, [("ce_id", b"\xfd"), ("ce_subject", b"other")])),
    ]
    monkeypatch.setattr(flows, "read_topics", lambda settings: records)
    flow = flows.rebuild(SEG, "topics")
    assert flow.notes == [
        "4 record(s) with undecodable headers: "
        "p.lisa.segments.raw/0/1 (header(s) x not UTF-8 (read as hex)), "
        "p.lisa.segments.raw/0/2 (header(s) x not UTF-8 (read as hex)), "
        "p.lisa.segments.raw/0/3 (header(s) ce_id not UTF-8 (read as hex)) and 1 more"
    ]
    text = "\n".join(flow.render())
    assert "\x1b" not in text
    assert "\r" not in text
    assert "\x9b" not in text
    assert "\\x1b[2Jingest\\r\\x9b" in text
    with pytest.raises(flows.FlowNotFound, match=r"no event of nope-1 .*; 4 record\(s\) with"):
        flows.rebuild("nope-1", "topics")
