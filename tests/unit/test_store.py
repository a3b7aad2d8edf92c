"""The claim-check store: content addressing, atomic immutable files, verified reads."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from choreo.errors import PermanentError, TransientError
from choreo.store import ChecksumMismatch, Store, sha256_file


def test_same_content_same_file_and_checked_reads(tmp_path):
    store = Store(tmp_path.as_uri())
    arrays = {"X": np.arange(1000.0), "mask": np.ones(1000, dtype=np.uint8)}
    a = store.put(arrays, {"t0": 5.0})
    b = store.put(arrays, {"t0": 5.0})
    assert a == b  # content-addressed: a retry rewrites nothing new
    path = Path(a.uri.removeprefix("file://"))
    assert path.name == f"{a.sha256}.h5"
    assert sha256_file(path) == a.sha256
    assert a.shapes == {"X": [1000], "mask": [1000]}
    got = store.get(a)
    np.testing.assert_array_equal(got["X"], arrays["X"])
    assert store.get_attrs(a)["t0"] == 5.0
    assert list((tmp_path / "tmp").iterdir()) == []  # no temp file left behind
    assert store.put({"X": np.arange(999.0)}).sha256 != a.sha256


def test_tampered_missing_and_truncated_files_are_permanent_errors(tmp_path):
    store = Store(tmp_path.as_uri())
    ref = store.put({"X": np.zeros(100)})
    path = Path(ref.uri.removeprefix("file://"))
    blob = path.read_bytes()
    path.write_bytes(blob[:-1] + b"\x01")
    with pytest.raises(ChecksumMismatch) as err:
        store.get(ref)
    assert err.value.reason == "checksum-mismatch"
    path.unlink()
    with pytest.raises(PermanentError) as err:
        store.get(ref)
    assert err.value.reason == "store-missing"
    # a file whose checksum matches but is not HDF5 (the producer wrote garbage)
    digest = hashlib.sha256(b"not hdf5").hexdigest()
    garbage = tmp_path / digest[:2] / f"{digest}.h5"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not hdf5")
    bad = ref.model_copy(
        update={"uri": garbage.as_uri(), "sha256": sha256_file(garbage), "size_bytes": 8}
    )
    with pytest.raises(PermanentError) as err:
        store.get(bad)
    assert err.value.reason == "unreadable-file"


def test_an_unreachable_store_is_transient(tmp_path):
    ref = Store(tmp_path.as_uri()).put({"X": np.zeros(3)})
    gone = Store((tmp_path / "unmounted").as_uri())
    moved = ref.model_copy(update={"uri": (tmp_path / "unmounted" / "x.h5").as_uri()})
    with pytest.raises(TransientError):
        gone.get(moved)
