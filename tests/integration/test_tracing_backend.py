"""The pipeline's spans in the stack's real Zipkin, the ``trace`` command, and Zipkin's web UI.

One pipeline run per module (the services as separate processes on the real broker, their spans
sent to Zipkin by the OpenTelemetry SDK's Zipkin exporter, and to a JSON-lines file for what
Zipkin's model drops: span links); each test reads that run from another side.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from choreo.topology import ensure_topics
from lisa_choreo import flows, traceview
from lisa_choreo.localstack import tracing_ui
from lisa_choreo.registry import SERVICE_MODULES, topology
from lisa_pipeline.stages import STAGES
from lisa_pipeline.topics import CATALOG as CATALOG_TOPIC
from lisa_pipeline.topics import SOURCES_ESTIMATES
from tests.conftest import Services, read_all, wait_until

pytestmark = pytest.mark.kafka

# The causal order of one segment's trace. The catalogue joins when the topology declares it.
CHAIN = ("ingest", "condition", "gb-search", "estimate")
CATALOG = "catalog" in SERVICE_MODULES
EXPECTED = (*CHAIN, "catalog") if CATALOG else CHAIN
ARTIFACT = Path(__file__).resolve().parents[2] / "artifacts" / "zipkin-trace.png"


@dataclass
class Run:
    services: Services
    zipkin: tracing_ui.ZipkinServer
    segment_ids: list[str]


@pytest.fixture(scope="module")
def run(kafka, zipkin, tmp_path_factory) -> Iterator[Run]:
    """Every pipeline service on its own prefix, two one-day segments with the verification
    binaries (so the catalogue, when present, promotes sources from both), all estimates out."""
    if not entry_points(group="opentelemetry_traces_exporter", name=tracing_ui.EXPORTER):
        pytest.fail("opentelemetry-exporter-zipkin-json is not installed: see pyproject.toml")
    settings = kafka.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})
    asyncio.run(ensure_topics(settings, topology().all_topics()))
    svc = Services(settings, tmp_path_factory.mktemp("tracing"))
    svc.env.update(
        tracing_ui.otel_env(zipkin.url),
        OTEL_TRACES_EXPORTER=f"{tracing_ui.EXPORTER},jsonl",
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    procs = [svc.start(name, wait=False) for name in EXPECTED[1:]]
    h5 = svc.workdir / "vb.h5"
    # Segment ids derive from the file's content and Zipkin outlives test sessions: a fresh noise
    # seed keeps this run's segments apart from earlier runs' traces.
    seed = str(uuid.uuid4().int % 1_000_000)
    sim = svc.cli("simulate", str(h5), "--days", "2", "--sources", "verification", "--seed", seed)
    assert sim.returncode == 0, sim.stderr
    for proc in procs:
        proc.wait_ready(90)
    ingest = svc.cli("ingest", str(h5))
    assert ingest.returncode == 0, ingest.stderr
    estimates = wait_until(
        lambda: len(e := read_all(settings, SOURCES_ESTIMATES)) >= 2 and e,
        120,
        "the estimates of both segments",
    )
    segment_ids = sorted({dict(r.headers)["ce_subject"].decode() for r in estimates})
    if CATALOG:  # the catalogue's updates are the last hop: every segment's flow ends there
        ids = {dict(r.headers)["ce_id"] for r in estimates}

        def caused() -> set[bytes]:
            records = read_all(settings, CATALOG_TOPIC)
            return {dict(r.headers).get("ce_causationid") for r in records}

        wait_until(lambda: ids <= caused(), 120, "the catalogue's updates for both segments")
    yield Run(svc, zipkin, segment_ids)
    for proc in svc.started:
        proc.terminate()


def zipkin_traces(run: Run, segment_id: str) -> list[list[dict]]:
    """Zipkin's traces holding a span tagged with the segment id (its query API, no client)."""
    query = f"/api/v2/traces?annotationQuery=lisa.segment_id%3D{segment_id}&limit=10"
    return tracing_ui.query(run.zipkin.url, query)


def complete_trace(run: Run, segment_id: str) -> list[dict]:
    """The segment's one trace once it holds spans from every service (spans arrive in
    batches, each service's on its own schedule)."""

    def ready():
        traces = zipkin_traces(run, segment_id)
        services = {s["localEndpoint"]["serviceName"] for t in traces for s in t}
        return traces if services >= set(EXPECTED) else None

    traces = wait_until(ready, 30, f"spans of {EXPECTED} for {segment_id} in Zipkin")
    assert len(traces) == 1, [t[0]["traceId"] for t in traces]
    return traces[0]


def test_one_segment_is_one_trace_through_every_service_in_causal_order(run: Run):
    segment_id = run.segment_ids[0]
    spans = complete_trace(run, segment_id)
    by_id = {s["id"]: s for s in spans}
    last = EXPECTED[-1]
    # The last service's deepest span, then up the parent chain to the root.
    leaf = max(
        (s for s in spans if s["localEndpoint"]["serviceName"] == last),
        key=lambda s: len(_ancestry(s, by_id)),
    )
    chain = [s["localEndpoint"]["serviceName"] for s in reversed(_ancestry(leaf, by_id))]
    order = [name for i, name in enumerate(chain) if i == 0 or chain[i - 1] != name]
    assert tuple(order) == EXPECTED, chain
    root = _ancestry(leaf, by_id)[-1]
    assert "parentId" not in root
    assert root["name"] == "ingest segment"
    assert root["tags"]["lisa.segment_id"] == segment_id
    consumers = [s for s in spans if s.get("kind") == "CONSUMER"]
    assert {s["localEndpoint"]["serviceName"] for s in consumers} == set(EXPECTED[1:])
    for span in consumers:  # the queue wait the runner measured, on every hop
        assert float(span["tags"]["lisa.queue_wait_ms"]) >= 0, span
    if CATALOG:
        assert_catalog_links(run, {s["traceId"] for s in spans})


def assert_catalog_links(run: Run, segment_traces: set[str]) -> None:
    """Zipkin's span model has no links, so the catalogue's fan-in links are read from the
    JSON-lines copy of the same spans: each update links the traces of its segments."""

    def updates():
        spans = traceview.read_jsonl(run.services.spans)
        return [s for s in spans if s["name"].startswith("catalog update")]

    found = wait_until(updates, 30, "a catalog update span")
    linked = {link["trace_id"] for span in found for link in span["links"]}
    assert segment_traces <= linked, (segment_traces, linked)


def _ancestry(span: dict, by_id: dict[str, dict]) -> list[dict]:
    out = [span]
    while out[-1].get("parentId") in by_id:
        out.append(by_id[out[-1]["parentId"]])
    return out


def trace_cli(run: Run, *args: str, url: str | None = None) -> subprocess.CompletedProcess:
    return run.services.cli("trace", *args, LISA_ZIPKIN_URL=url or run.zipkin.url)


def test_zipkin_dependencies_draw_the_choreography_through_its_topics(run: Run):
    """Kafka spans carry their topic as remote endpoint, so Zipkin's dependency API (and its
    Dependencies view) links every service to the next through the topic between them."""
    complete_trace(run, run.segment_ids[0])
    settings = run.services.settings
    hops = [
        (s.service, s.produces, next_stage.service)
        for s, next_stage in itertools.pairwise(STAGES)
        if next_stage.service in EXPECTED
    ]
    wanted = {
        link
        for producer, topic, consumer in hops
        for link in ((producer, settings.topic(topic)), (settings.topic(topic), consumer))
    }

    def links() -> set[tuple[str, str]] | None:
        end_ms = int(time.time() * 1000)
        found = tracing_ui.query(
            run.zipkin.url, f"/api/v2/dependencies?endTs={end_ms}&lookback=3600000"
        )
        pairs = {(d["parent"], d["child"]) for d in found}
        return pairs if wanted <= pairs else None

    assert wait_until(links, 60, f"Zipkin dependency links {sorted(wanted)}")


def test_trace_command_rebuilds_the_same_flow_from_the_backend_and_from_the_topics(run: Run):
    segment_id = run.segment_ids[0]
    complete_trace(run, segment_id)
    backend = trace_cli(run, segment_id, "--json", "--source", "backend")
    assert backend.returncode == 0, backend.stderr
    topics = trace_cli(run, segment_id, "--json", "--source", "topics")
    assert topics.returncode == 0, topics.stderr
    from_backend, from_topics = json.loads(backend.stdout), json.loads(topics.stdout)
    assert (from_backend["source"], from_topics["source"]) == ("backend", "topics")
    assert set(from_backend["services"]) == set(from_topics["services"]) == set(EXPECTED)
    assert len(from_backend["trace_ids"]) == 1
    assert from_topics["trace_ids"] == from_backend["trace_ids"]  # the records' traceparent
    ops = {
        source: flows.Flow(segment_id, f["source"], f["origin"], f["spans"]).operations()
        for source, f in (("backend", from_backend), ("topics", from_topics))
    }
    # Every hop the lineage shows is a span of the trace; the trace also has the catalogue's
    # internal re-keying hop, which no pipeline topic shows.
    assert ops["topics"] <= ops["backend"], ops["topics"] - ops["backend"]
    hops = {(svc, op.split()[0]) for svc, op in ops["topics"]}
    assert hops >= {(s, "send") for s in EXPECTED} | {(s, "process") for s in EXPECTED[1:]}

    text = trace_cli(run, segment_id)
    assert text.returncode == 0, text.stderr
    assert "from the tracing backend" in text.stdout
    assert all(f"  {name}" in text.stdout for name in EXPECTED)
    assert "waited" in text.stdout

    by_trace = trace_cli(run, from_backend["trace_ids"][0], "--json")
    assert json.loads(by_trace.stdout)["services"] == from_backend["services"]


def test_trace_command_falls_back_to_the_topics_when_the_backend_is_down(run: Run):
    down = "http://127.0.0.1:9"  # discard port: nothing listens
    result = trace_cli(run, run.segment_ids[1], url=down)
    assert result.returncode == 0, result.stderr
    assert "tracing backend unavailable" in result.stdout
    assert "from the topics" in result.stdout
    assert all(f"  {name}" in result.stdout for name in EXPECTED)
    missing = trace_cli(run, "0123456789abcdef-99", "--source", "topics")
    assert missing.returncode == 1
    assert "no event of 0123456789abcdef-99" in missing.stderr


def chromium(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    """Headless Chromium on a throwaway profile, talking to loopback only."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run(
            [
                shutil.which("chromium") or "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-quic",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--window-size=1600,1000",
                "--virtual-time-budget=10000",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium absent (apt: chromium)")
def test_zipkin_ui_shows_the_trace_of_a_segment(run: Run):
    segment_id = run.segment_ids[0]
    trace_id = complete_trace(run, segment_id)[0]["traceId"]
    page = run.zipkin.trace_page(trace_id)
    dom = chromium("--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert trace_id in dom.stdout
    for name in EXPECTED:
        assert name in dom.stdout, name
    assert "ingest segment" in dom.stdout
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.unlink(missing_ok=True)
    shot = chromium(f"--screenshot={ARTIFACT}", page)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert ARTIFACT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ARTIFACT.stat().st_size > 20_000  # a rendered page, not a blank one
