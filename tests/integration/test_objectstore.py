"""The s3:// claim-check store on a real S3 server (the stack's SeaweedFS, on loopback): round
trip, write-once, tampering and hostile references, the size cap, classified failures, the stack
command, and the science services keeping their products there."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid

import numpy as np
import pytest

from choreo.errors import PermanentError, TransientError
from choreo.objectstore import S3Store, StoreConflict
from choreo.store import ChecksumMismatch, OutsideStore, Store, encode_hdf5
from tests.conftest import TEST_BUCKET, Services, s3_env, wait_until

# The first test to ask for the object store may build SeaweedFS (minutes, cold): its setup
# counts against that test's timeout.
pytestmark = pytest.mark.timeout(1500)

ARRAYS = {"X": np.arange(2000.0), "Y": np.linspace(0, 1, 2000), "Z": np.zeros(2000)}


@pytest.fixture
def env(object_store, monkeypatch) -> dict[str, str]:
    """This test's store (a prefix of its own) as the services' environment, set here too."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    values = s3_env(object_store, f"t{uuid.uuid4().hex[:10]}")
    for name, value in values.items():
        if value:
            monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def store(env) -> S3Store:
    made = Store()
    assert isinstance(made, S3Store)
    return made


@pytest.fixture
def raw(object_store):
    """A plain boto3 client with the server's credentials: what an intruder with write access
    (or a bug elsewhere) could do to the bucket, conditional puts bypassed."""
    from lisa_choreo.localstack import objectstore

    return objectstore.client(object_store)


def test_round_trip_and_the_same_content_is_the_same_object(store, tmp_path):
    ref = store.put(ARRAYS, {"t0": 10.0, "dt": 5.0})
    assert ref.uri == f"{store.uri}/{ref.sha256[:2]}/{ref.sha256}.h5"
    assert ref.uri.startswith(f"s3://{TEST_BUCKET}/t")
    got = store.get(ref)
    for name, array in ARRAYS.items():
        np.testing.assert_array_equal(got[name], array)
    assert store.get_attrs(ref) == {"t0": 10.0, "dt": 5.0}
    assert store.get(ref, ["Y"]).keys() == {"Y"}
    assert store.put(ARRAYS, {"t0": 10.0, "dt": 5.0}) == ref  # a replayed put: a no-op
    file_ref = Store(tmp_path.as_uri()).put(ARRAYS, {"t0": 10.0, "dt": 5.0})
    assert (file_ref.sha256, file_ref.size_bytes) == (ref.sha256, ref.size_bytes)
    assert store.read_bytes(ref) == Store(tmp_path.as_uri()).read_bytes(file_ref)


def test_write_once_refuses_other_bytes_under_a_taken_key(store, raw):
    ref = store.put(ARRAYS)
    key = store.key_of(ref)
    original = store.read_bytes(ref)
    assert store.put_once(key, b"other bytes") is False  # If-None-Match: * refused it
    assert store.read_bytes(ref) == original
    # Other bytes already sitting at a content address (written around the store): a put of the
    # content that address names is refused, classified, and nothing is overwritten.
    blob = encode_hdf5({"X": np.ones(10)})
    digest = hashlib.sha256(blob).hexdigest()
    planted = blob[:-1] + bytes([blob[-1] ^ 1])
    raw.put_object(Bucket=store.bucket, Key=store.key_of_digest(digest), Body=planted)
    with pytest.raises(StoreConflict) as err:
        store.put({"X": np.ones(10)})
    assert err.value.reason == "store-conflict"
    assert isinstance(err.value, PermanentError)
    body = raw.get_object(Bucket=store.bucket, Key=store.key_of_digest(digest))["Body"].read()
    assert body == planted


def test_a_tampered_object_is_detected_on_read(store, raw):
    ref = store.put(ARRAYS)
    key = store.key_of(ref)
    blob = store.read_bytes(ref)
    raw.put_object(Bucket=store.bucket, Key=key, Body=blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(ChecksumMismatch) as err:
        store.get(ref)
    assert err.value.reason == "checksum-mismatch"
    raw.put_object(Bucket=store.bucket, Key=key, Body=blob + b"\0")
    with pytest.raises(PermanentError) as err:
        store.get(ref)
    assert err.value.reason == "size-mismatch"
    raw.delete_object(Bucket=store.bucket, Key=key)
    with pytest.raises(PermanentError) as err:
        store.get(ref)
    assert err.value.reason == "store-missing"


def test_hostile_references_never_reach_another_object(env, store, raw):
    """Real products sit in the same bucket under another prefix and in another bucket; a
    reference naming them (with their true SHA-256) is refused, however it is spelled."""
    other = Store(f"s3://{TEST_BUCKET}/elsewhere-{uuid.uuid4().hex[:8]}")
    foreign = other.put({"X": np.arange(5.0)})
    assert other.get(foreign)["X"][4] == 4.0  # a real, readable product
    sha = foreign.sha256
    raw.create_bucket(Bucket="lisa-test-other")
    raw.put_object(
        Bucket="lisa-test-other", Key=f"{sha[:2]}/{sha}.h5", Body=other.read_bytes(foreign)
    )
    _, own_prefix = store.bucket, store.prefix
    spellings = [
        foreign.uri,
        f"s3://lisa-test-other/{sha[:2]}/{sha}.h5",
        f"s3://{TEST_BUCKET}/{own_prefix}/../{other.prefix}/{sha[:2]}/{sha}.h5",
        f"s3://{TEST_BUCKET}/{own_prefix}/%2e%2e/{other.prefix}/{sha[:2]}/{sha}.h5",
        f"s3://{TEST_BUCKET}/{own_prefix}/{sha[:2]}/{sha}.h5?x=/{other.prefix}",
        f"file:///{other.prefix}/{sha[:2]}/{sha}.h5",
    ]
    for uri in spellings:
        with pytest.raises(OutsideStore):
            store.get(foreign.model_copy(update={"uri": uri}))


def test_the_size_cap_and_a_lying_size(env, store):
    ref = store.put(ARRAYS)
    capped = Store(store.uri, max_bytes=ref.size_bytes - 1)
    with pytest.raises(PermanentError) as err:
        capped.get(ref)
    assert err.value.reason == "too-large"
    with pytest.raises(PermanentError) as err:
        store.get(ref.model_copy(update={"size_bytes": 100}))  # smaller than the object
    assert err.value.reason == "size-mismatch"
    assert Store(store.uri, max_bytes=ref.size_bytes).get(ref).keys() == ARRAYS.keys()


def test_unavailable_stores_are_transient_and_say_no_secret(env, store, monkeypatch):
    ref = store.put(ARRAYS)
    with pytest.raises(TransientError, match="no bucket"):
        Store(f"s3://lisa-test-missing/{store.prefix}").get(
            ref.model_copy(update={"uri": ref.uri.replace(TEST_BUCKET, "lisa-test-missing")})
        )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "LISAWRONGKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-1234567890")
    with pytest.raises(TransientError) as err:
        Store(store.uri).get(ref)
    assert "wrong-secret-value" not in str(err.value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(TransientError, match="unavailable"):
        Store(store.uri).put(ARRAYS)


def test_ingest_ledger_notes(store):
    name = f"ingested/{'a' * 64}.done"
    assert not store.note_exists(name)
    store.write_note(name, "seg-1\n")
    assert store.note_exists(name)


def test_a_second_server_on_the_same_ports_is_refused(object_store, tmp_path):
    """weed fixes its gRPC sockets' paths in /tmp from the port, whatever the network
    namespace: a second server on the same ports (another state, another address) would take
    over the first one's sockets and the two would mix their objects. It is refused before it
    starts; the filer's and S3 gateway's sockets are the server's own."""
    from lisa_choreo.localstack import objectstore

    assert all(path.is_socket() for path in object_store.grpc_sockets())
    for service in ("filer", "s3"):
        own = object_store.socket_path(service)
        assert own.is_socket(), own
        assert own.is_relative_to(object_store.state_dir), own
    twin = objectstore.ObjectStoreServer(object_store.port, state_root=tmp_path)
    with pytest.raises(objectstore.SocketClash, match=str(object_store.port)):
        objectstore.start(twin)
    assert objectstore.running_pid(twin) is None
    assert not twin.pid_file.exists()
    assert objectstore.probe(object_store)  # the first one untouched


def test_stack_status_and_env_report_the_object_store(object_store, capsys):
    from lisa_choreo.commands.stack import _objectstore_up
    from lisa_choreo.localstack import objectstore

    assert _objectstore_up(object_store.port) is False  # `stack up --object-store`: running
    up = capsys.readouterr().out
    assert "export LISA_STORE_URI=s3://lisa-choreo/store" in up
    assert f"export AWS_SHARED_CREDENTIALS_FILE={object_store.credentials_file}" in up
    assert "lisa-choreo" in [
        b["Name"] for b in objectstore.client(object_store).list_buckets()["Buckets"]
    ]

    cli = [sys.executable, "-m", "lisa_choreo.cli", "stack"]
    port = ["--object-store", "--object-store-port", str(object_store.port), "--no-tracing"]
    status = subprocess.run(
        [*cli, "status", *port], capture_output=True, text=True, timeout=60, check=False
    )
    assert f"object store: ready on {object_store.endpoint}" in status.stdout, status.stdout
    env = subprocess.run(
        [*cli, "env", *port], capture_output=True, text=True, timeout=60, check=False
    )
    assert env.returncode == 0, env.stderr
    assert f"export AWS_SHARED_CREDENTIALS_FILE={object_store.credentials_file}" in env.stdout
    assert f"export AWS_ENDPOINT_URL_S3={object_store.endpoint}" in env.stdout
    for admin in (False, True):
        key_id, secret = objectstore._credentials(object_store, admin)
        assert secret not in env.stdout + status.stdout + up
        assert key_id not in env.stdout + status.stdout + up


def test_the_services_key_reaches_objects_not_buckets(object_store):
    """Least privilege: the key the services get reads, writes and lists objects; creating or
    deleting a bucket is refused (only the stack's own key may)."""
    from botocore.exceptions import ClientError

    from lisa_choreo.localstack import objectstore

    services = objectstore.client(object_store, attempts=1, admin=False)
    key = f"least-privilege/{uuid.uuid4().hex}"
    services.put_object(Bucket=TEST_BUCKET, Key=key, Body=b"x")
    assert services.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read() == b"x"
    for refused in (
        lambda: services.create_bucket(Bucket=f"lisa-other-{uuid.uuid4().hex[:8]}"),
        lambda: services.delete_bucket(Bucket=TEST_BUCKET),
    ):
        with pytest.raises(ClientError) as denied:
            refused()
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
    stack = objectstore.client(object_store)
    assert TEST_BUCKET in [b["Name"] for b in stack.list_buckets()["Buckets"]]


@pytest.mark.kafka
def test_services_keep_their_products_in_the_object_store(services: Services, env, raw):
    """ingest, condition, gb-search and estimate as processes, the store on S3: two segments
    end to end, every product an object under the test's prefix, none on disk; re-ingesting
    the file publishes nothing (the ledger is a note in the bucket)."""
    from lisa_pipeline.events import SourceEstimates
    from lisa_pipeline.topics import SOURCES_ESTIMATES
    from tests.integration.test_pipeline import events

    services.env.update(env)
    for name in ("condition", "gb-search", "estimate"):
        services.start(name, wait=False)
    for proc in services.started:
        proc.wait_ready()
    path = services.workdir / "two.h5"
    made = services.cli("simulate", str(path), "--days", "2", "--sources", "none", "--seed", "3")
    assert made.returncode == 0, made.stderr
    first = services.cli("ingest", str(path))
    assert first.returncode == 0, first.stderr
    assert "published 2 segment(s)" in first.stdout
    estimates = wait_until(
        lambda: (
            (e := events(services.settings, SOURCES_ESTIMATES, SourceEstimates))
            and len(e) >= 2
            and e
        ),
        180,
        "the estimates of both segments",
    )
    store = Store(env["LISA_STORE_URI"])
    for estimate in estimates:
        assert estimate.data.statistic.uri.startswith(env["LISA_STORE_URI"] + "/")
        assert np.isfinite(store.get(estimate.data.statistic)["stat"]).any()
    listed = raw.list_objects_v2(Bucket=TEST_BUCKET, Prefix=store.prefix + "/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    products = [k for k in keys if k.endswith(".h5")]
    assert len(products) >= 2 * 3  # per segment: raw, conditioned, statistic (at least)
    assert any(k.startswith(f"{store.prefix}/ingested/") for k in keys)
    assert not (services.workdir / "store").exists()
    again = services.cli("ingest", str(path))
    assert again.returncode == 0, again.stderr
    assert "published nothing" in again.stdout
