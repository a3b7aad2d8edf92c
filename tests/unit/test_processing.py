"""The runner's per-record core (``choreo.processing``) and retries, without a broker.

Toy steps defined here go through ``choreo.testing.StepHarness``, i.e. through the same
``RecordProcessor`` the Kafka runner uses, with an in-memory producer behind the publisher.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import ClassVar

import pytest

from choreo import (
    Consumes,
    Emit,
    Envelope,
    Event,
    PermanentError,
    Produces,
    Step,
    TransientError,
    codec,
    derive_event_id,
)
from choreo.deadletter import DLQ_HEADER_PREFIX, DeadLetters
from choreo.processing import InputRecord, RecordProcessor, failure_of, retry_policy
from choreo.publisher import Publisher
from choreo.retry import Attempted, RetriesExhausted, RetryPolicy, retry
from choreo.settings import KafkaSettings, StepSettings
from choreo.testing import MemoryProducer, StepHarness
from choreo.topology import dead_letter_topic

IN = "test.asks"
OUT = "test.answers"
STEP = "toy"
MAX_RETRIES = 3
# Explicit settings: the defaults read LISA_STEP_* from the environment.
FAST = StepSettings(max_retries=MAX_RETRIES, retry_backoff_s=0.001, retry_backoff_max_s=0.002)
TINY = RetryPolicy(max_retries=MAX_RETRIES, backoff_s=0.001, backoff_max_s=0.002)


class Ask(Event):
    ce_type: ClassVar[str] = "test.ask.v1"
    n: int


class Answer(Event):
    ce_type: ClassVar[str] = "test.answer.v1"
    n: int
    square: int


class Other(Event):
    ce_type: ClassVar[str] = "test.other.v1"
    text: str


class StoreDown(TransientError):
    """A TransientError subclass: the dead letter must name it, not its base."""


class Calls:
    """A handler's call count and the threads it ran on."""

    def __init__(self) -> None:
        self.count = 0
        self.threads: list[int] = []

    def __call__(self) -> int:
        self.count += 1
        self.threads.append(threading.get_ident())
        return self.count


def toy_step(handler) -> Step:
    step = Step(STEP, consumes=[Consumes(IN, Ask)], produces=[Produces(OUT, Answer)])
    step.handler(handler)
    return step


def harness(handler) -> StepHarness:
    return StepHarness(toy_step(handler), FAST)


def square(event: Envelope[Ask]) -> list[Emit]:
    n = event.data.n
    return [Emit(OUT, Answer(n=n, square=n * n))]


def good_record(n: int = 3, key: str = "k-1") -> tuple[bytes | None, bytes, list]:
    return codec.encode(Envelope.root(Ask(n=n), source="test", subject=key))


# --- outputs and lineage -------------------------------------------------------------------


def test_an_output_carries_lineage_and_a_deterministic_id():
    parent = Envelope(
        id="evt-2",
        source="upstream",
        data=Ask(n=7),
        correlation_id="root-1",  # not a root event: the correlation is its flow's root
        causation_id="root-1",
        subject="seg-7",
        key="seg-7",
    )
    h = harness(square)
    result = h.deliver(IN, parent)
    assert result.dead_letters == []
    [(topic, out)] = result.outputs
    assert topic == OUT
    assert out.data == Answer(n=7, square=49)
    assert out.correlation_id == "root-1"
    assert out.causation_id == "evt-2"
    assert out.source == STEP
    assert (out.subject, out.key) == ("seg-7", "seg-7")  # inherited: same partition downstream
    assert out.id == derive_event_id("evt-2", STEP, f"{OUT}/0")
    # a redelivery reproduces the same id, so downstream sees a duplicate as a duplicate
    [again] = h.deliver(IN, parent).events(OUT)
    assert again.id == out.id


def test_a_root_input_is_the_correlation_of_its_outputs():
    root = Envelope.root(Ask(n=2), source="test", subject="s")
    [out] = harness(square).deliver(IN, root).events(OUT)
    assert out.correlation_id == root.id == out.causation_id


def test_several_outputs_of_one_input_get_distinct_ids_and_their_own_subjects():
    def fan_out(event: Envelope[Ask]) -> list[Emit]:
        return [
            Emit(OUT, Answer(n=i, square=i * i), index=i, subject=f"sub-{i}", key=f"key-{i}")
            for i in range(3)
        ]

    result = harness(fan_out).deliver(IN, Ask(n=3), key="k")
    outs = result.events(OUT)
    assert [o.data.n for o in outs] == [0, 1, 2]
    assert len({o.id for o in outs}) == 3
    assert [o.subject for o in outs] == ["sub-0", "sub-1", "sub-2"]
    assert [o.key for o in outs] == ["key-0", "key-1", "key-2"]


def test_a_handler_returning_nothing_emits_nothing_and_dead_letters_nothing():
    result = harness(lambda event: None).deliver(IN, Ask(n=1))
    assert result.outputs == []
    assert result.dead_letters == []


def test_a_sync_handler_runs_off_the_event_loop_thread():
    calls = Calls()

    def handler(event: Envelope[Ask]) -> list[Emit]:
        calls()
        return square(event)

    assert harness(handler).deliver(IN, Ask(n=4)).events(OUT)[0].data.square == 16
    # the harness runs its loop on this thread; the handler must not block it
    assert calls.threads != [threading.get_ident()]


def test_an_async_handler_runs_on_the_loop_and_its_outputs_are_published():
    calls = Calls()

    async def handler(event: Envelope[Ask]) -> list[Emit]:
        calls()
        await asyncio.sleep(0)
        if calls.count == 1:
            raise StoreDown("not yet")
        return square(event)

    result = harness(handler).deliver(IN, Ask(n=5), key="k")
    [out] = result.events(OUT)
    assert out.data == Answer(n=5, square=25)
    assert calls.count == 2  # a transient failure of an async handler is retried too
    assert calls.threads == [threading.get_ident()] * 2


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_an_async_callable_object_is_awaited_too():
    class AsyncHandler:
        async def __call__(self, event: Envelope[Ask]) -> list[Emit]:
            return square(event)

    result = harness(AsyncHandler()).deliver(IN, Ask(n=3))
    assert result.dead_letters == []
    assert [o.data.square for o in result.events(OUT)] == [9]


# --- retries -------------------------------------------------------------------------------


def test_transient_errors_are_retried_until_success():
    calls = Calls()

    def flaky(event: Envelope[Ask]) -> list[Emit]:
        if calls() <= 2:
            raise StoreDown("store unavailable")
        return square(event)

    result = harness(flaky).deliver(IN, Ask(n=6))
    assert result.dead_letters == []
    assert [o.data.square for o in result.events(OUT)] == [36]
    assert calls.count == 3


def test_retry_returns_the_value_and_the_number_of_attempts():
    calls = Calls()

    async def call() -> str:
        if calls() <= 2:
            raise StoreDown("down")
        return "ok"

    done = asyncio.run(retry(call, TINY))
    assert done == Attempted("ok", 3)
    assert calls.count == 3


def test_retry_gives_up_after_max_retries_with_the_last_error():
    calls = Calls()

    async def call() -> str:
        raise StoreDown(f"down {calls()}")

    with pytest.raises(RetriesExhausted) as info:
        asyncio.run(retry(call, TINY))
    assert calls.count == MAX_RETRIES + 1
    assert info.value.attempts == MAX_RETRIES + 1
    assert isinstance(info.value.error, StoreDown)
    assert str(info.value.error) == f"down {MAX_RETRIES + 1}"
    assert info.value.reason == "transient-exhausted"
    assert isinstance(info.value, PermanentError)  # so the runner dead-letters it


def test_retry_stops_waiting_when_the_service_is_stopping():
    calls = Calls()

    async def call() -> None:
        calls()
        raise StoreDown("down")

    with pytest.raises(RetriesExhausted) as info:
        asyncio.run(retry(call, RetryPolicy(max_retries=100, backoff_s=60.0), lambda: True))
    assert calls.count == 1 == info.value.attempts


def test_retry_does_not_retry_permanent_errors():
    calls = Calls()

    async def call() -> None:
        calls()
        raise PermanentError("bad", "no")

    with pytest.raises(PermanentError) as info:
        asyncio.run(retry(call, TINY))
    assert not isinstance(info.value, RetriesExhausted)
    assert calls.count == 1


@pytest.mark.parametrize("attempt", [1, 2, 3, 8])
def test_backoff_doubles_is_capped_and_jittered_downwards(attempt: int):
    policy = RetryPolicy(max_retries=10, backoff_s=0.5, backoff_max_s=3.0)
    base = min(3.0, 0.5 * 2 ** (attempt - 1))
    delays = [policy.delay(attempt) for _ in range(200)]
    assert all(0.5 * base <= d <= base for d in delays)
    assert len(set(delays)) > 1  # jitter: replicas failing together do not retry in lockstep


def test_retry_policy_comes_from_the_step_settings():
    policy = retry_policy(StepSettings(max_retries=2, retry_backoff_s=0.25, retry_backoff_max_s=9))
    assert policy == RetryPolicy(2, 0.25, 9.0)


def test_failure_of_reports_the_transient_cause_and_its_attempts():
    cause = StoreDown("nfs gone")
    exhausted = failure_of(RetriesExhausted(cause, 5), "transient-exhausted")
    assert (exhausted.reason, exhausted.error, exhausted.attempts) == (
        "transient-exhausted",
        cause,
        5,
    )
    bad = PermanentError("bad-input", "nope")
    once = failure_of(bad, "bad-input")
    assert (once.reason, once.error, once.attempts) == ("bad-input", bad, 1)


# --- dead letters from the handler ---------------------------------------------------------


def test_transient_forever_is_dead_lettered_once_after_every_attempt():
    calls = Calls()

    def down(event: Envelope[Ask]) -> list[Emit]:
        calls()
        raise StoreDown("store unavailable")

    key, value, headers = good_record()
    result = harness(down).deliver_raw(IN, key, value, headers)
    assert result.outputs == []
    [dead] = result.dead_letters
    assert dead.reason == "transient-exhausted"
    assert dead.info["attempts"] == str(MAX_RETRIES + 1)
    assert dead.info["error_type"] == "StoreDown"
    assert dead.info["error_message"] == "store unavailable"
    assert calls.count == MAX_RETRIES + 1
    assert (dead.record.key, dead.record.value) == (key, value)


def test_a_permanent_error_is_dead_lettered_at_once_with_its_reason():
    calls = Calls()

    def refuse(event: Envelope[Ask]) -> list[Emit]:
        calls()
        raise PermanentError("no-data", "segment is all NaN")

    [dead] = harness(refuse).deliver(IN, Ask(n=1)).dead_letters
    assert dead.reason == "no-data"
    assert dead.info["attempts"] == "1"
    assert dead.info["error_type"] == "PermanentError"
    assert dead.info["error_message"] == "segment is all NaN"
    assert calls.count == 1


def test_an_unexpected_exception_is_a_handler_error_and_is_not_retried():
    calls = Calls()

    def buggy(event: Envelope[Ask]) -> list[Emit]:
        calls()
        raise ValueError("math domain error")

    result = harness(buggy).deliver(IN, Ask(n=1))
    assert result.outputs == []
    [dead] = result.dead_letters
    assert dead.reason == "handler-error"
    assert dead.info["error_message"] == "ValueError: math domain error"
    assert dead.info["attempts"] == "1"
    assert calls.count == 1


@pytest.mark.parametrize(
    "emits",
    [
        [Emit(OUT, Other(text="not an answer"))],
        [Emit("test.elsewhere", Answer(n=1, square=1))],
        # one bad output spoils the lot: nothing of the input is published
        [Emit(OUT, Answer(n=1, square=1)), Emit(OUT, Other(text="x"), index=1)],
    ],
    ids=["wrong-type", "wrong-topic", "one-of-two"],
)
def test_an_undeclared_output_is_dead_lettered_and_nothing_is_published(emits: list[Emit]):
    result = harness(lambda event: emits).deliver(IN, Ask(n=1))
    assert result.outputs == []
    [dead] = result.dead_letters
    assert dead.reason == "undeclared-output"
    assert dead.info["attempts"] == "1"


def test_the_dead_letter_topic_is_the_input_topic_with_dlq_suffix_and_names_the_input():
    key, value, headers = good_record()
    [dead] = harness(lambda e: 1 / 0).deliver_raw(IN, key, value, headers).dead_letters
    assert dead.topic == f"{IN}.dlq" == dead_letter_topic(IN)
    assert dead.info["topic"] == IN
    assert dead.info["service"] == STEP
    assert dead.info["partition"] == "0"
    assert int(dead.info["offset"]) >= 1
    assert dead.info["time"]  # ISO timestamp of the failure


# --- dead letters from the codec -----------------------------------------------------------


def _bad_records() -> list[tuple[str, bytes | None, bytes | None, list, str]]:
    key, value, headers = good_record()

    def with_header(name: str, new: bytes) -> list:
        return [(k, new if k == name else v) for k, v in headers]

    return [
        ("no headers at all", key, b"\x00\xff\xfe\x80 garbage", [], "missing-headers"),
        ("garbage body", key, b"\x00\xff\xfe\x80 garbage", headers, "invalid-json"),
        (
            "missing ce_id",
            key,
            value,
            [(k, v) for k, v in headers if k != "ce_id"],
            "missing-headers",
        ),
        ("unknown type", key, value, with_header("ce_type", b"test.nope.v1"), "unknown-type"),
        ("old spec", key, value, with_header("ce_specversion", b"0.3"), "unsupported-specversion"),
        ("no body", key, None, headers, "empty-body"),
        ("not JSON", key, b"{ this is not JSON", headers, "invalid-json"),
        ("wrong field type", key, json.dumps({"n": "three"}).encode(), headers, "schema-invalid"),
        ("extra field", key, json.dumps({"n": 1, "x": 2}).encode(), headers, "schema-invalid"),
        ("JSON of the wrong kind", key, b"[1, 2, 3]", headers, "schema-invalid"),
        (
            "oversized",
            key,
            b'{"n": 1, "pad": "' + b"x" * codec.MAX_BODY_BYTES + b'"}',
            headers,
            "oversized",
        ),
        ("bad ce_time", key, value, with_header("ce_time", b"yesterday"), "invalid-header"),
        ("no key", None, b"{ nope", headers, "invalid-json"),
    ]


@pytest.mark.parametrize(
    ("key", "value", "headers", "reason"),
    [case[1:] for case in _bad_records()],
    ids=[case[0] for case in _bad_records()],
)
def test_undecodable_records_are_dead_lettered_untouched_with_the_codec_reason(
    key: bytes | None, value: bytes | None, headers: list, reason: str
):
    calls = Calls()

    def handler(event: Envelope[Ask]) -> list[Emit]:
        calls()
        return square(event)

    result = harness(handler).deliver_raw(IN, key, value, headers)
    assert result.outputs == []
    [dead] = result.dead_letters
    assert dead.topic == f"{IN}.dlq"
    assert dead.reason == reason
    assert dead.info["error_type"] == "DecodeError"
    assert dead.info["attempts"] == "1"
    assert calls.count == 0
    # the original record, untouched: key, value and headers, then the dlq_* headers
    assert dead.record.key == key
    assert dead.record.value == value
    original = [(k, v) for k, v in dead.record.headers if not k.startswith(DLQ_HEADER_PREFIX)]
    assert original == list(headers)


def test_a_replayed_dead_letter_gets_fresh_dlq_headers_not_duplicates():
    key, value, headers = good_record()
    replayed = [*headers, ("dlq_reason", b"old-reason"), ("dlq_attempts", b"9")]
    [dead] = harness(lambda e: 1 / 0).deliver_raw(IN, key, value, replayed).dead_letters
    names = [k for k, _ in dead.record.headers]
    assert names.count("dlq_reason") == 1
    assert names.count("dlq_attempts") == 1
    assert dead.info["reason"] == "handler-error"
    assert dead.info["attempts"] == "1"


# --- the processor itself, with a topic prefix ---------------------------------------------


def _process(
    step: Step, record: InputRecord, kafka: KafkaSettings, stopping=lambda: False
) -> MemoryProducer:
    async def go() -> MemoryProducer:
        producer = MemoryProducer()
        publisher = Publisher(producer, kafka)  # type: ignore[arg-type]
        processor = RecordProcessor(step, kafka, FAST, stopping=stopping)
        futures = await processor.process(record, publisher, DeadLetters(publisher, step.name))
        await asyncio.gather(*futures)
        return producer

    return asyncio.run(go())


def test_a_deployment_prefix_applies_to_inputs_outputs_and_dead_letters():
    kafka = KafkaSettings(topic_prefix="dep.")
    step = toy_step(square)
    processor = RecordProcessor(step, kafka, FAST)
    assert processor.topics == [f"dep.{IN}"]
    assert processor.group == f"dep.{STEP}"
    assert RecordProcessor(step, kafka, StepSettings(group_id="g")).group == "g"

    key, value, headers = good_record(n=9)
    [sent] = _process(step, InputRecord(f"dep.{IN}", key, value, headers), kafka).sent
    assert sent.topic == f"dep.{OUT}"
    assert json.loads(sent.value) == {"n": 9, "square": 81}

    bad = InputRecord(f"dep.{IN}", key, b"{ nope", headers, partition=4, offset=77)
    [dead] = _process(step, bad, kafka).sent
    assert dead.topic == f"dep.{IN}.dlq"
    info = dead.header_map
    assert info["dlq_topic"] == IN  # the logical name, without the deployment's prefix
    assert (info["dlq_partition"], info["dlq_offset"]) == ("4", "77")


def test_a_stopping_service_dead_letters_a_transient_failure_without_waiting():
    calls = Calls()

    def down(event: Envelope[Ask]) -> list[Emit]:
        calls()
        raise StoreDown("down")

    kafka = KafkaSettings(topic_prefix="")
    key, value, headers = good_record()
    [dead] = _process(
        toy_step(down), InputRecord(IN, key, value, headers), kafka, stopping=lambda: True
    ).sent
    assert dead.header_map["dlq_reason"] == "transient-exhausted"
    assert dead.header_map["dlq_attempts"] == "1"
    assert calls.count == 1


def test_a_step_without_handler_is_refused():
    step = Step(STEP, consumes=[Consumes(IN, Ask)])
    with pytest.raises(ValueError, match="no handler"):
        RecordProcessor(step, KafkaSettings(), FAST)
