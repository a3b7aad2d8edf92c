"""One Kafka record as the operator tools (tail, trace, dlq, report) see it, decoded once.

Headers are decoded as the runtime decodes them (``choreo.codec.header_map``: the last value of a
name wins, a missing value is ``""``, a value that is not UTF-8 is shown as hex), so a tool and
the services agree on an event's id, subject and lineage; the names of the headers that were not
UTF-8 are kept, for the tools to report. The raw headers stay available for replay.

What a record carries is not trusted: ``printable`` turns control characters into visible escapes
before anything is written to a terminal, and ``json_line`` does the same for the characters that
``json.dumps(ensure_ascii=False)`` leaves raw. Parsing the body never raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Self

from aiokafka import ConsumerRecord

from choreo import codec
from choreo.topology import DLQ_SUFFIX

RawHeaders = tuple[tuple[str, bytes | None], ...]

# C0 controls, DEL, C1 controls (ESC and CSI move the cursor, CR rewrites the line) and lone
# surrogates (which JSON can carry as "\ud800" and which no terminal encoding can write).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# What json.dumps(ensure_ascii=False) writes raw: it escapes C0 controls itself.
_RAW_IN_JSON = re.compile("[\x7f-\x9f\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (C0, DEL, C1) and lone surrogates become
    visible escapes (``\\x1b``, ``\\n``, ``\\x9b``, ``\\ud800``); the rest is left as it is."""
    return _UNPRINTABLE.sub(_escape, text)


def json_line(obj: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False)`` with DEL, C1 controls and lone surrogates escaped
    as ``\\u00XX`` (C0 controls already are): the same JSON value, safe for a terminal."""
    return _RAW_IN_JSON.sub(
        lambda m: f"\\u{ord(m.group()):04x}", json.dumps(obj, ensure_ascii=False)
    )


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def decode_headers(
    raw: Sequence[tuple[str, bytes | None]] | None,
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Headers as text, as the runtime reads them, and the names of those not UTF-8 (their
    text is the hex of the bytes). Only the value that wins (the last one) counts."""
    text = codec.header_map(raw)  # type: ignore[arg-type]  # it reads a None value as ""
    last = dict(raw or ())
    return text, tuple(n for n, v in last.items() if v is not None and not _is_utf8(v))


@dataclass(frozen=True)
class Record:
    """A Kafka record: place, key, value, timestamp and headers decoded once.

    ``topic`` is without the deployment prefix given to ``of``; ``headers`` are text (see the
    module), ``raw_headers`` the bytes as read; ``bad_headers`` names the headers that were not
    UTF-8. Nothing here raises on a malformed record.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    key: bytes | None = None
    value: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw_headers: RawHeaders = ()
    bad_headers: tuple[str, ...] = ()

    @classmethod
    def of(cls, record: ConsumerRecord, prefix: str = "") -> Self:
        raw: RawHeaders = tuple(record.headers or ())
        headers, bad = decode_headers(raw)
        return cls(
            topic=record.topic.removeprefix(prefix),
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            key=record.key,
            value=record.value,
            headers=headers,
            raw_headers=raw,
            bad_headers=bad,
        )

    @property
    def ref(self) -> str:
        """``<topic>/<partition>/<offset>``: where the record is."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def dead_letter(self) -> bool:
        return self.topic.endswith(DLQ_SUFFIX)

    @property
    def event_id(self) -> str | None:
        return self.headers.get("ce_id")

    @property
    def type(self) -> str | None:
        return self.headers.get("ce_type")

    @property
    def subject(self) -> str | None:
        return self.headers.get("ce_subject")

    @property
    def trace_id(self) -> str | None:
        """The W3C ``traceparent``'s trace id, if the record carries one."""
        parts = self.headers.get("traceparent", "").split("-")
        return parts[1] if len(parts) == 4 else None

    @property
    def appended(self) -> datetime | None:
        """The Kafka record's timestamp (None when absent or beyond what a datetime holds)."""
        if self.timestamp_ms is None or self.timestamp_ms < 0:
            return None
        try:
            return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None

    @property
    def time(self) -> datetime | None:
        """The event's time (``ce_time``, naive meaning UTC) in UTC, else ``appended``."""
        if ce_time := self.headers.get("ce_time"):
            try:
                when = datetime.fromisoformat(ce_time)
                return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
            except (ValueError, OverflowError):
                pass
        return self.appended

    @property
    def key_text(self) -> str | None:
        return self.key.decode(errors="replace") if self.key is not None else None

    @cached_property
    def body(self) -> tuple[bool, Any]:
        """(is JSON, the parsed body, else its text): what is there, valid or not."""
        if self.value is None:
            return False, None
        try:
            return True, json.loads(self.value)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, too deep, too long a number
            return False, self.value.decode(errors="replace")

    @property
    def problems(self) -> list[str]:
        """What could not be read as sent, in words fit for a terminal ([] for a sound record)."""
        if not self.bad_headers:
            return []
        names = ", ".join(printable(n) for n in self.bad_headers)
        return [f"header(s) {names} not UTF-8 (read as hex)"]
