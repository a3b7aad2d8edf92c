"""The claim check: arrays live in immutable, content-addressed HDF5 files, events carry a
reference (URI, SHA-256, shapes). Writers go through a temp file + rename, so a reader never sees a
partial file; readers verify the checksum before use.

The root is ``LISA_STORE_URI``: a ``file://`` folder (this module) or an ``s3://bucket/prefix``
of an S3-compatible object store (``choreo.objectstore``, same guarantees); ``Store(uri)`` gives
the backend of the URI's scheme, so the services never choose.

A reference is hostile input (it comes in a Kafka record): ``Store.get`` resolves it only to the
file its SHA-256 names inside the configured root. Any other URI (another scheme, a host part,
``..``, a query, another folder), a symlink or a non-regular file is refused with a reason before
a byte is read; the size must equal ``size_bytes`` and stay under ``LISA_STORE_MAX_BYTES`` before
anything is hashed; the datasets' shapes and types are checked against the reference before they
are read (no decompression bomb). Error texts name the reference, never a file outside the store.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import h5py
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from choreo.errors import PermanentError, TransientError
from choreo.settings import home

_CHUNK = 1 << 20
DEFAULT_MAX_BYTES = 1 << 30  # a year of 3 channels at 5 s is ~150 MB
READABLE_DTYPES = frozenset({"float64", "float32", "int64", "int32", "uint8", "bool"})


class ArrayRef(BaseModel):
    """Where a product is and how to check it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str = Field(description="file:// or s3:// URI of the HDF5 file")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the file's bytes")
    size_bytes: int = Field(ge=0)
    shapes: dict[str, list[int]] = Field(description="dataset name -> shape")
    dtypes: dict[str, str] | None = Field(
        None, description="dataset name -> numpy dtype (checked before reading when present)"
    )


class ChecksumMismatch(PermanentError):
    def __init__(self, ref: ArrayRef, actual: str) -> None:
        super().__init__(
            "checksum-mismatch", f"{ref.uri}: SHA-256 {actual[:12]}... != {ref.sha256[:12]}..."
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _default_root() -> str:
    from_env = os.environ.get("LISA_STORE_URI")
    if from_env:
        return from_env
    return (home() / "store").resolve().as_uri()


def _scheme(uri: str) -> str:
    try:
        return urlparse(uri).scheme
    except ValueError:
        return ""


def encode_hdf5(arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None = None) -> bytes:
    """The bytes of a product, in memory: the same content gives the same bytes (sorted names,
    no times), so both backends give a product the same SHA-256."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", libver="earliest", track_order=False) as f:
        for key, value in sorted((attrs or {}).items()):
            f.attrs[key] = value
        for name, array in sorted(arrays.items()):
            f.create_dataset(name, data=np.asarray(array), track_times=False)
    return buffer.getvalue()


def _path_of(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise PermanentError(
            "unsupported-store", f"only file:// and s3:// store URIs are supported: {uri[:80]!r}"
        )
    return Path(unquote(parsed.path))


def _max_bytes() -> int:
    return int(os.environ.get("LISA_STORE_MAX_BYTES", DEFAULT_MAX_BYTES))


class OutsideStore(PermanentError):
    """A reference that does not name a product of this store."""

    def __init__(self, why: str) -> None:
        super().__init__("outside-store", f"reference refused: {why}")


_NOTE = re.compile(r"^[a-z]{1,32}/[0-9a-f]{64}(\.[A-Za-z0-9_]{1,32})?\.done$")
"""``<kind>/<sha256>[.<label>].done``: a label (a cut's revision) of ingest's id characters."""


class Store:
    """The ``file://`` store; ``Store(uri)`` with an ``s3://`` URI (or ``LISA_STORE_URI``) is a
    ``choreo.objectstore.S3Store``, which overrides the byte-level parts (names, put, read,
    notes) and shares the rest (HDF5 encoding, the dataset checks)."""

    def __new__(cls, root_uri: str | None = None, max_bytes: int | None = None) -> Store:
        if cls is Store and _scheme(root_uri or _default_root()) == "s3":
            from choreo.objectstore import S3Store

            return super().__new__(S3Store)
        return super().__new__(cls)

    def __init__(self, root_uri: str | None = None, max_bytes: int | None = None) -> None:
        self.root = _path_of(root_uri or _default_root())
        self.max_bytes = max_bytes if max_bytes is not None else _max_bytes()

    @property
    def uri(self) -> str:
        """The store's root URI (what ``LISA_STORE_URI`` names)."""
        return self.root.as_uri()

    def describe(self) -> str:
        return self.uri

    @staticmethod
    def check_note_name(name: str) -> str:
        """Notes (``ingested/<sha256>.done``) are the only other names a store holds."""
        if not _NOTE.match(name):
            raise PermanentError("outside-store", f"not a note name: {name[:80]!r}")
        return name

    def note_exists(self, name: str) -> bool:
        """Whether the note ``name`` was written (the ingest ledger: a file published whole)."""
        return (self.root / self.check_note_name(name)).exists()

    def write_note(self, name: str, text: str) -> None:
        path = self.root / self.check_note_name(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as exc:
            raise TransientError(f"store {self.root} unavailable: {exc}") from exc

    def path_of(self, ref: ArrayRef) -> Path:
        """The only file ``ref`` may name: ``<root>/<sha[:2]>/<sha>.h5``. Anything else is an
        ``OutsideStore`` error (nothing is touched on disk)."""
        try:
            parsed = urlparse(ref.uri)
        except ValueError as exc:  # e.g. an unbalanced IPv6 bracket
            raise OutsideStore("not a URI") from exc
        if parsed.scheme != "file":
            raise OutsideStore(f"scheme {parsed.scheme[:16]!r} is not this store's (file)")
        if parsed.netloc not in ("", "localhost"):
            raise OutsideStore("a host part in a file URI")
        if parsed.query or parsed.fragment or parsed.params:
            raise OutsideStore("a query or fragment in a file URI")
        expected = self.root / ref.sha256[:2] / f"{ref.sha256}.h5"
        if unquote(parsed.path) != str(expected):
            raise OutsideStore("the URI is not the file its SHA-256 names in this store")
        return expected

    def _open_checked(self, ref: ArrayRef) -> int:
        """A descriptor on the product, after refusing symlinks, non-regular files and sizes
        other than the reference's or over the cap."""
        if not self.root.is_dir():  # an unmounted volume heals; a bad reference does not
            raise TransientError(f"store {self.root} unavailable")
        path = self.path_of(ref)
        if ref.size_bytes > self.max_bytes:
            raise PermanentError(
                "too-large", f"{ref.size_bytes} bytes > the store's cap of {self.max_bytes}"
            )
        try:
            if stat.S_ISLNK(os.lstat(path.parent).st_mode):
                raise OutsideStore("a symlinked store folder")
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError as exc:
            if not self.root.exists():
                raise TransientError(f"store {self.root} unavailable") from exc
            raise PermanentError("store-missing", f"{ref.uri} does not exist") from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OutsideStore("a symlink in place of a product") from exc
            if exc.errno in (errno.EIO, errno.ENOTCONN, errno.ESTALE, errno.EAGAIN):
                raise TransientError(f"cannot read {ref.uri}: {exc}") from exc
            raise PermanentError("unreadable-file", f"cannot read {ref.uri}: {exc}") from exc
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise OutsideStore("not a regular file")
        if info.st_size != ref.size_bytes:
            os.close(fd)
            raise PermanentError(
                "size-mismatch", f"{ref.uri}: {info.st_size} bytes != {ref.size_bytes} referenced"
            )
        return fd

    def put(
        self, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None = None
    ) -> ArrayRef:
        """Write once; the same content gives the same file (times are not recorded)."""
        blob = encode_hdf5(arrays, attrs)
        digest = hashlib.sha256(blob).hexdigest()
        try:
            tmp_dir = self.root / "tmp"
            tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(suffix=".h5", dir=tmp_dir)
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(blob)
                final = self.root / digest[:2] / f"{digest}.h5"
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)  # atomic; an identical file may already be there
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise TransientError(f"store {self.root} unavailable: {exc}") from exc
        return ArrayRef(
            uri=final.as_uri(),
            sha256=digest,
            size_bytes=len(blob),
            shapes={k: list(np.shape(v)) for k, v in arrays.items()},
            dtypes={k: np.asarray(v).dtype.name for k, v in arrays.items()},
        )

    def read_bytes(self, ref: ArrayRef) -> bytes:
        """The product's bytes, after the checks above and its SHA-256 (read once, in memory)."""
        fd = self._open_checked(ref)
        try:
            with os.fdopen(fd, "rb") as fh:
                # the referenced size (checked against fstat above, and under the cap), plus
                # one byte to see a file that grew since: a read sized by the cap instead
                # allocates the cap's worth of buffer for every product
                blob = fh.read(ref.size_bytes + 1)
        except OSError as exc:
            raise TransientError(f"cannot read {ref.uri}: {exc}") from exc
        actual = hashlib.sha256(blob).hexdigest()
        if actual != ref.sha256:
            raise ChecksumMismatch(ref, actual)
        return blob

    def get(self, ref: ArrayRef, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Read datasets after ``read_bytes``'s checks, each dataset's checks in ``_read``."""
        blob = self.read_bytes(ref)
        wanted = names or list(ref.shapes)
        for name in wanted:
            if name not in ref.shapes:
                raise PermanentError(
                    "missing-dataset", f"{ref.uri}: no dataset {name!r} referenced"
                )
        try:
            with h5py.File(io.BytesIO(blob), "r") as f:
                return {name: self._read(f, ref, name, blob) for name in wanted}
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise PermanentError(
                "unreadable-file", f"{ref.uri}: not a readable HDF5 product: {exc}"
            ) from exc

    def _read(
        self, f: h5py.File, ref: ArrayRef, name: str, blob: bytes | None = None
    ) -> np.ndarray:
        """One dataset, once its shape and type are the referenced ones and its decompressed
        size is bounded by the store's cap.

        A contiguous dataset (``encode_hdf5`` writes no other) is returned as a read-only view
        of ``blob``, the checked bytes, at the dataset's offset: no second copy of the data.
        A product is immutable, so read-only is its meaning too; a reader that needs to write
        copies. Other layouts (chunked, compact, compressed) are read through h5py."""
        if name not in f:
            raise PermanentError("missing-dataset", f"{ref.uri}: no dataset {name!r} in the file")
        dataset = f[name]
        if not isinstance(dataset, h5py.Dataset):
            raise PermanentError("unreadable-file", f"{ref.uri}: {name!r} is not a dataset")
        if list(dataset.shape) != list(ref.shapes[name]):
            raise PermanentError(
                "shape-mismatch", f"{ref.uri}: {name} is {dataset.shape}, not {ref.shapes[name]}"
            )
        dtype = dataset.dtype
        expected = (ref.dtypes or {}).get(name)
        if dtype.name != expected if expected else dtype.name not in READABLE_DTYPES:
            raise PermanentError("dtype-mismatch", f"{ref.uri}: {name} has type {dtype}")
        if dataset.size * dtype.itemsize > self.max_bytes:
            raise PermanentError("too-large", f"{ref.uri}: {name} would decompress past the cap")
        offset = dataset.id.get_offset() if blob is not None and dataset.size else None
        nbytes = dataset.size * dtype.itemsize
        if (
            offset is not None
            and dataset.chunks is None
            and dataset.compression is None
            and offset + nbytes <= len(blob)
        ):
            view = np.frombuffer(blob, dtype=dtype, count=dataset.size, offset=offset)
            return view.reshape(dataset.shape)
        return dataset[()]

    def get_attrs(self, ref: ArrayRef) -> dict[str, Any]:
        with h5py.File(io.BytesIO(self.read_bytes(ref)), "r") as f:
            return dict(f.attrs)
