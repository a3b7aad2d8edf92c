"""The CloudEvents binary-mode codec: round trips and every refusal, without a broker."""

import json
from typing import ClassVar

import pytest

from choreo import Emit, Envelope, Event, derive_event_id
from choreo.codec import MAX_BODY_BYTES, decode, encode, header_map
from choreo.errors import DecodeError


class Ping(Event):
    ce_type: ClassVar[str] = "test.ping.v1"
    n: int
    label: str = "x"


TYPES = {Ping.ce_type: Ping}


def test_round_trip_keeps_attributes_lineage_and_body():
    env = Envelope.root(Ping(n=3), source="tester", subject="seg-1")
    key, value, headers = encode(env)
    h = header_map(headers)
    assert key == b"seg-1"
    assert h["ce_specversion"] == "1.0"
    assert h["ce_type"] == "test.ping.v1"
    assert h["content-type"] == "application/json"
    assert json.loads(value) == {"n": 3, "label": "x"}
    back = decode(key, value, headers, TYPES)
    assert back == env


def test_child_event_ids_are_deterministic_and_carry_lineage():
    parent = Envelope.root(Ping(n=1), source="a", subject="s")
    child = Emit("t", Ping(n=2)).child_of(parent, "step-b")
    again = Emit("t", Ping(n=2)).child_of(parent, "step-b")
    other = Emit("t", Ping(n=2), index=1).child_of(parent, "step-b")
    assert child.id == again.id != other.id
    assert child.id == derive_event_id(parent.id, "step-b", "t/0")
    assert child.causation_id == parent.id
    assert child.correlation_id == parent.correlation_id == parent.id
    assert (child.subject, child.key, child.source) == ("s", "s", "step-b")
    grandchild = Emit("u", Ping(n=3)).child_of(child, "step-c")
    assert grandchild.correlation_id == parent.id
    assert grandchild.causation_id == child.id


def _record(env=None, **overrides):
    key, value, headers = encode(env or Envelope.root(Ping(n=1), source="t"))
    h = dict(headers)
    for name, val in overrides.items():
        name = name.replace("_dash_", "-")
        if val is None:
            h.pop(name, None)
        else:
            h[name] = val
    return key, overrides.get("value", value), list(h.items())


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        ({"ce_id": None}, "missing-headers"),
        ({"ce_type": None, "ce_source": None}, "missing-headers"),
        ({"ce_specversion": b"0.3"}, "unsupported-specversion"),
        ({"ce_type": b"test.unknown.v1"}, "unknown-type"),
        ({"ce_time": b"yesterday"}, "invalid-header"),
    ],
)
def test_bad_headers_are_refused_with_a_reason(mutate, reason):
    key, value, headers = _record(**mutate)
    with pytest.raises(DecodeError) as err:
        decode(key, value, headers, TYPES)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("body", "reason", "words"),
    [
        (b"\x00not json", "invalid-json", "not JSON"),
        (b'{"n": "three"}', "schema-invalid", "n"),
        (b'{"n": 1, "extra": 2}', "schema-invalid", "extra"),
        (b"{}", "schema-invalid", "Field required"),
        (b'{"n": 1, "label": "' + b"a" * MAX_BODY_BYTES + b'"}', "oversized", "bytes"),
        (None, "empty-body", "no body"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(body, reason, words):
    key, _, headers = _record()
    with pytest.raises(DecodeError) as err:
        decode(key, body, headers, TYPES)
    assert err.value.reason == reason
    assert words in str(err.value)
