"""Property-based tests (Hypothesis): whatever bytes arrive, the codec, the store's reference
checks and the ingest file validator end in a classified rejection, never another exception."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choreo import codec
from choreo.errors import DecodeError, PermanentError, TransientError
from choreo.store import ArrayRef, Store
from lisa_pipeline.events import CandidatesGB, SegmentRaw, SourceEstimates
from lisa_science.ldc import LDCFormatError
from lisa_services.ingest.files import plan_file

TYPES = {m.ce_type: m for m in (SegmentRaw, CandidatesGB, SourceEstimates)}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)
header_names = st.sampled_from(
    [
        "ce_specversion",
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_time",
        "ce_subject",
        "ce_correlationid",
        "ce_causationid",
        "traceparent",
    ]
) | st.text(max_size=12)
header_values = (
    st.binary(max_size=64)
    | st.sampled_from([b"1.0", b"lisa.segment.raw.v1", b"lisa.candidates.gb.v1", b"x"])
    | st.just(b"a" * 9000)
    | st.none()
)


def _check(key, value, headers) -> None:
    try:
        outcome = codec.decode(key, value, headers, TYPES).type
    except DecodeError as exc:
        outcome = exc.reason  # classified, with a stable code
    assert outcome


@FUZZ
@given(
    key=st.none() | st.binary(max_size=32),
    value=st.none() | st.binary(max_size=256),
    headers=st.lists(st.tuples(header_names, header_values), max_size=12),
)
def test_random_bytes_and_headers_are_classified(key, value, headers) -> None:
    _check(key, value, headers)


@FUZZ
@given(body=json_values, ce_type=st.sampled_from(sorted(TYPES)), time=st.text(max_size=40))
def test_random_json_bodies_are_classified(body, ce_type: str, time: str) -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"i"),
        ("ce_type", ce_type.encode()),
        ("ce_source", b"s"),
        ("ce_time", time.encode("utf-8", "surrogatepass")),
    ]
    try:
        value = json.dumps(body, allow_nan=True).encode()
    except (ValueError, UnicodeEncodeError):
        return
    _check(None, value, headers)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, ArrayRef, Path]:
    """A store with one product, and a secret file outside it that a reference must not reach."""
    base = tmp_path_factory.mktemp("fuzz")
    store = Store((base / "store").as_uri())
    ref = store.put({"X": np.arange(8.0)})
    secret = base / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["X"] = np.arange(8.0) + 1  # not the store's product
    link_sha = hashlib.sha256(b"link").hexdigest()
    (store.root / link_sha[:2]).mkdir(exist_ok=True)
    os.symlink(secret, store.root / link_sha[:2] / f"{link_sha}.h5")
    return store, ref, secret


def _refuses(store: Store, ref: ArrayRef, secret: Path) -> str:
    secret_sha = hashlib.sha256(secret.read_bytes()).hexdigest()
    with pytest.raises((PermanentError, TransientError)) as err:
        store.get(ref)
    text = str(err.value)
    assert secret_sha[:8] not in text  # nothing learnt about files outside the store
    return getattr(err.value, "reason", "transient")


def test_hostile_references_are_refused_before_any_read(world) -> None:
    store, ref, secret = world
    secret_sha = hashlib.sha256(secret.read_bytes()).hexdigest()
    link_sha = hashlib.sha256(b"link").hexdigest()
    hostile = {
        "absolute path": ref.model_copy(update={"uri": secret.as_uri(), "sha256": secret_sha}),
        "dot-dot": ref.model_copy(
            update={"uri": f"{store.root.as_uri()}/{ref.sha256[:2]}/../../secret.h5"}
        ),
        "host part": ref.model_copy(
            update={"uri": "file://evil" + ref.uri.removeprefix("file://")}
        ),
        "other scheme": ref.model_copy(update={"uri": "http://127.0.0.1/x.h5"}),
        "query": ref.model_copy(update={"uri": ref.uri + "?x=1"}),
        "symlink": ref.model_copy(
            update={
                "uri": (store.root / link_sha[:2] / f"{link_sha}.h5").as_uri(),
                "sha256": link_sha,
                "size_bytes": secret.stat().st_size,
            }
        ),
        "wrong size": ref.model_copy(update={"size_bytes": ref.size_bytes + 1}),
        "too large": ref.model_copy(update={"size_bytes": 1 << 40}),
        "wrong shape": ref.model_copy(update={"shapes": {"X": [9]}}),
        "wrong dtype": ref.model_copy(update={"dtypes": {"X": "int64"}}),
        "missing dataset": ref.model_copy(update={"shapes": {"Y": [8]}}),
    }
    reasons = {name: _refuses(store, r, secret) for name, r in hostile.items()}
    assert reasons == {
        "absolute path": "outside-store",
        "dot-dot": "outside-store",
        "host part": "outside-store",
        "other scheme": "outside-store",
        "query": "outside-store",
        "symlink": "outside-store",
        "wrong size": "size-mismatch",
        "too large": "too-large",
        "wrong shape": "shape-mismatch",
        "wrong dtype": "dtype-mismatch",
        "missing dataset": "missing-dataset",
    }
    assert store.get(ref)["X"].tolist() == list(range(8))  # the genuine reference still reads


@FUZZ
@given(
    uri=st.text(max_size=80) | st.builds(lambda p: "file://" + p, st.text(max_size=60)),
    size=st.integers(min_value=0, max_value=1 << 42),
    shapes=st.dictionaries(
        st.text(max_size=4), st.lists(st.integers(-2, 1 << 40), max_size=3), max_size=3
    ),
)
def test_random_references_are_classified(world, uri: str, size: int, shapes) -> None:
    store, ref, _ = world
    candidate = ArrayRef(uri=uri, sha256=ref.sha256, size_bytes=size, shapes=shapes)
    try:
        store.get(candidate)
    except (PermanentError, TransientError):
        return


ROW = np.dtype([("t", "f8"), ("X", "f8"), ("Y", "f8"), ("Z", "f8")])


@st.composite
def ldc_files(draw) -> dict:
    return {
        "layout": draw(st.sampled_from(["ldc", "radler", "other", "group", "bytes"])),
        "n": draw(st.integers(0, 40)),
        "dt": draw(
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True),
                st.text(max_size=5).filter(lambda t: "\x00" not in t),  # h5py cannot write NUL
                st.just(5.0),
                st.just(1e9),
                st.none(),
            )
        ),
        "t0": draw(st.one_of(st.floats(allow_nan=True), st.just(0.0), st.none())),
        "jitter": draw(st.booleans()),
        "nan": draw(st.booleans()),
    }


def _write(path: Path, spec: dict) -> None:
    if spec["layout"] == "bytes":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(spec["n"]))
        return
    n, dt = spec["n"], 5.0
    t = np.arange(n) * dt + (np.random.default_rng(0).random(n) if spec["jitter"] else 0.0)
    values = np.random.default_rng(1).standard_normal((3, n))
    if spec["nan"] and n:
        values[0, n // 2] = np.inf
    with h5py.File(path, "w") as f:
        if spec["layout"] == "ldc":
            rows = np.zeros(n, dtype=ROW)
            rows["t"], rows["X"], rows["Y"], rows["Z"] = t, *values
            ds = f.create_dataset("obs/tdi", data=rows)
        elif spec["layout"] == "radler":
            ds = f.create_dataset("H5LISA/PreProcess/TDIdata", data=np.column_stack([t, *values]))
        elif spec["layout"] == "group":
            f.create_group("obs/tdi")
            return
        else:
            f["something/else"] = values
            return
        for name in ("dt", "t0"):
            if spec[name] is not None:
                ds.attrs[name] = spec[name]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(spec=ldc_files())
def test_random_ldc_files_are_planned_or_refused_with_a_reason(tmp_path: Path, spec: dict) -> None:
    path = tmp_path / "f.h5"
    _write(path, spec)
    try:
        plan = plan_file(path, 60.0, 0.0)
    except LDCFormatError as exc:
        reason = str(exc)
    else:
        reason = ""
        assert plan.bounds
        assert all(stop - start == round(60.0 / plan.dt) for start, stop in plan.bounds)
    assert reason or plan.bounds
