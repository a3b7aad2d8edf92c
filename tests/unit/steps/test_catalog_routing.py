"""The catalogue's by-grid hop gives back the record exactly as its producer wrote it."""

from __future__ import annotations

from dataclasses import dataclass, field

from lisa_services.catalog.routing import forward_headers, original_record


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def test_forwarding_then_undoing_it_restores_topic_offset_key_headers_and_trace() -> None:
    headers = [
        ("ce_id", b"e-1"),
        ("traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"),
        ("catalog_src_topic", b"forged"),  # an input cannot smuggle provenance in
    ]
    original = Message("p.lisa.sources.estimates", 4, 99, b"seg-1", b"{}", headers)
    hop_headers = forward_headers(original)
    names = [k for k, _ in hop_headers]
    assert "traceparent" not in names  # the hop's own span injects a new one
    assert names.count("catalog_src_topic") == 1
    forwarded = Message("p.catalog-by-grid", 0, 7, b"grid", original.value, hop_headers)
    restored = original_record(forwarded)
    assert (restored.topic, restored.partition, restored.offset) == (original.topic, 4, 99)
    assert restored.key == b"seg-1"
    assert restored.value == b"{}"
    assert dict(restored.headers) == {"ce_id": b"e-1", "traceparent": headers[1][1]}
