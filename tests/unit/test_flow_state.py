"""The flow monitor's pure model (``lisa_services.flows.state``), driven by an injected clock: no
broker, no sleep. Records are made as the services make them (CloudEvents headers) and read
through ``lisa_pipeline.flowmodel.hop_of``, the monitor's own path."""

from __future__ import annotations

from choreo import Envelope, codec
from lisa_pipeline.events import (
    FlowDeadLettered,
    FlowRecovered,
    FlowRetraction,
    FlowSnapshot,
    FlowStuck,
)
from lisa_pipeline.flowmodel import FINAL, Hop, hop_of
from lisa_pipeline.stages import STAGES, Stage
from lisa_pipeline.topics import (
    CANDIDATES_GB,
    CATALOG,
    SEGMENTS_CONDITIONED,
    SEGMENTS_RAW,
    SOURCES_ESTIMATES,
)
from lisa_services.flows.settings import FlowsSettings
from lisa_services.flows.state import FlowModel, counts, summary, timeline
from lisa_services.flows.traffic import Traffic

DEADLINE_S = 5.0
TRACE = "0af7651916cd43dd8448eb211c80319c"
PRODUCER = {
    SEGMENTS_RAW: "ingest",
    SEGMENTS_CONDITIONED: "condition",
    CANDIDATES_GB: "gb-search",
    SOURCES_ESTIMATES: "estimate",
    CATALOG: "catalog",
}


def deadline(_: Stage) -> float:
    return DEADLINE_S


def record(
    topic: str,
    segment: str,
    t_ms: int,
    *,
    partition: int = 0,
    offset: int = 0,
    subject: str | None = None,
    source: str | None = None,
    event_id: str | None = None,
    extra: dict[str, str] | None = None,
) -> Hop:
    """A hop as the monitor reads it from a record the pipeline wrote."""
    headers = {
        "ce_specversion": "1.0",
        "ce_id": event_id or f"{segment}/{topic}",
        "ce_type": "x.v1",
        "ce_source": source or PRODUCER.get(topic, "?"),
        "ce_subject": subject or segment,
        "ce_correlationid": f"{segment}/{SEGMENTS_RAW}",
        "traceparent": f"00-{TRACE}-b7ad6b7169203331-01",
        **(extra or {}),
    }
    hop = hop_of(topic, partition, offset, t_ms, headers)
    assert hop is not None
    return hop


def dead_letter(topic: str, segment: str, t_ms: int, reason: str, offset: int = 0) -> Hop:
    service = next(s.service for s in STAGES if s.consumes == topic)
    return record(
        f"{topic}.dlq",
        segment,
        t_ms,
        offset=offset,
        source=PRODUCER[topic],  # the original record's headers are untouched
        event_id=f"{segment}/{topic}",
        extra={
            "dlq_reason": reason,
            "dlq_service": service,
            "dlq_error_type": "PermanentError",
            "dlq_error_message": "no such file",
            "dlq_topic": topic,
            "dlq_partition": "0",
            "dlq_offset": str(offset),
        },
    )


def model(started_ms: int = 0) -> FlowModel:
    return FlowModel(deadline, started_ms=started_ms)


def test_stages_are_reached_in_order_with_their_times_and_services():
    m = model()
    for i, topic in enumerate((SEGMENTS_RAW, SEGMENTS_CONDITIONED, CANDIDATES_GB)):
        assert m.observe(record(topic, "s1", 1000 + 100 * i)) == []
    flow = m.flows["s1"]
    assert [(k, v.at_ms, v.service) for k, v in flow.marks.items()] == [
        ("raw", 1000, "ingest"),
        ("conditioned", 1100, "condition"),
        ("searched", 1200, "gb-search"),
    ]
    assert flow.status == "waiting"
    assert flow.next_stage.service == "estimate"
    assert flow.trace_id == TRACE
    c = counts(m)
    assert c["stages"]["searched"] == {"reached": 1, "at": 1, "stuck": 0, "dead": 0}
    assert c["total"]["in_flight"] == 1
    s = summary(flow, 1500)
    assert s["waiting_for"] == "estimate"
    assert s["waiting"]["topic"] == CANDIDATES_GB
    assert s["waiting"]["waited_s"] == 0.3


def test_a_redelivered_duplicate_and_out_of_order_records_change_nothing():
    m = model()
    m.observe(record(SEGMENTS_CONDITIONED, "s1", 1100))  # read before its raw record
    m.observe(record(SEGMENTS_RAW, "s1", 1000))
    m.observe(record(SEGMENTS_CONDITIONED, "s1", 1900, offset=7))  # a redelivered copy
    flow = m.flows["s1"]
    assert flow.furthest.reached == "conditioned"
    assert flow.marks["conditioned"].at_ms == 1100
    assert flow.waiting().offset == 0


def test_stuck_after_the_deadline_once_with_an_injected_clock():
    m = model()
    m.observe(record(SEGMENTS_RAW, "s1", 1000))
    m.observe(record(SEGMENTS_CONDITIONED, "s1", 2000, partition=3, offset=41))
    assert m.check(2000 + 5000) == []  # exactly the deadline: not yet
    alerts = m.check(2000 + 5001)
    assert [a.kind for a in alerts] == ["stuck"]
    body = alerts[0].body
    assert isinstance(body, FlowStuck)
    assert (body.segment_id, body.stage, body.service, body.reached) == (
        "s1",
        "searched",
        "gb-search",
        "conditioned",
    )
    assert (body.topic, body.partition, body.offset) == (SEGMENTS_CONDITIONED, 3, 41)
    assert body.waited_s == 5.001
    assert body.deadline_s == DEADLINE_S
    assert alerts[0].correlation_id == f"s1/{SEGMENTS_RAW}"
    assert m.flows["s1"].status == "stuck"
    assert m.check(60_000) == []  # never twice
    assert counts(m)["stages"]["conditioned"]["stuck"] == 1


def test_a_partition_that_makes_progress_is_a_backlog_not_a_stuck_flow():
    """30 s behind with a 5 s deadline, but the consumer takes a record every second."""
    m = model()
    m.observe(record(SEGMENTS_CONDITIONED, "late", 0, partition=1, offset=30))

    def stuck_at_conditioned(now_ms: int) -> list[str]:
        return [a.segment_id for a in m.check(now_ms) if a.body.stage == "searched"]

    for i in range(30):
        seg = f"b{i}"
        m.observe(record(SEGMENTS_CONDITIONED, seg, 0, partition=1, offset=i))
        m.observe(record(CANDIDATES_GB, seg, 1000 * (i + 1), partition=1, offset=i))
        assert stuck_at_conditioned(1000 * (i + 1) + 500) == []
    # gb-search stops: the waiting segment is stuck a deadline after its partition's last move
    assert stuck_at_conditioned(30_000 + 5000) == []
    assert stuck_at_conditioned(30_000 + 5001) == ["late"]


def test_committed_offsets_are_progress_too():
    m = model()
    m.observe(record(SEGMENTS_RAW, "s1", 0, partition=2, offset=9))
    m.consumer_committed(SEGMENTS_RAW, 2, 5, 1000)  # first look: a baseline, not progress
    assert m.check(5001) != []
    m2 = model()
    m2.observe(record(SEGMENTS_RAW, "s1", 0, partition=2, offset=9))
    m2.consumer_committed(SEGMENTS_RAW, 2, 5, 1000)
    m2.consumer_committed(SEGMENTS_RAW, 2, 7, 3000)  # moved: the partition is alive
    assert m2.check(5001) == []
    assert [a.kind for a in m2.check(8001)] == ["stuck"]


def test_recovered_when_a_stuck_flow_moves_again():
    m = model()
    m.observe(record(SEGMENTS_RAW, "s1", 1000))
    m.observe(record(SEGMENTS_CONDITIONED, "s1", 2000))
    (stuck,) = m.check(9000)
    (recovered,) = m.observe(record(CANDIDATES_GB, "s1", 12_000))
    body = recovered.body
    assert isinstance(body, FlowRecovered)
    assert body.stuck_alert_id == stuck.id
    assert (body.stage, body.service, body.stuck_for_s) == ("searched", "gb-search", 10.0)
    assert recovered.causation_id == stuck.id
    assert m.flows["s1"].stuck is None
    assert m.flows["s1"].status == "waiting"
    assert m.observe(record(CANDIDATES_GB, "s1", 12_500, offset=3)) == []  # a copy: no 2nd
    # stuck again further down: another alert, with another id
    (again,) = m.check(12_000 + 5001)
    assert again.kind == "stuck"
    assert again.id != stuck.id
    assert again.body.stage == "estimated"


def test_dead_lettered_once_then_replayed_and_through():
    m = model()
    m.observe(record(SEGMENTS_RAW, "s1", 1000, offset=4))
    (dead,) = m.observe(dead_letter(SEGMENTS_RAW, "s1", 1500, "store-missing", offset=0))
    body = dead.body
    assert isinstance(body, FlowDeadLettered)
    assert (body.stage, body.service, body.reason) == ("conditioned", "condition", "store-missing")
    assert body.dead_letter == f"{SEGMENTS_RAW}.dlq/0/0"
    assert body.error == "PermanentError: no such file"
    flow = m.flows["s1"]
    assert flow.status == "dead-lettered"
    assert flow.waiting() is None
    assert m.check(60_000) == []  # a dead flow is not stuck
    assert m.observe(dead_letter(SEGMENTS_RAW, "s1", 1500, "store-missing", offset=0)) == []
    assert counts(m)["stages"]["conditioned"]["dead"] == 1
    # the letter replayed: back on the raw topic with lisa_replay_of, waiting for condition again
    replayed = record(
        SEGMENTS_RAW, "s1", 70_000, offset=5, extra={"lisa_replay_of": body.dead_letter}
    )
    assert m.observe(replayed) == []
    assert flow.status == "waiting"
    assert flow.waiting().offset == 5
    assert flow.waiting().since_ms == 70_000
    # reading the old letter again (a restart) does not kill the flow again
    assert m.observe(dead_letter(SEGMENTS_RAW, "s1", 1500, "store-missing", offset=0)) == []
    m.observe(record(SEGMENTS_CONDITIONED, "s1", 70_500))
    assert flow.furthest.reached == "conditioned"
    assert flow.death is None


def test_stuck_then_dead_lettered_ends_the_stuck_mark_without_a_recovery():
    m = model()
    m.observe(record(SEGMENTS_RAW, "s1", 0))
    assert [a.kind for a in m.check(6000)] == ["stuck"]
    alerts = m.observe(dead_letter(SEGMENTS_RAW, "s1", 20_000, "transient-exhausted"))
    assert [a.kind for a in alerts] == ["deadlettered"]
    assert m.flows["s1"].stuck is None


def test_the_last_stage_is_reached_by_the_catalogues_commit_or_its_record():
    m = model()
    for i, topic in enumerate((SEGMENTS_RAW, SEGMENTS_CONDITIONED, CANDIDATES_GB)):
        m.observe(record(topic, "s1", 1000 * i))
        m.observe(record(topic, "s2", 1000 * i))
    m.observe(record(SOURCES_ESTIMATES, "s1", 3000, partition=1, offset=10))
    m.observe(record(SOURCES_ESTIMATES, "s2", 3000, partition=1, offset=11))
    m.consumer_committed(SOURCES_ESTIMATES, 1, 10, 3100)  # baseline: s1 not taken yet
    assert not m.flows["s1"].catalogued
    m.consumer_committed(SOURCES_ESTIMATES, 1, 11, 3500)
    mark = m.flows["s1"].marks["catalogued"]
    assert (mark.via, mark.at_ms, mark.service) == ("commit", 3500, FINAL.service)
    assert m.flows["s1"].status == "catalogued"
    # s2: a catalogue update it caused (keyed by source id, correlated with its raw event)
    m.observe(record(CATALOG, "s2", 3300, subject="gb-0001", event_id="cat-1"))
    assert m.flows["s2"].marks["catalogued"].via == "record"
    assert "gb-0001" not in m.flows
    assert counts(m)["total"]["catalogued"] == 2
    assert m.check(600_000) == []


def test_no_double_alert_after_a_restart_from_the_persisted_state():
    m = model()
    m.observe(record(SEGMENTS_RAW, "s1", 0))
    m.observe(record(SEGMENTS_RAW, "s2", 0, offset=1))
    before_alert, _ = m.take_dirty()
    (stuck_s1, stuck_s2) = m.check(6000)
    snaps, removed = m.take_dirty()
    assert {s.segment_id for s in snaps} == {"s1", "s2"}
    assert removed == []
    # the snapshots travel as CloudEvents on the compacted topic: a round trip
    decoded = []
    for snap in snaps:
        env = Envelope.root(snap, source="flows", subject=snap.segment_id)
        key, value, headers = codec.encode(env)
        decoded.append(codec.decode(key, value, headers, {FlowSnapshot.ce_type: FlowSnapshot}).data)
    assert decoded == snaps

    # restart 1: the state holds the marks; nothing is raised again, even long after
    restarted = model(started_ms=100_000)
    restarted.load(decoded)
    assert restarted.flows["s1"].status == "stuck"
    assert restarted.check(1_000_000) == []
    # and a move is still answered with the recovery of the persisted alert
    (rec,) = restarted.observe(record(SEGMENTS_CONDITIONED, "s1", 1_000_100))
    assert rec.body.stuck_alert_id == stuck_s1.id

    # restart 2: a crash after the alerts were sent but before the state was written: the
    # state has no mark, the alerts topic has the ids; the marks are set, nothing is sent
    crashed = model(started_ms=100_000)
    crashed.load(before_alert, emitted={stuck_s1.id, stuck_s2.id})
    assert crashed.check(1_000_000) == []
    assert crashed.flows["s1"].stuck.alert_id == stuck_s1.id


def test_after_a_restart_no_flow_is_stuck_before_a_deadline_of_uptime():
    m = model(started_ms=50_000)
    m.observe(record(SEGMENTS_RAW, "old", 0))  # waiting since long before the restart
    assert m.check(50_000 + 5000) == []
    assert [a.segment_id for a in m.check(50_000 + 5001)] == ["old"]


def test_alert_ids_are_deterministic():
    def run() -> list[str]:
        m = model()
        m.observe(record(SEGMENTS_RAW, "s1", 0))
        ids = [a.id for a in m.check(6000)]
        ids += [a.id for a in m.observe(dead_letter(SEGMENTS_RAW, "s1", 7000, "x"))]
        return ids

    assert run() == run()


def test_ended_flows_are_forgotten_after_the_retention():
    m = model()
    m.observe(record(SEGMENTS_RAW, "s1", 0))
    m.observe(dead_letter(SEGMENTS_RAW, "s1", 1000, "x"))
    m.observe(record(SEGMENTS_RAW, "s2", 0, offset=1))
    m.take_dirty()
    m.prune(10_000, retain_ms=5000)
    assert set(m.flows) == {"s2"}  # s2 is still waiting: never forgotten
    assert m.take_dirty() == ([], ["s1"])


def test_timeline_estimates_queue_waits_from_the_services_other_outputs():
    m = model()
    # s0 keeps condition busy until 1800; s1 arrived at 1000 and was conditioned at 2100
    m.observe(record(SEGMENTS_RAW, "s0", 900))
    m.observe(record(SEGMENTS_CONDITIONED, "s0", 1800))
    m.observe(record(SEGMENTS_RAW, "s1", 1000, offset=1))
    m.observe(record(SEGMENTS_CONDITIONED, "s1", 2100, offset=1))
    rows = timeline(m.flows["s1"], m.flows.values())
    assert [r["stage"] for r in rows] == ["raw", "conditioned"]
    assert rows[1]["hop_ms"] == 1100
    assert rows[1]["queue_wait_ms"] == 800
    assert rows[1]["wait_source"] == "estimate"
    spans = timeline(m.flows["s1"], m.flows.values(), {"condition": 750.0})
    assert spans[1]["queue_wait_ms"] == 750.0
    assert spans[1]["wait_source"] == "span"


def test_deadlines_per_stage_or_service():
    settings = FlowsSettings(deadline_s=30, deadlines={"searched": 7, "estimate": 9})
    by_label = {s.reached: settings.deadline_for(s) for s in STAGES}
    assert by_label == {
        "raw": 30,
        "conditioned": 30,
        "searched": 7,
        "estimated": 9,
        "catalogued": 30,
    }


def test_traffic_counts_rates_lag_and_the_oldest_waiting_record():
    t = Traffic([SEGMENTS_RAW], window_s=60)
    for i in range(6):
        t.record(SEGMENTS_RAW, 0, i, 1000 * i, "ingest")
    # end 7: offset 6 is a transaction marker; the monitor read past it (position 7)
    t.offsets(SEGMENTS_RAW, {0: 2}, {0: 7}, {0: 7}, now_ms=10_000)
    lag = t.lag(SEGMENTS_RAW, 10_000)
    assert lag == {"lag": 4, "oldest_s": 8.0}  # offsets 2..5, the oldest appended at 2 s
    assert t.produced_rate(SEGMENTS_RAW, 10_000) == 6 / 60
    assert t.produced_rate(SEGMENTS_RAW, 10_000, "condition") == 0
    t.offsets(SEGMENTS_RAW, {0: 6}, {0: 7}, {0: 7}, now_ms=12_000)
    assert t.lag(SEGMENTS_RAW, 12_000) == {"lag": 0, "oldest_s": None}
    assert t.consumed_rate(SEGMENTS_RAW) == 2.0  # 4 records in 2 s
    assert t.produced_rate(SEGMENTS_RAW, 70_500) == 0  # out of the window


def test_a_retraction_before_its_segment_then_the_segment_through_the_chain():
    m = model()
    retraction = FlowRetraction(reason="bad day", requested_by="op@host", at_ms=500)
    assert m.retract("s1", retraction) is True
    assert m.retract("s1", retraction.model_copy(update={"reason": "again"})) is False
    flow = m.flows["s1"]
    assert (flow.status, flow.finished, flow.retraction.reason) == ("retracted", True, "bad day")
    assert m.check(600_000) == []  # nothing to wait for: never stuck
    for i, topic in enumerate((SEGMENTS_RAW, SEGMENTS_CONDITIONED)):
        m.observe(record(topic, "s1", 1000 + 100 * i))
    flow = m.flows["s1"]
    assert flow.correlation_id == f"s1/{SEGMENTS_RAW}"  # learnt from its first record
    assert (flow.status, flow.finished) == ("waiting", False)  # moving: its moving status
    assert summary(flow, 1200)["retraction"]["reason"] == "bad day"
    for topic in (CANDIDATES_GB, SOURCES_ESTIMATES):
        m.observe(record(topic, "s1", 1300))
    m.observe(record(CATALOG, "s1", 1400, subject="gb-0001", event_id="cat-1"))
    assert m.flows["s1"].status == "retracted"
    assert counts(m)["total"]["retracted"] == 1
    snaps, _ = m.take_dirty()
    restored = model()
    restored.load(snaps)
    assert restored.flows["s1"].retraction == retraction
    assert restored.flows["s1"].status == "retracted"
