"""CloudEvents 1.0 Kafka binary mode: attributes as ``ce_*`` headers, the body as JSON.

Pure functions, no broker: a record is ``(key, value, headers)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import ValidationError

from choreo.errors import DecodeError
from choreo.events import Envelope, Event, now

Headers = list[tuple[str, bytes]]

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
# Extension attribute names must be lowercase alphanumerics (CloudEvents 1.0, "Attribute Naming").
CAUSATION = "ce_causationid"
CORRELATION = "ce_correlationid"
MAX_BODY_BYTES = 1_000_000
# Parser limits: what a JSON body or a header may hold before the record is refused as hostile.
# Python's int() refuses more than 4300 digits with a ValueError, and deep nesting exhausts the
# recursion limit; both become classified decode errors here, far below those limits.
MAX_NUMBER_CHARS = 64
MAX_HEADERS = 64
MAX_HEADER_NAME_BYTES = 256
MAX_HEADER_VALUE_BYTES = 8192
MAX_HEADERS_BYTES = 64 * 1024
MAX_ATTRIBUTE_CHARS = 1024

_REQUIRED = ("ce_specversion", "ce_id", "ce_type", "ce_source")


def encode(envelope: Envelope[Event]) -> tuple[bytes | None, bytes, Headers]:
    """Kafka key, value and headers of an envelope."""
    headers: Headers = [
        ("ce_specversion", SPECVERSION.encode()),
        ("ce_id", envelope.id.encode()),
        ("ce_type", envelope.type.encode()),
        ("ce_source", envelope.source.encode()),
        ("ce_time", envelope.time.isoformat().encode()),
        ("content-type", CONTENT_TYPE.encode()),
        (CORRELATION, envelope.correlation_id.encode()),
    ]
    if envelope.subject is not None:
        headers.append(("ce_subject", envelope.subject.encode()))
    if envelope.causation_id is not None:
        headers.append((CAUSATION, envelope.causation_id.encode()))
    key = envelope.key.encode() if envelope.key is not None else None
    return key, envelope.data.model_dump_json().encode(), headers


def header_map(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    """Headers as text; the last value wins, as in CloudEvents' Kafka binding."""
    out: dict[str, str] = {}
    for name, value in headers or ():
        try:
            out[name] = value.decode() if value is not None else ""
        except UnicodeDecodeError:
            out[name] = value.hex()
    return out


def check_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> None:
    """Refuse headers a hostile producer could use to exhaust memory or hide behind."""
    headers = list(headers or ())
    if len(headers) > MAX_HEADERS:
        raise DecodeError("oversized-headers", f"{len(headers)} headers > {MAX_HEADERS}")
    total = 0
    for name, value in headers:
        size = len(value or b"")
        if len(name.encode(errors="replace")) > MAX_HEADER_NAME_BYTES:
            raise DecodeError("oversized-headers", f"a header name is over {MAX_HEADER_NAME_BYTES}")
        if size > MAX_HEADER_VALUE_BYTES:
            raise DecodeError(
                "oversized-headers",
                f"header {name[:40]!r} holds {size} bytes (limit {MAX_HEADER_VALUE_BYTES})",
            )
        total += size + len(name)
    if total > MAX_HEADERS_BYTES:
        raise DecodeError("oversized-headers", f"{total} header bytes > {MAX_HEADERS_BYTES}")


def _number(kind: type):
    def parse(text: str):
        if len(text) > MAX_NUMBER_CHARS:
            raise DecodeError("number-too-long", f"a number of {len(text)} characters in the body")
        return kind(text)

    return parse


_parse_int = _number(int)
_parse_float = _number(float)


def parse_json(value: bytes) -> object:
    """JSON with bounded numbers and nesting: every failure is a ``DecodeError``."""
    try:
        return json.loads(value, parse_int=_parse_int, parse_float=_parse_float)
    except DecodeError:
        raise
    except RecursionError as exc:
        raise DecodeError("too-deep", "body nested too deeply") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise DecodeError("invalid-json", f"body is not JSON: {exc}"[:300]) from exc


def decode(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None,
    types: Mapping[str, type[Event]],
) -> Envelope[Event]:
    """Validate a record against the event types a consumer declared.

    Raises ``DecodeError`` with a stable reason code; never anything else for bad input.
    """
    check_headers(headers)
    h = header_map(headers)
    missing = [name for name in _REQUIRED if not h.get(name)]
    if missing:
        raise DecodeError("missing-headers", f"not a CloudEvent: missing {', '.join(missing)}")
    if h["ce_specversion"] != SPECVERSION:
        raise DecodeError(
            "unsupported-specversion", f"CloudEvents specversion {h['ce_specversion']!r} != 1.0"
        )
    model = types.get(h["ce_type"])
    if model is None:
        raise DecodeError(
            "unknown-type", f"event type {h['ce_type']!r} not in {sorted(types)} on this topic"
        )
    if value is None:
        raise DecodeError("empty-body", "record has no body")
    if len(value) > MAX_BODY_BYTES:
        raise DecodeError("oversized", f"body of {len(value)} bytes > {MAX_BODY_BYTES}")
    payload = parse_json(value)
    try:
        data = model.model_validate(payload)
    except RecursionError as exc:
        raise DecodeError("too-deep", "body nested too deeply") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise DecodeError(
            "schema-invalid",
            f"{h['ce_type']}: {where}: {first['msg']} ({exc.error_count()} errors)",
        ) from exc
    long = [
        n
        for n in (*_REQUIRED, "ce_subject", CAUSATION, CORRELATION)
        if len(h.get(n, "")) > MAX_ATTRIBUTE_CHARS
    ]
    if long:
        raise DecodeError(
            "invalid-header", f"attribute {long[0]} longer than {MAX_ATTRIBUTE_CHARS}"
        )
    try:
        time = datetime.fromisoformat(h["ce_time"]) if h.get("ce_time") else None
    except ValueError as exc:
        raise DecodeError(
            "invalid-header", f"ce_time {h['ce_time'][:64]!r} is not RFC 3339"
        ) from exc
    envelope = Envelope(
        id=h["ce_id"],
        source=h["ce_source"],
        data=data,
        correlation_id=h.get(CORRELATION) or h["ce_id"],
        subject=h.get("ce_subject"),
        causation_id=h.get(CAUSATION),
        key=key.decode(errors="replace") if key is not None else None,
        time=time or now(),
    )
    return envelope
