"""The claim check on an S3-compatible object store: ``LISA_STORE_URI=s3://bucket/prefix``.

Same guarantees as the ``file://`` store (``choreo.store``), by other means:

- content-addressed: a product is the object ``<prefix>/<sha[:2]>/<sha>.h5``, its URI
  ``s3://<bucket>/<prefix>/<sha[:2]>/<sha>.h5``;
- write-once: every put is conditional (``If-None-Match: *``), so an existing object is never
  overwritten; when the key is taken, the object there is read back and must hash to the key's
  SHA-256 (a replayed put of the same content is a no-op), else the put is refused
  (``store-conflict``: someone wrote other bytes under a content address);
- verified on read: the object's length must equal the reference's ``size_bytes`` (checked on the
  response headers, before the body is read) and stay under ``LISA_STORE_MAX_BYTES``, and its
  SHA-256 must equal the reference's before h5py sees a byte;
- confined: a reference is hostile input; it names this store's bucket, prefix and the key its own
  SHA-256 derives, character for character, or it is refused (``outside-store``) before any
  request is made. No ``..``, percent-encoding, query, credentials or port can smuggle another key.

Endpoint and credentials come from the standard variables, read by the client itself:
``AWS_ENDPOINT_URL_S3`` (else ``AWS_ENDPOINT_URL``; unset means AWS), ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` or ``AWS_SHARED_CREDENTIALS_FILE`` (what ``lisa-choreo stack up
--object-store`` prints: a file reference, never the secret), and ``AWS_REGION`` (boto3 itself
reads only ``AWS_DEFAULT_REGION``, so ``AWS_REGION`` is passed explicitly; default ``us-east-1``).
No message of this module holds a credential: errors name the endpoint, bucket and key only.

Why boto3 (pinned in pyproject): it is the reference S3 client, kept by AWS, whose standard
variables above it reads natively (service-specific endpoints included), whose client is
thread-safe (services call the store from ``asyncio.to_thread``), and whose errors carry the S3
error code that the classification below needs (``PreconditionFailed`` for write-once,
``NoSuchKey``, ``SlowDown``...); ``put_object(IfNoneMatch="*")`` is a plain parameter. It is
pure Python (no wheel per platform, runs on the 3.11 service image). obstore is faster but its
errors are coarser and it reads fewer of the standard variables; s3fs adds fsspec and aiobotocore
on top of the same botocore for nothing this store needs. boto3 is imported only when an ``s3://``
store is opened, so the ``file://`` services never pay its import.

Errors: a missing object is ``store-missing`` (permanent, like a missing file); a refused,
unreachable, throttled or failing server, a missing bucket or refused credentials are
``TransientError`` (the input is fine; the store may heal, and the runner retries with backoff
before dead-lettering).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import numpy as np

from choreo.errors import PermanentError, TransientError
from choreo.store import (
    ArrayRef,
    ChecksumMismatch,
    OutsideStore,
    Store,
    _default_root,
    _max_bytes,
    encode_hdf5,
)

DEFAULT_REGION = "us-east-1"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_NO_BUCKET = frozenset({"NoSuchBucket"})
_TAKEN = frozenset({"PreconditionFailed", "412"})


class StoreConflict(PermanentError):
    """Other bytes than the content under a content address: written by something else."""

    def __init__(self, uri: str, why: str) -> None:
        super().__init__("store-conflict", f"{uri}: {why}")


def parse_root(uri: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` -> (bucket, prefix without slashes at either end).

    Strict, because the root is what confines every reference: a DNS-style bucket name (S3's
    rules: 3-63 lowercase letters, digits, dots, hyphens; no ``..``), prefix segments of letters,
    digits, ``._-`` only and never ``.`` or ``..``, no credentials, port, query or fragment."""
    try:
        parsed = urlparse(uri)
    except ValueError as exc:
        raise PermanentError("unsupported-store", f"not a store URI: {uri[:80]!r}") from exc
    if parsed.scheme != "s3":
        raise PermanentError("unsupported-store", f"not an s3:// store URI: {uri[:80]!r}")
    bucket = parsed.netloc
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise PermanentError(
            "unsupported-store", f"{uri[:80]!r}: {bucket[:64]!r} is not an S3 bucket name"
        )
    if parsed.query or parsed.fragment or parsed.params:
        raise PermanentError("unsupported-store", f"{uri[:80]!r}: a query or fragment")
    prefix = parsed.path.strip("/")
    segments = prefix.split("/") if prefix else []
    for segment in segments:
        if not _SEGMENT.match(segment) or segment in (".", ".."):
            raise PermanentError(
                "unsupported-store", f"{uri[:80]!r}: prefix segment {segment[:32]!r} refused"
            )
    return bucket, prefix


def endpoint_url() -> str | None:
    """The S3 endpoint: ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``, else AWS's."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def make_client(endpoint: str | None = None) -> Any:
    """A boto3 S3 client on the standard variables. Path-style addressing when an endpoint is
    given (a local or self-hosted server has no per-bucket DNS names); AWS's default otherwise.
    botocore retries throttling and 5xx three times before an error reaches the store."""
    import boto3
    from botocore.config import Config

    endpoint = endpoint or endpoint_url()
    config = Config(
        region_name=region(),
        connect_timeout=5,
        read_timeout=60,
        retries={"mode": "standard", "max_attempts": 3},
        s3={"addressing_style": "path" if endpoint else "auto"},
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    return str(error.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


class S3Store(Store):
    """The ``s3://`` store. Built by ``Store(uri)`` when the URI's scheme is ``s3`` (so every
    ``Store()`` of the services follows ``LISA_STORE_URI``); the shared parts (HDF5 encoding,
    the dataset checks on read) are ``Store``'s."""

    def __init__(self, root_uri: str | None = None, max_bytes: int | None = None) -> None:
        self.bucket, self.prefix = parse_root(root_uri or _default_root())
        self.max_bytes = max_bytes if max_bytes is not None else _max_bytes()
        self.endpoint = endpoint_url()
        self._client: Any = None
        self._lock = threading.Lock()

    # -- names ---------------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def key_of_digest(self, sha256: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise OutsideStore("not a SHA-256")
        return self.key(f"{sha256[:2]}/{sha256}.h5")

    def uri_of(self, sha256: str) -> str:
        return f"s3://{self.bucket}/{self.key_of_digest(sha256)}"

    def key_of(self, ref: ArrayRef) -> str:
        """The only key ``ref`` may name: ``<prefix>/<sha[:2]>/<sha>.h5`` in this bucket.
        Anything else is an ``OutsideStore`` error, decided without a request."""
        try:
            parsed = urlparse(ref.uri)
        except ValueError as exc:
            raise OutsideStore("not a URI") from exc
        if parsed.scheme != "s3":
            raise OutsideStore(f"scheme {parsed.scheme[:16]!r} is not this store's (s3)")
        if parsed.netloc != self.bucket:
            raise OutsideStore("another bucket, or credentials or a port in the URI")
        if parsed.query or parsed.fragment or parsed.params:
            raise OutsideStore("a query or fragment in an s3 URI")
        if ref.uri != self.uri_of(ref.sha256):
            raise OutsideStore("the URI is not the object its SHA-256 names in this store")
        return self.key_of_digest(ref.sha256)

    def path_of(self, ref: ArrayRef):
        raise PermanentError("unsupported-store", f"{self.uri} has no local files: read_bytes")

    def describe(self) -> str:
        return f"{self.uri} on {self.endpoint or 'AWS'}"

    # -- requests ------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = make_client(self.endpoint)
            return self._client

    def _transient(self, what: str, exc: Exception) -> TransientError:
        code = _code(exc) if hasattr(exc, "response") else type(exc).__name__
        return TransientError(f"store {self.describe()} unavailable ({what}: {code})")

    def _classify(self, what: str, uri: str, exc: Exception) -> Exception:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in _MISSING:
                return PermanentError("store-missing", f"{uri} does not exist")
            if code in _NO_BUCKET:
                return TransientError(
                    f"store {self.describe()} unavailable: no bucket {self.bucket!r}"
                )
            return self._transient(what, exc)
        if isinstance(exc, BotoCoreError):
            return self._transient(what, exc)
        return exc

    def put_once(self, key: str, blob: bytes) -> bool:
        """Create the object ``key`` with ``blob`` unless the key exists (conditional put).
        True if created here, False if the key was taken (nothing written)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=blob,
                IfNoneMatch="*",
                ContentType="application/x-hdf5",
            )
        except ClientError as exc:
            if _code(exc) in _TAKEN:
                return False
            if _code(exc) == "ConditionalRequestConflict":  # a concurrent put of the same key
                raise TransientError(f"s3://{self.bucket}/{key}: concurrent write") from exc
            raise self._classify("put", f"s3://{self.bucket}/{key}", exc) from exc
        except BotoCoreError as exc:
            raise self._classify("put", f"s3://{self.bucket}/{key}", exc) from exc
        return True

    def put_blob(self, blob: bytes) -> tuple[str, str]:
        """Store ``blob`` under its SHA-256, write-once; (uri, sha256). An existing object at that
        address must be these bytes (read back and hashed), else ``StoreConflict``."""
        digest = hashlib.sha256(blob).hexdigest()
        key = self.key_of_digest(digest)
        uri = f"s3://{self.bucket}/{key}"
        if not self.put_once(key, blob):
            ref = ArrayRef(uri=uri, sha256=digest, size_bytes=len(blob), shapes={})
            try:
                self.read_bytes(ref)
            except ChecksumMismatch as exc:
                raise StoreConflict(uri, "holds other bytes than its SHA-256 names") from exc
            except PermanentError as exc:
                if exc.reason in ("size-mismatch", "too-large"):
                    raise StoreConflict(uri, f"holds other bytes ({exc})") from exc
                raise
        return uri, digest

    def put(
        self, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None = None
    ) -> ArrayRef:
        """Write once; the same content gives the same object (times are not recorded)."""
        blob = encode_hdf5(arrays, attrs)
        uri, digest = self.put_blob(blob)
        return ArrayRef(
            uri=uri,
            sha256=digest,
            size_bytes=len(blob),
            shapes={k: list(np.shape(v)) for k, v in arrays.items()},
            dtypes={k: np.asarray(v).dtype.name for k, v in arrays.items()},
        )

    def read_bytes(self, ref: ArrayRef) -> bytes:
        """The object's bytes, after the confinement, cap and length checks and its SHA-256."""
        key = self.key_of(ref)
        if ref.size_bytes > self.max_bytes:
            raise PermanentError(
                "too-large", f"{ref.size_bytes} bytes > the store's cap of {self.max_bytes}"
            )
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise self._classify("get", ref.uri, exc) from exc
        body = response["Body"]
        try:
            length = int(response.get("ContentLength", -1))
            if length != ref.size_bytes:
                raise PermanentError(
                    "size-mismatch", f"{ref.uri}: {length} bytes != {ref.size_bytes} referenced"
                )
            blob = body.read(self.max_bytes + 1)
        except (BotoCoreError, OSError) as exc:
            raise self._classify("get", ref.uri, exc) from exc
        finally:
            body.close()
        if len(blob) != ref.size_bytes:
            raise PermanentError(
                "size-mismatch", f"{ref.uri}: {len(blob)} bytes read != {ref.size_bytes}"
            )
        actual = hashlib.sha256(blob).hexdigest()
        if actual != ref.sha256:
            raise ChecksumMismatch(ref, actual)
        return blob

    # -- notes (the ingest ledger) -------------------------------------------------------------

    def note_exists(self, name: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key(self.check_note_name(name))
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise self._classify("head", f"s3://{self.bucket}/{key}", exc) from exc
        except BotoCoreError as exc:
            raise self._classify("head", f"s3://{self.bucket}/{key}", exc) from exc
        return True

    def write_note(self, name: str, text: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key(self.check_note_name(name))
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=text.encode())
        except (ClientError, BotoCoreError) as exc:
            raise self._classify("put", f"s3://{self.bucket}/{key}", exc) from exc
