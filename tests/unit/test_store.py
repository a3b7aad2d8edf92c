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


def test_datasets_are_read_only_views_of_the_checked_bytes(tmp_path):
    """Every dtype and shape a product holds comes back equal, read-only (a product is
    immutable; the arrays are views of the verified bytes, not a second copy)."""
    store = Store(tmp_path.as_uri())
    arrays = {
        "f": np.linspace(0.0, 1.0, 7),
        "i": np.arange(5, dtype=np.int32),
        "flags": np.array([True, False, True]),
        "mask": np.ones((3, 4), dtype=np.uint8),
        "big_endian": np.arange(4, dtype=">f8"),
        "scalar": np.float64(3.5),
        "empty": np.zeros(0),
    }
    ref = store.put(arrays)
    got = store.get(ref, ["f", "i", "flags", "mask", "big_endian", "scalar", "empty"])
    for name, value in arrays.items():
        np.testing.assert_array_equal(got[name], value)
        assert got[name].shape == np.shape(value)
        assert got[name].dtype == np.asarray(value).dtype
    with pytest.raises(ValueError, match="read-only"):
        got["f"][0] = 1.0
    assert set(store.get(ref, ["mask"])) == {"mask"}


def test_a_chunked_compressed_product_is_still_read(tmp_path):
    """A product another writer made with chunks and compression (no contiguous bytes to view)
    is read through h5py."""
    import io

    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("X", data=np.arange(5000.0), chunks=(1000,), compression="gzip")
    blob = buffer.getvalue()
    digest = hashlib.sha256(blob).hexdigest()
    path = tmp_path / digest[:2] / f"{digest}.h5"
    path.parent.mkdir()
    path.write_bytes(blob)
    ref = (
        Store(tmp_path.as_uri())
        .put({"X": np.zeros(1)})
        .model_copy(
            update={
                "uri": path.as_uri(),
                "sha256": digest,
                "size_bytes": len(blob),
                "shapes": {"X": [5000]},
                "dtypes": {"X": "float64"},
            }
        )
    )
    np.testing.assert_array_equal(Store(tmp_path.as_uri()).get(ref)["X"], np.arange(5000.0))
