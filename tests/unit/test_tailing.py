"""``lisa-choreo tail`` rendering, filters and time parsing, without a broker.

Bodies come from the real pydantic models (``model_dump_json``), so a renamed field breaks here
rather than silently degrading the analyst's view to the generic fallback.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from choreo import Envelope, Event, codec
from choreo.store import ArrayRef
from lisa_choreo import tailing
from lisa_choreo.registry import topology
from lisa_choreo.tailing import Filter, Record, parse_time, render_json, render_line
from lisa_pipeline.events import (
    BandRatio,
    CandidatesGB,
    CatalogSource,
    GBCandidate,
    SegmentConditioned,
    SegmentRaw,
    SegmentTiming,
    SourceEstimate,
    SourceEstimates,
)
from tests.toy.events import Description, Number, Square

REF = ArrayRef(uri="file:///store/x.h5", sha256="0" * 64, size_bytes=10, shapes={"A": [4]})
TIMING = SegmentTiming(segment_id="abcd-3", t0=86400.0, dt=5.0, n_samples=17280)
WHEN = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def cand(f: float, snr: float) -> GBCandidate:
    return GBCandidate(frequency_hz=f, bin=1, statistic=snr**2 + 4, snr=snr, fap=1e-9)


def record(data: Event, topic: str = "some.topic", subject: str | None = "abcd-3") -> Record:
    env = Envelope.root(data, source="test", subject=subject)
    env = Envelope(**{**env.__dict__, "time": WHEN})
    key, value, headers = codec.encode(env)
    return Record(topic, 2, 41, 1_000, key, value, codec.header_map(headers))


def estimate(f: float, snr: float) -> SourceEstimate:
    return SourceEstimate(
        candidate=cand(f, snr),
        frequency_hz=f,
        sigma_frequency_hz=2.5e-9,
        amplitude_a=1.0,
        amplitude_e=1.0,
        sigma_amplitude_a=0.1,
        sigma_amplitude_e=0.1,
        phase_a=0.0,
        phase_e=0.0,
        sigma_phase_a=0.1,
        sigma_phase_e=0.1,
        snr=snr,
        reduced_chi2=1.0,
    )


def candidates(*found: GBCandidate) -> CandidatesGB:
    return CandidatesGB(
        timing=TIMING,
        statistic=REF,
        fmin_hz=1e-4,
        fmax_hz=2e-2,
        n_independent_bins=1000,
        fap=0.01,
        threshold=31.2,
        candidates=list(found),
        conditioned=REF,
        psd=REF,
    )


EXPECTED: list[tuple[Event, str]] = [
    (
        SegmentRaw(
            timing=TIMING,
            index=3,
            source_file="/data/lisa-vb-30d.h5",
            source_sha256="f" * 64,
            overlap_s=0.0,
            data=REF,
            nan_fraction=0.0125,
        ),
        "t0 86400 s, 1 d at 5 s, NaN 1.25%, lisa-vb-30d.h5#3",
    ),
    (
        SegmentConditioned(
            timing=TIMING,
            data=REF,
            psd=REF,
            whitened=REF,
            usable_fraction=0.981,
            gap_samples=120,
            glitch_samples=7,
            psd_model_ratio=[
                BandRatio(channel="A", fmin_hz=1e-3, fmax_hz=1e-2, ratio=0.98),
                BandRatio(channel="E", fmin_hz=1e-3, fmax_hz=1e-2, ratio=1.07),
            ],
        ),
        "usable 98.1%, gaps 120, glitches 7, PSD/model 0.98-1.07",
    ),
    (
        candidates(cand(2.61e-3, 12.5), cand(6.22e-3, 41.27)),
        "2 candidates, best 6.22 mHz SNR 41.3 (FAP 1e-09)",
    ),
    (candidates(), "0 candidates (threshold 31.2)"),
    (
        SourceEstimates(
            timing=TIMING,
            statistic=REF,
            n_independent_bins=1000,
            estimates=[estimate(1.9e-3, 8.0), estimate(3.2178e-3, 25.04)],
        ),
        "2 estimates, best 3.2178 mHz ± 2.5e-09 Hz SNR 25.0",
    ),
    (
        CatalogSource(
            source_id="LGB-0003",
            frequency_hz=6.22028e-3,
            frequency_bin=537,
            sigma_frequency_hz=1e-9,
            stacked_statistic=900.0,
            stacked_snr=29.93,
            fap=1e-20,
            n_segments=30,
            n_estimates=28,
        ),
        "source LGB-0003 6.22028 mHz, stacked SNR 29.9 over 30 segments",
    ),
    (Number(value=7), "value 7"),
    (Square(value=7, square=49), "7² = 49"),
    (Description(value=7, text="7² = 49"), "7² = 49"),
]


@pytest.mark.parametrize(("event", "summary"), EXPECTED, ids=lambda x: getattr(x, "ce_type", ""))
def test_compact_line_of_each_event_type(event: Event, summary: str) -> None:
    line = render_line(record(event, "lisa.candidates.gb"))
    assert line.startswith("2030-01-02T03:04:05.678Z  lisa.candidates.gb ")
    assert f" {event.ce_type} " in line
    assert " abcd-3 " in line
    assert line.endswith("  " + summary)


def test_every_event_type_of_the_topology_has_its_own_summary() -> None:
    """A new event type should get a tailored line (the generic one still works meanwhile)."""
    types = {
        m.ce_type
        for s in topology().steps
        for decl in [*s.consumes, *s.produces]
        for m in decl.types
    }
    assert types <= set(tailing.SUMMARIES), sorted(types - set(tailing.SUMMARIES))


def test_unknown_types_and_odd_bodies_fall_back_without_failing() -> None:
    headers = {"ce_type": "lisa.future.thing.v3", "ce_subject": "s1"}
    body = {"name": "x" * 60, "n": 3, "ratio": 0.123456, "items": [1, 2], "nested": {"a": 1}}
    rec = Record("t", 0, 0, 0, None, json.dumps(body).encode(), headers)
    summary = tailing.summarize(rec)
    assert summary.startswith("name=xxxxxxxx")
    assert "n=3 ratio=0.123 items[2]" in summary
    assert "nested" not in summary
    # a known type whose body lacks the expected fields: generic view, no exception
    rec = Record("t", 0, 0, 0, None, b'{"value_x": 1}', {"ce_type": "lisa.toy.number.v1"})
    assert tailing.summarize(rec) == "value_x=1"
    rec = Record("t", 0, 0, 0, None, b"\xff\x00binary", {})
    assert tailing.summarize(rec).startswith("(not JSON, 8 bytes)")
    assert tailing.summarize(Record("t", 0, 0, 0, None, None, {})) == "(no body)"
    line = render_line(Record("t", 0, 0, None, None, b"[1, 2]", {}))
    assert line.startswith("-" * 24 + "  t ")
    assert line.endswith(" -  [1, 2]")


def test_dead_letters_show_why_and_where() -> None:
    headers = {
        "ce_type": "lisa.segment.raw.v1",
        "dlq_reason": "checksum-mismatch",
        "dlq_service": "condition",
        "dlq_topic": "lisa.segments.raw",
        "dlq_partition": "4",
        "dlq_offset": "17",
        "dlq_error_message": "file:///x.h5: SHA-256 abc... != def...",
    }
    rec = Record("lisa.segments.raw.dlq", 0, 3, 0, None, b"{}", headers)
    assert tailing.summarize(rec) == (
        "DEAD LETTER checksum-mismatch by condition from lisa.segments.raw[4]@17: "
        "file:///x.h5: SHA-256 abc... != def..."
    )


def test_json_lines_carry_headers_key_position_and_body() -> None:
    out = json.loads(render_json(record(Number(value=3), "toy.numbers", subject="n3")))
    assert out["topic"] == "toy.numbers"
    assert (out["partition"], out["offset"]) == (2, 41)
    assert out["key"] == "n3"
    assert out["timestamp"] == "1970-01-01T00:00:01.000Z"
    assert out["headers"]["ce_type"] == "lisa.toy.number.v1"
    assert out["headers"]["ce_specversion"] == "1.0"
    assert out["headers"]["ce_correlationid"] == out["headers"]["ce_id"]
    assert out["body"] == {"value": 3}
    raw = json.loads(render_json(Record("t", 0, 0, 0, None, b"not json", {})))
    assert raw["body_raw"] == "not json"
    assert "body" not in raw


def test_record_of_strips_the_deployment_prefix() -> None:
    from aiokafka import ConsumerRecord

    cr = ConsumerRecord(
        topic="t1234.lisa.catalog",
        partition=1,
        offset=9,
        timestamp=5,
        timestamp_type=0,
        key=b"k",
        value=b"{}",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=2,
        headers=[("ce_subject", b"s")],
    )
    rec = Record.of(cr, "t1234.")
    assert (rec.topic, rec.partition, rec.offset, rec.subject) == ("lisa.catalog", 1, 9, "s")


def test_filters_on_type_and_subject_glob() -> None:
    a = Record("t", 0, 0, 0, None, b"{}", {"ce_type": "x.v1", "ce_subject": "seg-1"})
    b = Record("t", 0, 1, 0, None, b"{}", {"ce_type": "y.v1", "ce_subject": "seg-22"})
    c = Record("t", 0, 2, 0, None, b"{}", {"ce_type": "x.v1"})
    assert [r.offset for r in (a, b, c) if Filter()(r)] == [0, 1, 2]
    assert [r.offset for r in (a, b, c) if Filter(frozenset({"x.v1"}))(r)] == [0, 2]
    assert [r.offset for r in (a, b, c) if Filter(subject="seg-?")(r)] == [0]
    assert [r.offset for r in (a, b, c) if Filter(frozenset({"y.v1", "x.v1"}), "seg-*")(r)] == [
        0,
        1,
    ]


def test_times_absolute_and_relative() -> None:
    now = datetime(2030, 1, 2, 12, 0, tzinfo=UTC)
    assert parse_time("-1h", now) == now - timedelta(hours=1)
    assert parse_time("30m", now) == now - timedelta(minutes=30)
    assert parse_time("-1.5d", now) == now - timedelta(hours=36)
    assert parse_time("-2w", now) == now - timedelta(weeks=2)
    assert parse_time("2030-01-01T00:00:00Z") == datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_time("2030-01-01T01:00:00+01:00") == datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_time("2030-01-01 06:00") == datetime(2030, 1, 1, 6, tzinfo=UTC)  # naive = UTC
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("yesterday")


def test_tail_parser_takes_relative_times_and_refuses_mixed_starts() -> None:
    from lisa_choreo.cli import build_parser

    args = build_parser().parse_args(["tail", "a", "b", "--from-time", "-1h", "-f"])
    assert (args.topics, args.from_time, args.follow, args.start) == (
        ["a", "b"],
        "-1h",
        True,
        "end",
    )
    args = build_parser().parse_args(["tail", "a", "--type", "x", "--type", "y", "--json"])
    assert (args.types, args.json, args.start) == (["x", "y"], True, "end")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tail", "a", "--from-beginning", "--from-time", "-1h"])


def consumer_record(headers: list, value: bytes | None, timestamp: int = 5):
    from aiokafka import ConsumerRecord

    return ConsumerRecord(
        topic="t1234.lisa.catalog",
        partition=1,
        offset=9,
        timestamp=timestamp,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value or b""),
        headers=headers,
    )


UNPRINTABLE = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0xD800]}


@pytest.mark.parametrize(
    ("headers", "value", "timestamp"),
    [
        ([("ce_subject", b"\xff\xfe"), ("ce_type", None)], b"\xffnot json", 5),
        ([("ce_subject", b"\x1b[2J\x1b[Hseg\r"), ("ce_type", b"\x9b31mx")], b"{}", 5),
        ([("ce_type", b"lisa.toy.description.v1")], b'{"text": "\\u001b[2J\\ud800\\u009b"}', 5),
        ([], b"[" * 100_000, 5),
        ([], b"1" * 5000, 5),
        ([], b"{}", 2**62),
        ([("ce_time", b"0001-01-01T00:00:00+05:00")], b"{}", 5),
        (
            [("ce_type", b"lisa.catalog.source.v1")],
            b'{"source_id": "x", "frequency_hz": 1' + b"0" * 400 + b"}",
            5,
        ),
        ([("ce_type", b"lisa.segment.raw.v1")], b'{"timing": {"n_samples": 10**9}}', 5),
        (  # "x" * 9999999999 would take 10 GB before failing
            [("ce_type", b"lisa.segment.raw.v1")],
            b'{"timing": {"t0": 1, "n_samples": 9999999999, "dt": "x"}}',
            5,
        ),
    ],
    ids=[
        "not-utf8",
        "escapes",
        "escapes-in-body",
        "too-deep",
        "too-long-number",
        "timestamp-out-of-range",
        "time-before-year-1",
        "number-beyond-float",
        "invalid-json",
        "string-times-int",
    ],
)
@pytest.mark.parametrize("render", [render_line, render_json], ids=["text", "json"])
def test_a_hostile_record_is_shown_escaped_and_never_raises(
    headers: list, value: bytes, timestamp: int, render
) -> None:
    err = io.StringIO()
    line = tailing.show(consumer_record(headers, value, timestamp), "t1234.", Filter(), render, err)
    assert line is not None
    assert not set(line) & UNPRINTABLE  # nothing that moves the cursor or cannot be encoded
    line.encode()
    if render is render_json:
        assert json.loads(line)["offset"] == 9
    else:
        assert line.split()[1] == "lisa.catalog"
    assert not set(err.getvalue()) & (UNPRINTABLE - {"\n"})


def test_undecodable_headers_are_reported_on_stderr_and_the_line_is_still_shown() -> None:
    err = io.StringIO()
    cr = consumer_record([("ce_subject", b"\xff\xfe"), ("ce_type", b"x.v1")], b"{}")
    line = tailing.show(cr, "t1234.", Filter(), render_line, err)
    assert line is not None
    assert " x.v1 " in line
    assert " fffe " in line  # the runtime's reading of it: hex
    assert err.getvalue() == (
        "lisa-choreo: lisa.catalog/1/9: header(s) ce_subject not UTF-8 (read as hex)\n"
    )
    err = io.StringIO()
    assert tailing.show(cr, "t1234.", Filter(frozenset({"y.v1"})), render_line, err) is None
    assert err.getvalue() == ""  # filtered out: not the analyst's concern


def test_a_record_that_cannot_be_rendered_is_reported_and_skipped() -> None:
    def broken(record: Record) -> str:
        raise RuntimeError("boom \x1b[2J")

    err = io.StringIO()
    assert tailing.show(consumer_record([], b"{}"), "t1234.", Filter(), broken, err) is None
    assert err.getvalue() == (
        "lisa-choreo: lisa.catalog/1/9: cannot show (RuntimeError('boom \\x1b[2J'))\n"
    )


def test_clean_output_is_unchanged_by_escaping() -> None:
    rec = record(Description(value=7, text="7² = 49 ± ✓"), "toy.descriptions")
    assert render_line(rec).endswith("  7² = 49 ± ✓")
    out = render_json(rec)
    assert out == json.dumps(json.loads(out), ensure_ascii=False)
