"""Two toy steps in separate processes, chained over real Kafka topics."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from choreo import Envelope, codec
from choreo.publisher import Publisher, make_producer
from choreo.settings import KafkaSettings
from lisa_choreo import traceview
from tests.conftest import Services, read_all, wait_until
from tests.toy.events import DESCRIPTIONS, NUMBERS, Description, Number

pytestmark = pytest.mark.kafka


@pytest.fixture
def chain(prefixed: KafkaSettings, services: Services):
    """Topics for this test, and a factory of toy step processes bound to them."""
    return prefixed, services.start, services.spans


def publish_numbers(settings: KafkaSettings, values: range) -> list[Envelope]:
    envelopes = [Envelope.root(Number(value=v), source="test", subject=f"n{v}") for v in values]

    async def send():
        producer = make_producer(settings, "test")
        await producer.start()
        try:
            await Publisher(producer, settings).publish([(NUMBERS, e) for e in envelopes])
        finally:
            await producer.stop()

    asyncio.run(send())
    return envelopes


def descriptions(settings: KafkaSettings) -> list[Envelope]:
    return [
        codec.decode(r.key, r.value, r.headers, {Description.ce_type: Description})
        for r in read_all(settings, DESCRIPTIONS)
    ]


def test_chain_end_to_end_with_one_trace_per_input(chain):
    settings, start, spans_path = chain
    start("toy-square")
    start("toy-describe")
    inputs = publish_numbers(settings, range(20))
    outputs = wait_until(
        lambda: (d := descriptions(settings)) and len(d) >= 20 and d, 60, "20 descriptions"
    )
    assert sorted(o.data.value for o in outputs) == list(range(20))
    by_root = {o.correlation_id: o for o in outputs}
    for env in inputs:
        out = by_root[env.id]  # lineage: each output names the input it descends from
        assert out.data.text == f"{env.data.value}² = {env.data.value**2}"
        assert out.subject == env.subject

    def complete_traces():
        traces = traceview.by_trace(traceview.read_jsonl(spans_path))
        return [
            t
            for t in traces.values()
            if {s["name"] for s in t}
            >= {f"process {settings.topic(NUMBERS)}", f"process {settings.topic('toy.squares')}"}
        ]

    traces = wait_until(
        lambda: len(complete_traces()) >= 20 and complete_traces(),
        30,
        "spans of both steps in 20 traces",
    )
    for spans in traces:
        by_name = {s["name"]: s for s in spans}
        square = by_name[f"process {settings.topic(NUMBERS)}"]
        describe = by_name[f"process {settings.topic('toy.squares')}"]
        assert (square["service"], describe["service"]) == ("toy-square", "toy-describe")
        # describe's consumer span descends from square's producer span: one causal chain
        send = by_name[f"send {settings.topic('toy.squares')}"]
        assert send["parent_id"] == square["span_id"]
        assert describe["parent_id"] == send["span_id"]
        assert describe["attributes"]["lisa.queue_wait_ms"] >= 0


def test_malformed_inputs_are_dead_lettered_and_the_step_goes_on(chain):
    settings, start, _ = chain
    square = start("toy-square")

    async def send_bad():
        producer = make_producer(settings, "test-bad")
        await producer.start()
        good = Envelope.root(Number(value=7), source="test", subject="good")
        key, value, headers = codec.encode(good)
        bad_schema = codec.encode(Envelope.root(Number(value=1), source="t", subject="bad"))
        topic = settings.topic(NUMBERS)
        await producer.send_and_wait(topic, b"{{not json", key=b"k1", headers=headers)
        await producer.send_and_wait(topic, b'{"value": "x"}', key=b"k2", headers=bad_schema[2])
        await producer.send_and_wait(topic, value, key=key, headers=headers)
        await producer.stop()

    asyncio.run(send_bad())
    squares = wait_until(lambda: read_all(settings, "toy.squares"), 60, "the good square")
    assert [json.loads(r.value)["square"] for r in squares] == [49]
    dead = wait_until(
        lambda: (d := read_all(settings, NUMBERS + ".dlq")) and len(d) >= 2 and d,
        60,
        "two dead letters",
    )
    reasons = sorted(dict(r.headers)["dlq_reason"].decode() for r in dead)
    assert reasons == ["invalid-json", "schema-invalid"]
    first = next(r for r in dead if r.key == b"k1")
    assert first.value == b"{{not json"  # the original bytes, untouched
    h = {k: v.decode() for k, v in first.headers}
    assert h["dlq_service"] == "toy-square"
    assert h["dlq_topic"] == NUMBERS
    assert h["dlq_partition"].isdigit()
    assert h["dlq_offset"].isdigit()
    assert square.alive


def test_sigterm_mid_stream_then_restart_loses_and_duplicates_nothing(chain):
    settings, start, _ = chain
    slow = {"LISA_TOY_DELAY_S": "0.05", "LISA_STEP_MAX_BATCH": "5"}
    square = start("toy-square", **slow)
    start("toy-describe")
    n = 200
    publish_numbers(settings, range(n))
    wait_until(lambda: len(descriptions(settings)) >= 30, 60, "30 results before stopping")
    assert square.terminate() == 0  # drained the batch in hand, committed, exited cleanly
    partial = len(descriptions(settings))
    assert 30 <= partial < n, "SIGTERM should have landed mid-stream"
    start("toy-square", **slow)
    outputs = wait_until(
        lambda: (d := descriptions(settings)) and len(d) >= n and d, 120, f"{n} results"
    )
    assert len(read_all(settings, "toy.squares")) == n  # no duplicate in the middle either
    values = [o.data.value for o in outputs]
    assert len(values) == n, f"{len(values) - len(set(values))} duplicates"
    assert sorted(values) == list(range(n))
    assert len({o.id for o in outputs}) == n


def test_metrics_are_served_for_prometheus(chain):
    import socket
    import urllib.request

    settings, start, _ = chain
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start("toy-square", LISA_METRICS_PORT=str(port))
    publish_numbers(settings, range(7))
    publish_bad = codec.encode(Envelope.root(Number(value=1), source="t", subject="bad"))

    async def send_bad():
        producer = make_producer(settings, "test-bad")
        await producer.start()
        await producer.send_and_wait(settings.topic(NUMBERS), b"nope", headers=publish_bad[2])
        await producer.stop()

    asyncio.run(send_bad())

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def sample(text: str, name: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{")
        )

    text = wait_until(
        lambda: (t := scrape()) and sample(t, "lisa_events_consumed_total") >= 8 and t,
        30,
        "8 consumed events in the metrics",
    )
    assert sample(text, "lisa_events_produced_total") == 7
    assert sample(text, "lisa_events_failed_total") == 1
    assert 'reason="invalid-json"' in text
    assert sample(text, "lisa_processing_duration_seconds_count") == 7
    assert "lisa_consumer_lag" in text


def committed_inputs(settings: KafkaSettings, step: str, topic: str) -> int:
    """Inputs of ``topic`` that ``step``'s group has committed (the topics start at offset 0)."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def read() -> int:
        admin = AIOKafkaAdminClient(**settings.client_options())
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(settings.topic(step))
        finally:
            await admin.close()
        return sum(
            meta.offset
            for tp, meta in offsets.items()
            if tp.topic == settings.topic(topic) and meta.offset > 0
        )

    return asyncio.run(read())


# An hour: within a test, only going idle, stopping or a hand-over commits.
NEVER_BY_INTERVAL = {"LISA_STEP_COMMIT_INTERVAL_MS": "3600000"}


def test_coalesced_commits_are_made_when_the_step_goes_idle(chain):
    settings, start, _ = chain
    start("toy-square", **NEVER_BY_INTERVAL)
    publish_numbers(settings, range(20))
    wait_until(lambda: len(read_all(settings, "toy.squares")) >= 20, 60, "20 squares")
    wait_until(
        lambda: committed_inputs(settings, "toy-square", NUMBERS) == 20,
        60,
        "the 20 inputs committed once no more came",
    )


def test_coalesced_commits_are_made_on_sigterm_and_a_kill_replays_the_uncommitted_as_repeats(
    chain,
):
    settings, start, _ = chain
    # nor by going idle: getmany waits an hour for records, so nothing commits until asked (and
    # readiness, set after the first fetch returns, is not waited for: the outputs are)
    held = {**NEVER_BY_INTERVAL, "LISA_STEP_POLL_TIMEOUT_MS": "3600000"}
    square = start("toy-square", wait=False, **held)
    publish_numbers(settings, range(10))
    first = wait_until(
        lambda: (r := read_all(settings, "toy.squares")) and len(r) >= 10 and r, 60, "10 squares"
    )
    assert committed_inputs(settings, "toy-square", NUMBERS) == 0  # acknowledged, not committed
    square.kill()  # SIGKILL: the acknowledged inputs are replayed, their outputs repeated
    square = start("toy-square", wait=False, **held)
    again = wait_until(
        lambda: (r := read_all(settings, "toy.squares")) and len(r) >= 20 and r, 60, "10 repeats"
    )
    ids = Counter(dict(r.headers)["ce_id"] for r in again)
    # the replayed inputs produced the same output ids: repeats, not new facts
    assert ids == {dict(r.headers)["ce_id"]: 2 for r in first}
    assert square.terminate() == 0  # SIGTERM: what settled is committed before leaving
    assert committed_inputs(settings, "toy-square", NUMBERS) == 10
