"""The flow view in headless Chromium, on a live run: real broker, real services, real Zipkin.

One run per module: condition, gb-search, estimate, catalog and flows as processes (spans to the
stack's Zipkin), three days catalogued, one segment dead-lettered (its stored file missing), then
``estimate`` SIGSTOPped and two more days stuck at ``searched``. The page is rendered by Chromium
(``--dump-dom`` for assertions on what the script drew, ``--screenshot`` for
``artifacts/flow-view.png``); the replay action is driven through the API the page calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from choreo import Envelope, codec
from choreo.publisher import make_producer
from choreo.store import Store
from choreo.topology import ensure_topics
from lisa_choreo.localstack import tracing_ui
from lisa_choreo.processes import ServiceProcess, free_port
from lisa_choreo.registry import topology
from lisa_choreo.simfile import simulate
from lisa_pipeline.events import SegmentRaw, SegmentTiming
from lisa_pipeline.stages import STAGES
from lisa_pipeline.topics import SEGMENTS_RAW
from lisa_science.simulate import analytic_tdi_noise
from tests.conftest import Services, read_all, wait_until
from tests.integration.fleet import DAY, split_days, start_steps

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium absent (apt: chromium)"),
]

ARTIFACT = Path(__file__).resolve().parents[2] / "artifacts" / "flow-view.png"
N = 17280
BAD = "bad-missing-file"


@dataclass
class Run:
    services: Services
    zipkin: tracing_ui.ZipkinServer
    port: int
    catalogued: list[str]
    stuck: list[str]
    aside: Path
    estimate: ServiceProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=10) as response:
            return json.load(response)

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, dict | str]:
        request = urllib.request.Request(
            self.url + path.lstrip("/"), body, {"Content-Type": content_type}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


def missing_file_segment(store: Store) -> tuple[bytes | None, bytes, list, Path]:
    """A raw segment event whose stored file is moved aside: condition dead-letters it
    (``store-missing``) until the file is back."""
    x, y, z = analytic_tdi_noise(N, 5.0, np.random.default_rng(5))
    ref = store.put({"X": x, "Y": y, "Z": z})
    path = Path(ref.uri.removeprefix("file://"))
    aside = path.with_suffix(".aside")
    shutil.move(path, aside)
    event = SegmentRaw(
        timing=SegmentTiming(segment_id=BAD, t0=0.0, dt=5.0, n_samples=N),
        index=0,
        source_file="view-test",
        source_sha256=hashlib.sha256(b"view").hexdigest(),
        overlap_s=0.0,
        data=ref,
        nan_fraction=0.0,
    )
    key, value, headers = codec.encode(Envelope.root(event, source="corpus", subject=BAD))
    return key, value, headers, aside


@pytest.fixture(scope="module")
def run(kafka, zipkin, tmp_path_factory) -> Iterator[Run]:
    settings = kafka.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})
    asyncio.run(ensure_topics(settings, topology().all_topics()))
    work = tmp_path_factory.mktemp("flowview")
    svc = Services(settings, work)
    svc.env.update(
        tracing_ui.otel_env(zipkin.url),
        OTEL_TRACES_EXPORTER=f"{tracing_ui.EXPORTER},jsonl",
        OTEL_BSP_SCHEDULE_DELAY="200",
        LISA_ZIPKIN_URL=zipkin.url,
    )
    seed = uuid.uuid4().int % 1_000_000  # segment ids from content: apart from earlier runs
    whole = simulate(work / "days.h5", 5 * DAY, 5.0, "analytic", "none", seed=seed)
    days = split_days(whole, work / "days", 5, int(DAY / 5.0))
    start_steps(svc)
    port = free_port()
    svc.start(
        "flows",
        LISA_FLOWS_DEADLINE_S="3",
        LISA_FLOWS_HTTP_PORT=str(port),
        LISA_FLOWS_CHECK_INTERVAL_S="0.5",
        LISA_FLOWS_OFFSETS_INTERVAL_S="1",
    )
    estimate = next(p for p in svc.started if p.name == "estimate")
    view = Run(svc, zipkin, port, [], [], Path(), estimate)

    def ingest(files: list[Path]) -> list[str]:
        """Through the CLI, traced: one trace per segment from ingest to the catalogue."""
        result = svc.cli("ingest", *map(str, files))
        assert result.returncode == 0, result.stderr
        names = {f.name for f in files}
        return sorted(
            r.key.decode()
            for r in read_all(settings, SEGMENTS_RAW)
            if Path(json.loads(r.value).get("source_file", "")).name in names
        )

    try:
        view.catalogued = ingest(days[:3])

        def flows(status: str) -> set[str]:
            return {f["segment_id"] for f in view.get(f"api/flows?status={status}")["flows"]}

        wait_until(lambda: flows("catalogued") >= set(view.catalogued), 120, "3 days catalogued")
        key, value, headers, view.aside = missing_file_segment(Store(svc.store_uri))

        async def send() -> None:
            producer = make_producer(settings, "view-test")
            await producer.start()
            try:
                await producer.send_and_wait(
                    settings.topic(SEGMENTS_RAW), value, key=key, headers=headers
                )
            finally:
                await producer.stop()

        asyncio.run(send())
        wait_until(lambda: BAD in flows("dead-lettered"), 60, "the missing file dead-lettered")
        os.kill(estimate.proc.pid, signal.SIGSTOP)
        view.stuck = ingest(days[3:])
        wait_until(lambda: flows("stuck") >= set(view.stuck), 60, "2 days stuck at estimate")
        yield view
    finally:
        if estimate.alive:
            os.kill(estimate.proc.pid, signal.SIGCONT)
        for proc in svc.started:
            proc.terminate()


def chromium(*args: str, timeout_s: float = 90) -> subprocess.CompletedProcess:
    """Headless Chromium on a throwaway profile, talking to loopback only."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run(
            [
                shutil.which("chromium") or "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=8000",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


def dom(url: str) -> str:
    result = chromium("--dump-dom", url)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_page_draws_the_declared_topology_live_with_stuck_and_dead_letters(run: Run):
    page = dom(run.url)
    assert "lisa-choreo" in page
    assert "live" in page  # the monitor is ready: the status pill the script set
    for stage in STAGES:  # every service and topic of the declarations, drawn as SVG nodes
        assert f'data-node="service:{stage.service}"' in page, stage.service
        assert f'data-node="topic:{stage.produces}"' in page, stage.produces
        if stage.consumes:
            assert f'data-node="topic:{stage.consumes}.dlq"' in page
    assert "ev/s" in page
    assert "lag " in page
    assert "oldest " in page
    assert "2 stuck &gt; 3 s" in page  # the consume edge into estimate, highlighted
    for segment in run.stuck:  # the stuck flows' table
        assert f'data-segment="{segment}"' in page, segment
    assert "store-missing" in page  # the dead letter with its reason
    assert f"{SEGMENTS_RAW}.dlq/0/0" in page
    assert ">stuck<" in page  # the alerts table
    assert ">deadlettered<" in page
    overview = run.get("api/overview")
    assert overview["counts"]["total"]["stuck"] == 2
    assert overview["counts"]["stages"]["searched"]["stuck"] == 2
    assert overview["counts"]["stages"]["conditioned"]["dead"] == 1


def test_a_segment_shows_its_timeline_across_services_and_links_its_trace(run: Run):
    segment = run.catalogued[0]
    raw = next(
        r for r in read_all(run.services.settings, SEGMENTS_RAW) if r.key == segment.encode()
    )
    trace_id = dict(raw.headers)["traceparent"].decode().split("-")[1]
    # Zipkin gets the spans in batches: wait until the consumers' queue waits are there
    wait_until(
        lambda: run.get(f"api/segments/{segment}")["waits_from"] == "trace",
        60,
        "the segment's spans in Zipkin",
    )
    detail = run.get(f"api/segments/{segment}")
    assert detail["trace_id"] == trace_id
    assert detail["trace_url"] == f"{run.zipkin.url}/zipkin/traces/{trace_id}"
    assert [r["stage"] for r in detail["timeline"]] == [s.reached for s in STAGES]
    assert [r["service"] for r in detail["timeline"][:-1]] == [s.service for s in STAGES][:-1]
    for row in detail["timeline"][1:4]:
        assert row["wait_source"] == "span"
        assert 0 <= row["queue_wait_ms"] <= row["hop_ms"]
    page = dom(f"{run.url}?segment={segment}")
    assert f'href="{run.zipkin.url}/zipkin/traces/{trace_id}"' in page
    assert 'id="trace-link"' in page
    assert "queue waits: the consumers' spans" in page
    for stage in STAGES:
        assert f"<td>{stage.reached}</td>" in page, stage.reached


def test_screenshot(run: Run):
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.unlink(missing_ok=True)
    shot = chromium(
        f"--screenshot={ARTIFACT}", "--window-size=1400,900", f"{run.url}?segment={run.stuck[0]}"
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert ARTIFACT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ARTIFACT.stat().st_size > 20_000  # a rendered page, not a blank one


def test_replay_from_the_view_sends_the_letter_home_once_and_the_flow_goes_on(run: Run):
    letters = run.get("api/deadletters")["letters"]
    (letter,) = [d for d in letters if d["segment_id"] == BAD]
    assert letter["reason"] == "store-missing"
    assert letter["home"] == SEGMENTS_RAW
    assert not letter["replayed"]
    body = json.dumps({"refs": [letter["ref"]]}).encode()
    # a cross-site form cannot post JSON: anything else is refused
    status, _ = run.post("api/deadletters/replay", b"refs=x", "application/x-www-form-urlencoded")
    assert status == 415
    shutil.move(run.aside, run.aside.with_suffix(".h5"))  # the cause fixed
    status, result = run.post("api/deadletters/replay", body, "application/json")
    assert status == 200, result
    assert result["replayed"] == [letter["ref"]]
    status, again = run.post("api/deadletters/replay", body, "application/json")
    assert status == 200, again
    assert again["skipped"] == [letter["ref"]]  # as `lisa-choreo dlq replay` does
    replays = [
        r
        for r in read_all(run.services.settings, SEGMENTS_RAW)
        if dict(r.headers).get("lisa_replay_of") == letter["ref"].encode()
    ]
    assert len(replays) == 1
    wait_until(
        lambda: (
            "conditioned" in [r["stage"] for r in run.get(f"api/segments/{BAD}")["timeline"]]
            and run.get(f"api/segments/{BAD}")["flow"]["status"] != "dead-lettered"
        ),
        60,
        "the replayed segment conditioned",
    )
    after = {d["ref"]: d for d in run.get("api/deadletters")["letters"]}
    assert after[letter["ref"]]["replayed"]


def test_paused_steps_and_retractions_show_in_the_view(run: Run):
    svc = run.services
    result = svc.cli("step", "pause", "gb-search", "--reason", "maintenance window")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: "gb-search" in run.get("api/overview")["paused"], 30, "gb-search paused")
    overview = run.get("api/overview")
    assert overview["paused"]["gb-search"]["reason"] == "maintenance window"
    (node,) = [n for n in overview["graph"]["nodes"] if n["id"] == "service:gb-search"]
    assert node["paused"] is True
    assert not any(n.get("paused") for n in overview["graph"]["nodes"] if n is not node)
    page = dom(run.url)
    assert 'data-step="gb-search"' in page  # the badge on the service's node
    assert "gb-search paused" in page

    # a catalogued segment, and one the pipeline never saw, retracted
    target, unseen = run.catalogued[1], "0123456789abcdef-09999"
    result = svc.cli("retract", target, unseen, "--reason", "bad calibration")
    assert result.returncode == 0, result.stderr

    def retracted() -> dict[str, dict]:
        listing = run.get("api/flows?status=retracted")["flows"]
        return {f["segment_id"]: f for f in listing}

    found = wait_until(lambda: {target, unseen} <= retracted().keys() and retracted(), 30, "both")
    assert found[target]["status"] == "retracted"  # catalogued, then withdrawn
    assert found[unseen]["status"] == "retracted"
    assert found[target]["retraction"]["reason"] == "bad calibration"
    assert run.get("api/overview")["counts"]["total"]["retracted"] == 2
    page = dom(f"{run.url}?segment={target}")
    assert 'id="retraction"' in page
    assert "bad calibration" in page

    result = svc.cli("step", "resume", "gb-search")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: not run.get("api/overview")["paused"], 30, "gb-search running again")
    assert 'data-step="gb-search"' not in dom(run.url)
