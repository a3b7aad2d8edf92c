"""The tools' one record wrapper and header decoder, fed hostile records, without a broker."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from aiokafka import ConsumerRecord

from choreo import codec
from choreo.settings import KafkaSettings
from lisa_choreo import dlq_admin
from lisa_choreo.records import Record, decode_headers, json_line, printable

HOSTILE = "\x1b[2J\x1b[H\rok\n\tnext\x00\x07\x7f\x85\x9b31m\ud800"
UNPRINTABLE = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0xD800]}


def consumer_record(
    headers: list[tuple[str, bytes | None]],
    value: bytes | None = b"{}",
    topic: str = "t1234.lisa.segments.raw.dlq",
    timestamp: int = 1_700_000_000_000,
    offset: int = 17,
) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topic,
        partition=3,
        offset=offset,
        timestamp=timestamp,
        timestamp_type=0,
        key=b"seg-1\xff",
        value=value,
        checksum=None,
        serialized_key_size=6,
        serialized_value_size=len(value or b""),
        headers=headers,
    )


# -- printable and json_line ----------------------------------------------------------------


def test_printable_escapes_every_control_character_and_nothing_else() -> None:
    out = printable(HOSTILE)
    assert not set(out) & UNPRINTABLE
    assert out == "\\x1b[2J\\x1b[H\\rok\\n\\tnext\\x00\\x07\\x7f\\x85\\x9b31m\\ud800"
    clean = "seg-1 6.22 mHz ± 2.5e-09 Hz 7² = 49 naïve C:\\path ✓ \xa0"
    assert printable(clean) == clean
    assert printable("") == ""


def test_json_line_is_the_same_json_value_and_safe_for_a_terminal() -> None:
    value = {"h\x1b": HOSTILE, "n": [1, 2.5, None], "text": "7² = 49 ✓"}
    line = json_line(value)
    assert not set(line) & UNPRINTABLE
    assert json.loads(line) == value
    clean = {"a": "7² = 49 ✓", "b": [1, {"c": None}]}
    assert json_line(clean) == json.dumps(clean, ensure_ascii=False)


# -- the header decoder ---------------------------------------------------------------------


def test_headers_decode_as_the_runtime_reads_them_and_name_the_undecodable() -> None:
    raw = [
        ("ce_id", b"e-1"),
        ("ce_subject", b"\xff\xfeseg"),  # not UTF-8
        ("empty", None),
        ("twice", b"\xff"),  # a bad first value that a good one replaces
        ("twice", b"second"),
        ("esc\x1b", b"\x1b[31mred"),  # valid UTF-8, hostile on a terminal
    ]
    text, bad = decode_headers(raw)
    assert text == codec.header_map(raw)  # one decoding for the runtime and the tools
    assert text["ce_subject"] == "fffe736567"
    assert (text["empty"], text["twice"], text["esc\x1b"]) == ("", "second", "\x1b[31mred")
    assert bad == ("ce_subject",)
    assert decode_headers(None) == ({}, ())
    assert decode_headers([]) == ({}, ())


# -- the record -----------------------------------------------------------------------------


def test_a_record_is_built_once_from_a_consumer_record() -> None:
    raw = [
        ("ce_id", b"e-1"),
        ("ce_type", b"lisa.segment.raw.v1"),
        ("ce_subject", b"\xffseg"),
        ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("ce_source\x1b", None),
    ]
    rec = Record.of(consumer_record(raw), "t1234.")
    assert (rec.topic, rec.partition, rec.offset) == ("lisa.segments.raw.dlq", 3, 17)
    assert rec.ref == "lisa.segments.raw.dlq/3/17"
    assert rec.dead_letter
    assert (rec.event_id, rec.type, rec.subject) == ("e-1", "lisa.segment.raw.v1", "ff736567")
    assert rec.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert rec.raw_headers == tuple(raw)  # byte for byte, for replay
    assert rec.key == b"seg-1\xff"
    assert rec.key_text == "seg-1\ufffd"
    assert rec.bad_headers == ("ce_subject",)
    assert rec.problems == ["header(s) ce_subject not UTF-8 (read as hex)"]
    assert Record.of(consumer_record([]), "other.").topic == "t1234.lisa.segments.raw.dlq"
    sound = Record.of(consumer_record([("ce_id", b"x")]))
    assert (sound.problems, sound.bad_headers, sound.trace_id) == ([], (), None)


def test_a_hostile_header_name_is_escaped_in_the_problem_report() -> None:
    rec = Record.of(consumer_record([("x\x1b[2J", b"\x80")]))
    assert rec.problems == ["header(s) x\\x1b[2J not UTF-8 (read as hex)"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"a": [1, 2]}', (True, {"a": [1, 2]})),
        (b"not json", (False, "not json")),
        (b"\xff\x00binary", (False, "\ufffd\x00binary")),
        (b"[" * 100_000, (False, "[" * 100_000)),  # deeper than the parser recurses
        (b"1" * 5000, (False, "1" * 5000)),  # more digits than int() converts
        (None, (False, None)),
    ],
    ids=["json", "text", "binary", "too-deep", "too-long-number", "none"],
)
def test_the_body_never_raises(value: bytes | None, expected: tuple[bool, object]) -> None:
    assert Record("t", 0, 0, value=value).body == expected


def test_times_fall_back_rather_than_raise() -> None:
    def rec(ce_time: str | None, ts: int | None = 1_000) -> Record:
        return Record("t", 0, 0, ts, headers={"ce_time": ce_time} if ce_time else {})

    assert rec("2030-01-02T03:04:05+01:00").time == datetime(2030, 1, 2, 2, 4, 5, tzinfo=UTC)
    assert rec("2030-01-02T03:04:05").time == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    kafka = datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert rec("yesterday").time == kafka
    assert rec("0001-01-01T00:00:00+05:00").time == kafka  # before year 1 in UTC
    assert rec(None).appended == kafka
    for ts in (None, -1, 2**62):
        assert rec(None, ts).time is None
        assert rec(None, ts).appended is None


# -- dead letters are records ---------------------------------------------------------------


def letter(
    *extra: tuple[str, bytes | None],
    time: bytes = b"2030-01-02T03:04:05+00:00",
    offset: int = 17,
) -> dlq_admin.DeadLetter:
    headers = [
        ("ce_id", b"e-1"),
        ("ce_subject", b"seg-1"),
        ("dlq_reason", b"schema-invalid"),
        ("dlq_topic", b"lisa.segments.raw"),
        ("dlq_partition", b"3"),
        ("dlq_offset", b"9"),
        ("dlq_time", time),
        *extra,
    ]
    record = consumer_record(headers, b"\xffnot json", offset=offset)
    return dlq_admin.DeadLetter.of(record, "t1234.")


def test_a_dead_letter_wraps_a_record() -> None:
    d = letter()
    assert isinstance(d, Record)
    assert (d.dlq_topic, d.ref) == ("lisa.segments.raw.dlq", "lisa.segments.raw.dlq/3/17")
    assert d.origin == "lisa.segments.raw"
    assert d.failed_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert d.problems == []
    s = d.summary()
    assert (s["event_id"], s["subject"], s["reason"]) == ("e-1", "seg-1", "schema-invalid")
    assert (s["origin"], s["type"], s["attempts"]) == ("lisa.segments.raw/3/9", "", "")
    assert d.value == b"\xffnot json"


def test_a_malformed_letter_is_reported_and_selected_as_far_as_it_reads() -> None:
    bad = letter(("dlq_topic", b"\xff"), ("dlq_service", None), time=b"yesterday", offset=18)
    assert bad.origin == "lisa.segments.raw"  # its home: the topic its .dlq belongs to
    assert bad.failed_at is None
    assert bad.problems == [
        "header(s) dlq_topic not UTF-8 (read as hex)",
        "dlq_topic 'ff' is not its home 'lisa.segments.raw'",
        "dlq_time 'yesterday' is not an ISO 8601 time",
    ]
    assert bad.summary()["service"] == ""
    good = letter()
    naive = datetime(2030, 1, 1)  # the CLI's --since: naive means UTC
    assert dlq_admin.select([bad, good], since=naive) == [good]
    assert dlq_admin.select([bad, good], until=datetime(2031, 1, 1, tzinfo=UTC)) == [good]
    assert dlq_admin.select([bad, good], ids=["e-1"]) == [bad, good]
    assert dlq_admin.select([bad, good], ids=["lisa.segments.raw.dlq/3/18"]) == [bad]


def test_a_letter_goes_home_only_never_where_a_header_points() -> None:
    forged = letter(("dlq_topic", b"lisa.catalog"))  # the last dlq_topic wins in the decoder
    assert forged.origin == "lisa.segments.raw"
    not_a_dlq = dlq_admin.DeadLetter.of(
        consumer_record([("ce_id", b"x")], topic="t1234.lisa.catalog"), "t1234."
    )
    assert not_a_dlq.origin is None
    replayed, skipped, refused = asyncio.run(dlq_admin.replay(KafkaSettings(), [not_a_dlq]))
    assert (replayed, skipped, refused) == ([], [], [not_a_dlq.ref])
