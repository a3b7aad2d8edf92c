"""The flow monitor against the real broker and real service processes.

condition, gb-search, estimate, catalog and flows run as processes on a private prefix, flows
with a 12 s deadline. Two days flow through: nothing is stuck. ``gb-search`` is then SIGSTOPped
mid-run and three more days are ingested: each waits at ``conditioned``, and a
``lisa.flow.stuck.v1`` for each appears one deadline after it started waiting (the measured
latencies go to ``artifacts/flows-monitor.json``); the view's API lists them as stuck. The
monitor is restarted while they are stuck: it shows them stuck again from its state and raises
nothing twice. SIGCONT: each gets a ``lisa.flow.recovered.v1``, the view clears, every segment
is catalogued. A last restart raises nothing either: every alert id is on the topic once.

On a secure stack of its own (``test_security``'s), the monitor runs as its principal with the
ACLs derived from its declaration: it reads a flow and its dead letter, raises its alert and
commits its positions; the view's replay is refused without the operator's credentials and done
with them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from choreo import Envelope, codec
from choreo.store import ArrayRef
from lisa_choreo.processes import ServiceProcess, free_port
from lisa_choreo.simfile import simulate
from lisa_pipeline.events import SegmentRaw, SegmentTiming
from lisa_pipeline.flowmodel import OBSERVED_TOPICS
from lisa_pipeline.topics import FLOWS_ALERTS, FLOWS_STATE, SEGMENTS_CONDITIONED, SEGMENTS_RAW
from tests.conftest import Services, read_all, wait_until
from tests.integration.fleet import DAY, ingest_files, split_days, start_steps
from tests.integration.test_security import SecureStack, _read, _run_env, secure  # noqa: F401

pytestmark = pytest.mark.kafka

# Long enough that the backlog gb-search leaves behind when it resumes never waits that long at
# estimate, even on a loaded machine (4 s did once under a load average of 12); short enough for
# a test.
DEADLINE_S = 12.0
FIGURES = Path(__file__).resolve().parents[2] / "artifacts" / "flows-monitor.json"


def get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.load(response)


def alerts(services: Services) -> list[tuple[str, str, str, dict, int]]:
    """(id, type, segment, body, record timestamp ms) of every record on the alerts topic."""
    out = []
    for r in read_all(services.settings, FLOWS_ALERTS):
        h = {k: v.decode() for k, v in r.headers}
        out.append((h["ce_id"], h["ce_type"], h["ce_subject"], json.loads(r.value), r.timestamp))
    return out


def of_type(services: Services, kind: str) -> dict[str, tuple]:
    return {a[2]: a for a in alerts(services) if a[1] == f"lisa.flow.{kind}.v1"}


def start_flows(services: Services, port: int):
    return services.start(
        "flows",
        LISA_FLOWS_DEADLINE_S=str(DEADLINE_S),
        LISA_FLOWS_HTTP_PORT=str(port),
        LISA_FLOWS_CHECK_INTERVAL_S="0.25",
        LISA_FLOWS_OFFSETS_INTERVAL_S="1",
    )


def test_a_stopped_step_gives_stuck_then_recovered_alerts_once_across_restarts(
    services: Services, tmp_path: Path
):
    settings = services.settings
    whole = simulate(tmp_path / "five.h5", 5 * DAY, 5.0, "analytic", "none", seed=11)
    days = split_days(whole, tmp_path / "days", 5, int(DAY / 5.0))
    start_steps(services)
    port = free_port()
    flows = start_flows(services, port)
    assert get(port, "/api/overview")["ready"]

    first = ingest_files(settings, services.store_uri, days[:2])

    def catalogued() -> set[str]:
        listing = get(port, "/api/flows?status=catalogued")
        return {f["segment_id"] for f in listing["flows"]}

    wait_until(lambda: catalogued() >= set(first), 120, "the first two days catalogued")
    assert alerts(services) == []  # a healthy run raises nothing
    overview = get(port, "/api/overview")
    assert overview["counts"]["total"]["catalogued"] == 2
    assert overview["stuck"] == []

    gb_search = next(p for p in services.started if p.name == "gb-search")
    os.kill(gb_search.proc.pid, signal.SIGSTOP)
    try:
        stopped = time.time()
        second = ingest_files(settings, services.store_uri, days[2:])
        stuck = wait_until(
            lambda: (s := of_type(services, "stuck")) and set(s) >= set(second) and s,
            DEADLINE_S + 60,
            "a stuck alert for each segment waiting for gb-search",
        )
        assert set(stuck) == set(second)
        conditioned = {
            dict(r.headers)["ce_subject"].decode(): r.timestamp
            for r in read_all(settings, SEGMENTS_CONDITIONED)
        }
        latencies = []
        for segment, (_, _, _, body, alert_ms) in stuck.items():
            assert body["stage"] == "searched"
            assert body["service"] == "gb-search"
            assert body["reached"] == "conditioned"
            assert body["topic"] == SEGMENTS_CONDITIONED
            assert body["deadline_s"] == DEADLINE_S
            waiting_since = conditioned[segment]  # the partition made no progress since
            latency_s = (alert_ms - waiting_since) / 1000
            # never before its deadline; how soon after is a measurement (artifacts), not a
            # test: the machine is shared
            assert latency_s >= DEADLINE_S, (segment, latency_s)
            latencies.append(latency_s)

        overview = wait_until(
            lambda: (o := get(port, "/api/overview")) and len(o["stuck"]) == 3 and o,
            10,
            "the view listing the stuck flows",
        )
        assert {f["segment_id"] for f in overview["stuck"]} == set(second)
        edge = next(
            e
            for e in overview["graph"]["edges"]
            if e["kind"] == "consume" and e["to"] == "service:gb-search"
        )
        assert edge["stuck"] == 3
        assert edge["lag"] >= 3
        assert edge["oldest_s"] >= DEADLINE_S
        assert overview["counts"]["stages"]["conditioned"]["stuck"] == 3
        one = get(port, f"/api/segments/{second[0]}")
        assert one["flow"]["status"] == "stuck"
        assert one["flow"]["stuck"]["service"] == "gb-search"
        assert [r["stage"] for r in one["timeline"]] == ["raw", "conditioned"]

        # restarted while they are stuck: shown stuck from its state, nothing raised twice
        assert flows.terminate() == 0
        flows = start_flows(services, port)
        again = get(port, "/api/overview")
        assert {f["segment_id"] for f in again["stuck"]} == set(second)
        time.sleep(DEADLINE_S + 2)  # past a deadline of the new process's uptime
        assert len(of_type(services, "stuck")) == 3
        assert len(alerts(services)) == 3
    finally:
        os.kill(gb_search.proc.pid, signal.SIGCONT)
    resumed = time.time()

    recovered = wait_until(
        lambda: (r := of_type(services, "recovered")) and set(r) >= set(second) and r,
        120,
        "a recovered alert for each stuck segment",
    )
    stuck_ids = {segment: a[0] for segment, a in of_type(services, "stuck").items()}
    moved_on = {"searched", "estimated", "catalogued"}
    for segment, (_, _, _, body, _) in recovered.items():
        assert body["stuck_alert_id"] == stuck_ids[segment]
        # the stage it was seen at once moving: searched, or further when the monitor read
        # gb-search's and estimate's outputs in one batch (a loaded machine)
        assert body["stage"] in moved_on, body
    wait_until(lambda: catalogued() >= set(first + second), 120, "every segment catalogued")
    overview = get(port, "/api/overview")
    assert overview["stuck"] == []
    assert overview["counts"]["total"]["stuck"] == 0
    assert overview["counts"]["total"]["catalogued"] == 5

    # a last restart: the state says everything; nothing is raised again
    assert flows.terminate() == 0
    flows = start_flows(services, port)
    assert get(port, "/api/overview")["counts"]["total"]["catalogued"] == 5
    time.sleep(DEADLINE_S + 2)
    final = alerts(services)
    ids = Counter(a[0] for a in final)
    assert all(n == 1 for n in ids.values()), ids
    kinds = Counter((a[2], a[1]) for a in final)
    assert kinds == Counter(
        {(s, f"lisa.flow.{k}.v1"): 1 for s in second for k in ("stuck", "recovered")}
    )

    # read-only on the pipeline: flows wrote nothing but its own two topics
    for topic in OBSERVED_TOPICS:
        assert not [r for r in read_all(settings, topic) if (b"ce_source", b"flows") in r.headers]
    assert read_all(settings, FLOWS_STATE)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(
        json.dumps(
            {
                "deadline_s": DEADLINE_S,
                "stuck_alert_after_waiting_s": sorted(round(x, 3) for x in latencies),
                "beyond_deadline_s": sorted(round(x - DEADLINE_S, 3) for x in latencies),
                "stopped_to_first_alert_s": round(
                    min(a[4] for a in stuck.values()) / 1000 - stopped, 3
                ),
                "resumed_to_last_recovery_s": round(
                    max(a[4] for a in recovered.values()) / 1000 - resumed, 3
                ),
            },
            indent=2,
        )
        + "\n"
    )


def replay(port: int, refs: list[str]) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/deadletters/replay",
        json.dumps({"refs": refs}).encode(),
        {"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_on_the_secure_stack_the_monitor_reads_as_its_principal_and_replays_as_the_operator(
    secure: SecureStack,  # noqa: F811
):
    workdir = secure.base / "flows-run"
    workdir.mkdir()
    port = free_port()
    env = {
        **_run_env(secure, workdir, "flows"),
        "LISA_FLOWS_HTTP_PORT": str(port),
        "LISA_FLOWS_DEADLINE_S": "2",
    }
    event = SegmentRaw(
        timing=SegmentTiming(segment_id="sec-1", t0=0.0, dt=5.0, n_samples=10),
        index=0,
        source_file="secure-test",
        source_sha256="0" * 64,
        overlap_s=0.0,
        data=ArrayRef(uri="file:///nowhere.h5", sha256="0" * 64, size_bytes=1, shapes={}),
        nan_fraction=0.0,
    )
    key, value, headers = codec.encode(Envelope.root(event, source="ingest", subject="sec-1"))

    async def send(principal: str, topic: str, extra: list) -> None:
        settings = secure.settings(principal)
        producer = AIOKafkaProducer(**settings.client_options(), enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topic(topic), value, key=key, headers=[*headers, *extra]
            )
        finally:
            await producer.stop()

    # each principal writes what it may: ingest the raw event, condition its dead letter
    asyncio.run(send("ingest", SEGMENTS_RAW, []))
    reason = [("dlq_reason", b"store-missing"), ("dlq_service", b"condition")]
    asyncio.run(send("condition", SEGMENTS_RAW + ".dlq", reason))
    proc = ServiceProcess("flows", workdir / "flows.log", env).start()
    try:
        proc.wait_ready(90)
        wait_until(
            lambda: get(port, "/api/flows?status=dead-lettered")["total"] == 1,
            30,
            "the dead-lettered flow, read as the flows principal",
        )
        alerts = wait_until(lambda: _read(secure, FLOWS_ALERTS), 30, "its alert, written")
        assert [dict(a.headers)["ce_type"] for a in alerts] == [b"lisa.flow.deadlettered.v1"]
        (letter,) = get(port, "/api/deadletters")["letters"]
        overview = get(port, "/api/overview")
        assert not overview["replay"]["enabled"]
        status, body = replay(port, [letter["ref"]])
        assert status == 403
        assert "operator" in body["error"]
    finally:
        assert proc.terminate() == 0  # its offsets committed in its own group
    operator = {
        "LISA_FLOWS_REPLAY_SASL_USERNAME": "operator",
        "LISA_FLOWS_REPLAY_SASL_PASSWORD_FILE": str(secure.files.password_file("operator")),
    }
    proc = ServiceProcess("flows", workdir / "flows-2.log", {**env, **operator}).start()
    try:
        proc.wait_ready(90)
        status, body = replay(port, [letter["ref"]])
        assert status == 200, body
        assert body["replayed"] == [letter["ref"]]
        assert body["as"] == "replay runs as operator"
        assert len(_read(secure, FLOWS_ALERTS)) == 1  # restarted: nothing raised twice
    finally:
        assert proc.terminate() == 0
    replayed = [r for r in _read(secure, SEGMENTS_RAW) if dict(r.headers).get("lisa_replay_of")]
    assert len(replayed) == 1
