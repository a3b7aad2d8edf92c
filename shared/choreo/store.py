"""The claim check: arrays live in immutable, content-addressed HDF5 files, events carry a
reference (URI, SHA-256, shapes). Writers go through a temp file + rename, so a reader never sees a
partial file; readers verify the checksum before use.

Only ``file://`` roots for now (``LISA_STORE_URI``); an S3-compatible backend slots in behind the
same two calls.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
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


class ArrayRef(BaseModel):
    """Where a product is and how to check it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str = Field(description="file:// URI of the HDF5 file")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the file's bytes")
    size_bytes: int = Field(ge=0)
    shapes: dict[str, list[int]] = Field(description="dataset name -> shape")


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


def _path_of(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise PermanentError("unsupported-store", f"only file:// store URIs are supported: {uri}")
    return Path(unquote(parsed.path))


class Store:
    def __init__(self, root_uri: str | None = None) -> None:
        self.root = _path_of(root_uri or _default_root())

    def put(
        self, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None = None
    ) -> ArrayRef:
        """Write once; the same content gives the same file (times are not recorded)."""
        try:
            tmp_dir = self.root / "tmp"
            tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(suffix=".h5", dir=tmp_dir)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                with h5py.File(tmp, "w", libver="earliest", track_order=False) as f:
                    for key, value in sorted((attrs or {}).items()):
                        f.attrs[key] = value
                    for name, array in sorted(arrays.items()):
                        f.create_dataset(name, data=np.asarray(array), track_times=False)
                digest = sha256_file(tmp)
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
            size_bytes=final.stat().st_size,
            shapes={k: list(np.shape(v)) for k, v in arrays.items()},
        )

    def get(self, ref: ArrayRef, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Read datasets after checking the file's SHA-256 (bytes are read once, in memory)."""
        path = _path_of(ref.uri)
        try:
            blob = path.read_bytes()
        except FileNotFoundError as exc:
            if not self.root.exists():
                raise TransientError(f"store {self.root} unavailable") from exc
            raise PermanentError("store-missing", f"{ref.uri} does not exist") from exc
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.ENOTCONN, errno.ESTALE, errno.EAGAIN):
                raise TransientError(f"cannot read {ref.uri}: {exc}") from exc
            raise PermanentError("unreadable-file", f"cannot read {ref.uri}: {exc}") from exc
        actual = hashlib.sha256(blob).hexdigest()
        if actual != ref.sha256:
            raise ChecksumMismatch(ref, actual)
        try:
            with h5py.File(io.BytesIO(blob), "r") as f:
                wanted = names or list(f.keys())
                return {name: f[name][()] for name in wanted}
        except (OSError, KeyError, ValueError) as exc:
            raise PermanentError(
                "unreadable-file", f"{ref.uri}: not a readable HDF5 product: {exc}"
            ) from exc

    def get_attrs(self, ref: ArrayRef) -> dict[str, Any]:
        with h5py.File(_path_of(ref.uri), "r") as f:
            return dict(f.attrs)
