"""``lisa-choreo tail``: watch events on topics the way an analyst reads a log.

An observer must never disturb the flow it watches: records are read with ``TopicReader``
(partitions assigned by hand, ``group_id=None``), so nothing is committed and no consumer group
is joined or rebalanced. Rendering is pure (a ``lisa_choreo.records.Record`` in, a line out) and
tested without a broker; what a record carries is escaped before it reaches the terminal, and a
record that cannot be shown is reported on stderr, not the end of the tail.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any, Literal, TextIO

from aiokafka import ConsumerRecord, TopicPartition

from choreo.reader import TopicReader
from choreo.settings import KafkaSettings
from lisa_choreo.records import Record, json_line, printable

# -- what to read -----------------------------------------------------------------------------

_RELATIVE = re.compile(r"^-?\s*(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (naive means UTC) or a time ago like ``-1h``, ``-30m``, ``-2d``, ``90s``."""
    text = text.strip()
    if m := _RELATIVE.match(text):
        ago = timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
        return (now or datetime.now(UTC)) - ago
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--from-time {text!r}: expected ISO 8601 (2025-01-31T12:00Z) or -<n><s|m|h|d|w>"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Start:
    """Where reading starts on every partition."""

    kind: Literal["beginning", "end", "time"] = "end"
    time: datetime | None = None


@dataclass(frozen=True)
class Filter:
    """Which records are shown: any of ``types`` (all when empty), subject matching a glob."""

    types: frozenset[str] = frozenset()
    subject: str | None = None

    def __call__(self, record: Record) -> bool:
        if self.types and record.type not in self.types:
            return False
        return self.subject is None or (
            record.subject is not None and fnmatchcase(record.subject, self.subject)
        )


# -- rendering --------------------------------------------------------------------------------


def _mhz(hz: Any) -> str:
    return f"{float(hz) * 1e3:.6g} mHz"


def _pct(x: Any) -> str:
    return f"{float(x) * 100:.3g}%"


def _num(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _segment_raw(b: dict[str, Any]) -> str:
    t = b["timing"]
    return (
        f"t0 {t['t0']:.10g} s, {_duration(float(t['n_samples']) * float(t['dt']))} at "
        f"{t['dt']:g} s, "
        f"NaN {_pct(b['nan_fraction'])}, {b.get('source_file', '?').rsplit('/', 1)[-1]}"
        f"#{b.get('index', '?')}"
    )


def _segment_conditioned(b: dict[str, Any]) -> str:
    ratios = [r["ratio"] for r in b.get("psd_model_ratio", [])]
    psd = f", PSD/model {min(ratios):.3g}-{max(ratios):.3g}" if ratios else ""
    return (
        f"usable {_pct(b['usable_fraction'])}, gaps {b['gap_samples']}, "
        f"glitches {b['glitch_samples']}{psd}"
    )


def _best(items: list[dict[str, Any]]) -> dict[str, Any]:
    return max(items, key=lambda c: c.get("snr", float("-inf")))


def _candidates(b: dict[str, Any]) -> str:
    cands = b["candidates"]
    if not cands:
        return f"0 candidates (threshold {_num(b['threshold'])})"
    best = _best(cands)
    return (
        f"{len(cands)} candidate{'s' if len(cands) > 1 else ''}, best "
        f"{_mhz(best['frequency_hz'])} SNR {best['snr']:.1f} (FAP {best['fap']:.2g})"
    )


def _estimates(b: dict[str, Any]) -> str:
    ests = b["estimates"]
    if not ests:
        return "0 estimates"
    best = _best(ests)
    return (
        f"{len(ests)} estimate{'s' if len(ests) > 1 else ''}, best "
        f"{_mhz(best['frequency_hz'])} ± {best['sigma_frequency_hz']:.2g} Hz "
        f"SNR {best['snr']:.1f}"
    )


def _catalog(b: dict[str, Any]) -> str:
    return (
        f"source {b['source_id']} {_mhz(b['frequency_hz'])}, stacked SNR "
        f"{b['stacked_snr']:.1f} over {b['n_segments']} segments"
    )


def _refined(b: dict[str, Any]) -> str:
    def pm(value: float, sigma: float | None) -> str:
        return f"{value:.3f}" + (f"±{sigma:.2f}" if sigma is not None else "")

    return (
        f"source {b['source_id']} {_mhz(b['frequency_hz'])}, lat "
        f"{pm(b['ecliptic_latitude_rad'], b.get('sigma_ecliptic_latitude_rad'))} lon "
        f"{pm(b['ecliptic_longitude_rad'], b.get('sigma_ecliptic_longitude_rad'))} rad, "
        f"SNR {b['snr']:.1f} over {len(b.get('segments', []))} segments"
    )


# ce_type -> one-line summary of the body; anything else (or a body these do not fit) gets the
# generic one, so a new event type shows up without touching this table.
SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "lisa.segment.raw.v1": _segment_raw,
    "lisa.segment.conditioned.v1": _segment_conditioned,
    "lisa.candidates.gb.v1": _candidates,
    "lisa.sources.estimates.v1": _estimates,
    "lisa.catalog.source.v1": _catalog,
    "lisa.source.refined.v1": _refined,
    "lisa.segment.retracted.v1": lambda b: f"retract {b['segment_id']} ({b.get('reason') or '-'})",
    "lisa.toy.number.v1": lambda b: f"value {b['value']}",
    "lisa.toy.square.v1": lambda b: f"{b['value']}² = {b['square']}",
    "lisa.toy.description.v1": lambda b: str(b["text"]),
}
GENERIC_FIELDS = 4


def generic_summary(body: dict[str, Any]) -> str:
    """The first scalar fields, then list lengths: enough to recognise an unknown event."""
    scalars = [
        f"{k}={_clip(str(_num(v)), 40)}"
        for k, v in body.items()
        if isinstance(v, str | int | float | bool) or v is None
    ]
    lists = [f"{k}[{len(v)}]" for k, v in body.items() if isinstance(v, list)]
    return " ".join((scalars + lists)[:GENERIC_FIELDS])


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def summarize(record: Record) -> str:
    """A few key fields of the body (or why there is nothing to show)."""
    if record.dead_letter and "dlq_reason" in record.headers:
        h = record.headers
        return _clip(
            f"DEAD LETTER {h['dlq_reason']} by {h.get('dlq_service', '?')} from "
            f"{h.get('dlq_topic', '?')}[{h.get('dlq_partition', '?')}]@"
            f"{h.get('dlq_offset', '?')}: {h.get('dlq_error_message', '')}",
            200,
        )
    is_json, body = record.body
    if body is None:
        return "(no body)"
    if not is_json:
        return f"(not JSON, {len(record.value or b'')} bytes) {_clip(body, 60)}"
    if not isinstance(body, dict):
        return _clip(json.dumps(body), 80)
    summary = SUMMARIES.get(record.type or "")
    if summary is not None:
        try:
            return summary(body)
        except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError):
            pass  # an old or malformed body: the generic view still shows something
    return generic_summary(body)


def _time(when: datetime | None) -> str:
    if when is None:
        return "-" * 24
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_line(record: Record) -> str:
    """time, topic, type, subject, then the body's key fields (control characters escaped)."""
    return printable(
        f"{_time(record.time)}  {record.topic:<26} {record.type or '-':<28} "
        f"{record.subject or '-'}  {summarize(record)}"
    )


def render_json(record: Record) -> str:
    """Everything about the record as one JSON line (headers as text, body parsed if JSON)."""
    is_json, body = record.body
    out: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": _time(record.appended),
        "key": record.key_text,
        "headers": record.headers,
    }
    if is_json or body is None:
        out["body"] = body
    else:
        out["body_raw"] = body
    return json_line(out)


# -- reading ----------------------------------------------------------------------------------


class TailReader(TopicReader):
    """``TopicReader`` that can also start at a time and stop at the end offsets as of start.

    Streams instead of ``snapshot()``'s list, so a long topic prints as it is read.
    """

    def __init__(self, settings: KafkaSettings, topics: list[str], start: Start) -> None:
        super().__init__(settings, topics, from_beginning=start.kind == "beginning")
        self._start = start
        self._ends: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> TailReader:
        try:
            await super().__aenter__()
            await self._position()
        except BaseException:
            await self._consumer.stop()  # made in __init__: left open it warns "Unclosed"
            raise
        return self

    async def _position(self) -> None:
        consumer = self._consumer
        partitions = sorted(consumer.assignment())
        if self._start.kind == "time" and self._start.time is not None:
            stamp = int(self._start.time.timestamp() * 1000)
            found = await consumer.offsets_for_times(dict.fromkeys(partitions, stamp))
            for tp in partitions:
                # None: nothing at or after that time, so the pinned end position stands.
                if (hit := found.get(tp)) is not None:
                    consumer.seek(tp, hit.offset)
        self._ends = await consumer.end_offsets(partitions)

    async def stream(self, stop: asyncio.Event, follow: bool) -> AsyncIterator[ConsumerRecord]:
        """Records in per-partition order (partitions merged by timestamp within a batch) until
        ``stop`` is set, or, unless following, until the end offsets taken at start."""
        consumer = self._consumer
        while not stop.is_set():
            if not follow:
                pending = [
                    tp for tp, end in self._ends.items() if await consumer.position(tp) < end
                ]
                if not pending:
                    return
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            runs: Iterable[list[ConsumerRecord]] = (
                [r for r in records if follow or r.offset < self._ends.get(tp, 0)]
                for tp, records in sorted(batch.items())
            )
            for record in heapq.merge(*runs, key=lambda r: r.timestamp):
                yield record


@dataclass
class Outcome:
    shown: int = 0
    interrupted: bool = False


def show(
    record: ConsumerRecord,
    prefix: str,
    keep: Filter,
    render: Callable[[Record], str],
    err: TextIO,
) -> str | None:
    """The line of a record, None if filtered out or unshowable; what is wrong with a record
    (headers not UTF-8, or a failure to render it) goes to ``err``, and the tail goes on."""
    try:
        rec = Record.of(record, prefix)
        if not keep(rec):
            return None
        line = render(rec)
    except Exception as exc:  # a record no tool foresaw must not end the tail
        where = f"{record.topic.removeprefix(prefix)}/{record.partition}/{record.offset}"
        print(printable(f"lisa-choreo: {where}: cannot show ({exc!r})"), file=err)
        return None
    for problem in rec.problems:
        print(f"lisa-choreo: {rec.ref}: {problem}", file=err)
    return line


async def tail(
    settings: KafkaSettings,
    topics: list[str],
    start: Start,
    follow: bool,
    keep: Filter,
    as_json: bool,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> Outcome:
    """Print the topics' records; SIGINT/SIGTERM end it cleanly (the reader is closed).

    Raises ``LookupError`` for a topic that does not exist (before printing anything).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    outcome = Outcome()
    main = asyncio.current_task()
    reading = False

    def on_signal() -> None:
        outcome.interrupted = True
        stop.set()
        if not reading and main is not None:  # still connecting: do not wait for the broker
            # A connect cut short may leave a socket for the GC; the user asked to stop, and a
            # "Unclosed AIOKafkaConnection" line would read like a failure.
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    render = render_json if as_json else render_line
    try:
        async with TailReader(settings, topics, start) as reader:
            reading = True
            if follow:
                print(f"following {', '.join(topics)} (Ctrl-C to stop)", file=err, flush=True)
            async for record in reader.stream(stop, follow):
                line = show(record, settings.topic_prefix, keep, render, err)
                if line is None:
                    continue
                print(line, file=out)
                outcome.shown += 1
                if follow or outcome.shown % 100 == 0:
                    out.flush()
    except asyncio.CancelledError:
        if not outcome.interrupted or main is None:
            raise
        main.uncancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    out.flush()
    return outcome
