"""The s3:// claim-check store's pure parts: the root URI, key derivation, confinement of hostile
references (decided before any request), and the stack's server command and credentials. The
requests themselves are tested on a real SeaweedFS (tests/integration/test_objectstore.py)."""

from __future__ import annotations

import hashlib
import json
import stat

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from choreo.errors import PermanentError
from choreo.objectstore import S3Store, parse_root
from choreo.store import ArrayRef, OutsideStore, Store, encode_hdf5

SHA = hashlib.sha256(b"product").hexdigest()


@pytest.fixture(autouse=True)
def _no_endpoint(monkeypatch):
    """Nothing here may reach a server: the endpoint is a closed loopback port."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")


def ref(uri: str, sha: str = SHA, size: int = 10) -> ArrayRef:
    return ArrayRef(uri=uri, sha256=sha, size_bytes=size, shapes={"X": [1]})


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [
        ("s3://lisa-choreo/store", "lisa-choreo", "store"),
        ("s3://lisa-choreo/store/", "lisa-choreo", "store"),
        ("s3://lisa.data/a/b-c/d_e.f", "lisa.data", "a/b-c/d_e.f"),
        ("s3://abc", "abc", ""),
        ("s3://abc/", "abc", ""),
    ],
)
def test_root_uris_give_bucket_and_prefix(uri, bucket, prefix):
    assert parse_root(uri) == (bucket, prefix)
    store = Store(uri)
    assert isinstance(store, S3Store)
    assert isinstance(store, Store)
    assert store.uri == (f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}")


@pytest.mark.parametrize(
    "uri",
    [
        "s3://Lisa/store",  # S3 bucket names are lowercase
        "s3://ab/store",  # too short
        "s3://a..b/store",
        "s3://-lisa/store",
        "s3://lisa:9000/store",  # a port
        "s3://key:secret@lisa/store",  # credentials
        "s3://lisa/a/../b",
        "s3://lisa/a/./b",
        "s3://lisa/a//b",
        "s3://lisa/%2e%2e/b",
        "s3://lisa/store?versionId=1",
        "s3://lisa/store#x",
        "s3://lisa/st ore",
        "s3://",
        "gs://lisa/store",
    ],
)
def test_bad_root_uris_are_refused(uri):
    with pytest.raises(PermanentError) as err:
        parse_root(uri)
    assert err.value.reason == "unsupported-store"


def test_an_unknown_scheme_is_refused_by_store():
    with pytest.raises(PermanentError) as err:
        Store("ftp://host/store")
    assert err.value.reason == "unsupported-store"


def test_the_root_follows_lisa_store_uri(monkeypatch, tmp_path):
    monkeypatch.setenv("LISA_STORE_URI", "s3://lisa-choreo/runs/x")
    assert Store().uri == "s3://lisa-choreo/runs/x"
    monkeypatch.setenv("LISA_STORE_URI", tmp_path.as_uri())
    assert type(Store()) is Store


def test_keys_are_derived_from_the_content():
    store = Store("s3://lisa-choreo/store")
    assert store.key_of_digest(SHA) == f"store/{SHA[:2]}/{SHA}.h5"
    assert store.uri_of(SHA) == f"s3://lisa-choreo/store/{SHA[:2]}/{SHA}.h5"
    assert Store("s3://lisa-choreo").key_of_digest(SHA) == f"{SHA[:2]}/{SHA}.h5"
    good = ref(store.uri_of(SHA))
    assert store.key_of(good) == f"store/{SHA[:2]}/{SHA}.h5"
    with pytest.raises(OutsideStore):
        store.key_of_digest("../" + SHA[3:])


def test_both_backends_encode_a_product_to_the_same_bytes(tmp_path):
    """The same segment has the same SHA-256 (and so the same key) in either store."""
    arrays = {"X": np.arange(50.0), "Y": np.ones(50, dtype=np.float32)}
    stored = Store(tmp_path.as_uri()).put(arrays, {"t0": 1.0})
    assert stored.sha256 == hashlib.sha256(encode_hdf5(arrays, {"t0": 1.0})).hexdigest()
    assert stored.size_bytes == len(encode_hdf5(arrays, {"t0": 1.0}))


OTHER = hashlib.sha256(b"other").hexdigest()
HOSTILE = [
    ("file:///etc/passwd", "scheme"),
    (f"http://lisa-choreo/store/{SHA[:2]}/{SHA}.h5", "scheme"),
    (f"s3://other-bucket/store/{SHA[:2]}/{SHA}.h5", "another bucket"),
    (f"s3://LISA-CHOREO/store/{SHA[:2]}/{SHA}.h5", "another bucket"),
    (f"s3://key:secret@lisa-choreo/store/{SHA[:2]}/{SHA}.h5", "another bucket"),
    (f"s3://lisa-choreo:443/store/{SHA[:2]}/{SHA}.h5", "another bucket"),
    (f"s3://lisa-choreo/other/{SHA[:2]}/{SHA}.h5", "SHA-256 names"),
    (f"s3://lisa-choreo/store/{SHA[:2]}/../../other/{SHA}.h5", "SHA-256 names"),
    (f"s3://lisa-choreo/store/%2e%2e/{SHA[:2]}/{SHA}.h5", "SHA-256 names"),
    (f"s3://lisa-choreo/store/{SHA[:2]}/{SHA}.h5?versionId=1", "query"),
    (f"s3://lisa-choreo/store/{SHA[:2]}/{SHA}.h5#x", "query"),
    (f"s3://lisa-choreo/store/{OTHER[:2]}/{OTHER}.h5", "SHA-256 names"),  # another product
    (f"s3://lisa-choreo/store//{SHA[:2]}/{SHA}.h5", "SHA-256 names"),
    (f"s3://lisa-choreo/store/{SHA[:2]}/{SHA}.H5", "SHA-256 names"),
    ("s3://[::1/x", "not a URI"),
]


@pytest.mark.parametrize(("uri", "why"), HOSTILE)
def test_hostile_references_are_refused_before_any_request(uri, why):
    store = Store("s3://lisa-choreo/store")
    with pytest.raises(OutsideStore) as err:
        store.read_bytes(ref(uri))  # the endpoint is closed: a request would be transient
    assert err.value.reason == "outside-store"
    assert why in str(err.value)
    assert "secret" not in str(err.value)


def test_too_large_is_refused_before_any_request():
    store = Store("s3://lisa-choreo/store", max_bytes=100)
    with pytest.raises(PermanentError) as err:
        store.read_bytes(ref(store.uri_of(SHA), size=101))
    assert err.value.reason == "too-large"


def test_an_s3_store_has_no_local_paths():
    store = Store("s3://lisa-choreo/store")
    with pytest.raises(PermanentError):
        store.path_of(ref(store.uri_of(SHA)))


@pytest.mark.parametrize(
    "name", ["ingested/x.done", "../ingested/" + SHA + ".done", f"ingested/{SHA}", "a/b/c.done"]
)
def test_note_names_are_checked(name, tmp_path):
    for store in (Store("s3://lisa-choreo/store"), Store(tmp_path.as_uri())):
        with pytest.raises(PermanentError) as err:
            store.note_exists(name)
        assert err.value.reason == "outside-store"


def test_file_store_notes_round_trip(tmp_path):
    store = Store(tmp_path.as_uri())
    name = f"ingested/{SHA}.done"
    assert not store.note_exists(name)
    store.write_note(name, "seg-1\n")
    assert store.note_exists(name)
    assert (tmp_path / "ingested" / f"{SHA}.done").read_text() == "seg-1\n"


def test_a_run_on_an_object_store_gets_its_own_prefix(monkeypatch, tmp_path):
    from lisa_choreo.mainjob import run_store_uri

    monkeypatch.setenv("LISA_STORE_URI", "s3://lisa-choreo/store/")
    assert run_store_uri(tmp_path, "demo-ab12") == "s3://lisa-choreo/store/runs/demo-ab12"
    monkeypatch.delenv("LISA_STORE_URI")
    assert run_store_uri(tmp_path, "demo-ab12") == (tmp_path / "store").as_uri()


def test_the_stack_server_listens_on_loopback_ports_of_its_own(monkeypatch, tmp_path):
    from lisa_choreo.localstack import objectstore

    monkeypatch.setenv("LISA_CHOREO_HOME", str(tmp_path))
    server = objectstore.ObjectStoreServer(8433)
    command = server.command(tmp_path / "weed")
    ports = [int(a.split("=")[1]) for a in command if a.split("=")[0].endswith((".port", "grpc"))]
    assert len(ports) == len(set(ports)) == 8
    assert all(8433 <= p <= 8433 + 10003 for p in ports)
    assert "-ip.bind=127.0.0.1" in command
    assert "-ip=127.0.0.1" in command
    # nothing leaves the machine (telemetry is on by default), no default port is opened
    assert {"-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0"} <= set(command)
    with pytest.raises(objectstore.StackError):
        objectstore.ObjectStoreServer(60000)


def test_stack_credentials_are_private_and_never_in_the_environment(monkeypatch, tmp_path):
    from lisa_choreo.localstack import objectstore

    monkeypatch.setenv("LISA_CHOREO_HOME", str(tmp_path))
    server = objectstore.ObjectStoreServer(8433)
    path = objectstore.ensure_credentials(server)
    for made in (path, server.admin_credentials_file, server.server_config):
        assert stat.S_IMODE(made.stat().st_mode) == 0o600
    key_id, secret = objectstore._credentials(server)
    admin_id, admin_secret = objectstore._credentials(server, admin=True)
    assert len(secret) >= 40
    assert len({key_id, admin_id}) == len({secret, admin_secret}) == 2  # two keys
    identities = json.loads(server.server_config.read_text())["identities"]
    actions = {i["credentials"][0]["secretKey"]: set(i["actions"]) for i in identities}
    assert actions[secret] == {"Read", "Write", "List"}  # the services': objects only
    assert "Admin" in actions[admin_secret]
    assert admin_secret not in path.read_text()  # the services' file holds their key only
    first = path.read_text()
    objectstore.ensure_credentials(server)
    assert path.read_text() == first  # made once
    env = objectstore.service_env(server)
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == str(path)
    assert env["LISA_STORE_URI"] == "s3://lisa-choreo/store"
    assert not any(secret in value or key_id in value for value in env.values())
    assert not any(admin_secret in value or admin_id in value for value in env.values())
    assert not any(secret in a for a in server.command(path))


_PIECES = st.sampled_from(
    [
        *("s3://", "lisa-choreo", "/", "store", "..", ".", "%2e", "%2F", "?", "#", "@", ":"),
        *(SHA[:2], SHA, f"{SHA}.h5", OTHER, "\\", "\x00", "LISA-CHOREO", "other"),
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES | st.text(max_size=8), max_size=12).map("".join))
def test_any_uri_is_the_derived_key_or_refused(uri):
    """Whatever a reference's URI says, the store reads the one key its SHA-256 derives in its
    own bucket and prefix, or refuses it as ``outside-store``, never anything else."""
    store = Store("s3://lisa-choreo/store")
    try:
        key = store.key_of(ref(uri))
    except OutsideStore:
        return
    assert key == f"store/{SHA[:2]}/{SHA}.h5"
    assert uri == f"s3://lisa-choreo/{key}"
