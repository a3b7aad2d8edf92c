"""The catalogue's internal hop: an input forwarded to the partition that owns its grid.

The table must be co-partitioned with the stream that updates it, while the input is keyed by
segment: ``route`` forwards each record, untouched, keyed by grid, its provenance and trace
context in ``catalog_src_*`` headers; ``stack`` undoes that to dead-letter or trace the record as
the producer wrote it. Pure functions of a record (aiokafka's or faust's message alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_SRC = "catalog_src_"
_TRACE_HEADERS = ("traceparent", "tracestate")


@dataclass(frozen=True)
class OriginalRecord:
    """The input record as it was on the input topic (what a dead letter must carry)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def forward_headers(message: Any) -> list[tuple[str, bytes]]:
    """Headers for the by-grid hop: the CloudEvent's, its trace context set aside, provenance."""
    headers: list[tuple[str, bytes]] = []
    for name, value in message.headers or ():
        if name.startswith(_SRC):
            continue
        headers.append((_SRC + name if name in _TRACE_HEADERS else name, value))
    headers += [
        (_SRC + "topic", message.topic.encode()),
        (_SRC + "partition", str(message.partition).encode()),
        (_SRC + "offset", str(message.offset).encode()),
    ]
    if message.key is not None:
        headers.append((_SRC + "key", message.key))
    return headers


def original_record(message: Any) -> OriginalRecord:
    """Undo :func:`forward_headers`: the record as the producer wrote it."""
    src = {k.removeprefix(_SRC): v for k, v in message.headers or () if k.startswith(_SRC)}
    headers = [(k, v) for k, v in message.headers or () if not k.startswith(_SRC)]
    headers = [(k, v) for k, v in headers if k not in _TRACE_HEADERS]
    headers += [(k, src[k]) for k in _TRACE_HEADERS if k in src]
    return OriginalRecord(
        topic=src.get("topic", message.topic.encode()).decode(),
        partition=int(src.get("partition", b"-1")),
        offset=int(src.get("offset", b"-1")),
        key=src.get("key"),
        value=message.value,
        headers=headers,
    )
