"""No input can stop a step: hostile records, references and produce refusals end in classified
dead letters (no broker; the runtime's own record path through the in-memory harness)."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from aiokafka.errors import KafkaConnectionError, RecordTooLargeError

from choreo import Consumes, Emit, Envelope, Event, Produces, Step, codec
from choreo.deadletter import DeadLetters
from choreo.processing import InputRecord, RecordProcessor
from choreo.publisher import Publisher
from choreo.settings import KafkaSettings, StepSettings
from choreo.testing import MemoryProducer, StepHarness

IN, OUT = "trust.in", "trust.out"


class Text(Event):
    ce_type: ClassVar[str] = "trust.text.v1"
    text: str


def echo_step(times: int = 1) -> Step:
    step = Step("echo", consumes=[Consumes(IN, Text)], produces=[Produces(OUT, Text)])
    step.handler(lambda e: [Emit(OUT, Text(text=e.data.text * times))])
    return step


def record(text: str) -> tuple[bytes | None, bytes, list]:
    return codec.encode(Envelope.root(Text(text=text), source="t", subject="s", key="k"))


def test_hostile_bodies_become_decode_dead_letters_and_the_next_input_goes_through() -> None:
    harness = StepHarness(echo_step())
    key, _, headers = record("x")
    hostile = {
        b'{"text": "a", "n": ' + b"9" * 5000 + b"}": "number-too-long",
        b"[" * 50_000 + b"]" * 50_000: "too-deep",
        b'{"text": ' + b"[" * 3000 + b"]" * 3000 + b"}": "too-deep",
        b'{"text": 1e' + b"9" * 80 + b"}": "number-too-long",
    }
    for body, reason in hostile.items():
        result = harness.deliver_raw(IN, key, body, headers)
        assert [d.reason for d in result.dead_letters] == [reason]
        assert result.dead_letters[0].record.value == body  # untouched, for replay
    assert harness.deliver_raw(IN, *record("fine")).events(OUT)[0].data.text == "fine"


def test_oversized_or_too_many_headers_are_refused() -> None:
    harness = StepHarness(echo_step())
    key, value, headers = record("x")
    cases = [
        [*headers, ("x-big", b"a" * 10000)],
        headers + [(f"h{i}", b"v") for i in range(100)],
        [*headers, ("n" * 300, b"v")],
        [(k, v if k != "ce_id" else b"i" * 5000) for k, v in headers],
    ]
    reasons = [harness.deliver_raw(IN, key, value, h).dead_letters[0].reason for h in cases]
    assert reasons == ["oversized-headers"] * 3 + ["invalid-header"]


def test_an_output_over_the_broker_limit_dead_letters_its_input_before_any_send() -> None:
    settings = StepSettings(retry_backoff_s=0.001)
    harness = StepHarness(echo_step(times=400_000), settings)  # 1 char -> 400 kB, x3 below
    result = harness.deliver_raw(IN, *record("abc"))
    assert result.outputs == []
    assert [d.reason for d in result.dead_letters] == ["output-too-large"]


def test_a_broker_refusal_of_an_output_dead_letters_the_input_other_errors_replay() -> None:
    """``settle``: RecordTooLarge from the broker is for good; a lost connection is not."""
    kafka = KafkaSettings(topic_prefix="")
    processor = RecordProcessor(echo_step(), kafka, StepSettings())

    async def settle_with(error: BaseException) -> tuple[list, BaseException | None]:
        producer = MemoryProducer()
        publisher = Publisher(producer, kafka)  # type: ignore[arg-type]
        failed: asyncio.Future = asyncio.get_running_loop().create_future()
        failed.set_exception(error)
        ok: asyncio.Future = asyncio.get_running_loop().create_future()
        ok.set_result(None)
        key, value, headers = record("x")
        inputs = [InputRecord(IN, key, value, headers, offset=i) for i in range(2)]
        try:
            await processor.settle(
                [(inputs[0], [ok]), (inputs[1], [ok, failed])],
                publisher,
                DeadLetters(publisher, "echo"),
            )
        except Exception as exc:
            return producer.sent, exc
        return producer.sent, None

    sent, raised = asyncio.run(settle_with(RecordTooLargeError()))
    assert raised is None
    [letter] = sent
    assert letter.topic == "trust.in.dlq"
    assert letter.header_map["dlq_reason"] == "output-refused"
    assert letter.header_map["dlq_offset"] == "1"  # the input whose output was refused
    sent, raised = asyncio.run(settle_with(KafkaConnectionError()))
    assert sent == []
    assert isinstance(raised, KafkaConnectionError)  # the runner rewinds and replays


def test_a_dead_letter_too_large_with_its_reason_keeps_the_account_and_drops_the_body() -> None:
    kafka = KafkaSettings(topic_prefix="", max_request_bytes=10_000)
    processor = RecordProcessor(echo_step(), kafka, StepSettings())
    key, _, headers = record("x")
    body = b"{" + b" " * 9_800 + b"}"  # not a Text: dead-lettered, and too big with the reason

    async def run() -> list:
        producer = MemoryProducer()
        publisher = Publisher(producer, kafka)  # type: ignore[arg-type]
        futures = await processor.process(
            InputRecord(IN, key, body, headers), publisher, DeadLetters(publisher, "echo")
        )
        await asyncio.gather(*futures)
        return producer.sent

    [letter] = asyncio.run(run())
    assert letter.value is None
    assert letter.header_map["dlq_reason"] == "schema-invalid"
    assert "dlq_value_dropped" in letter.header_map
