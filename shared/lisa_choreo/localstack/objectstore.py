"""The object store of the local stack: SeaweedFS's S3 gateway, on loopback.

Why SeaweedFS: an S3-compatible server under Apache-2.0 (MinIO's server is AGPL) that is one Go
binary (``weed server`` runs its master, volume server, filer and S3 gateway in one process) and
honours conditional puts (``If-None-Match: *``), which the store's write-once guarantee needs.

Build: SeaweedFS is served by the Go module proxy only as a pseudo-version, and ``go install
pkg@version`` refuses its module because its ``go.mod`` has a ``replace`` directive. So the stack
writes a two-file wrapper module under ``$LISA_CHOREO_HOME/seaweedfs/build`` (a ``go.mod`` that
requires the pinned SeaweedFS and repeats that one ``replace``, a ``tools.go`` that imports the
``weed`` command), resolves it (``go mod tidy``, checksums verified against the Go checksum
database) and builds ``weed`` into ``$LISA_CHOREO_HOME/seaweedfs/bin`` once; a ``.version`` file
names what was built, so a new pin rebuilds and later calls need no network. Cold (empty Go
caches) that took 14 min on two cores shared with other jobs (2 min resolving and downloading
modules, 12 min compiling, 380 CPU-seconds), ~3.5 min on an idle two-core machine, 41 s with warm
Go caches; the binary is ~230 MB. Up in 3-4 s, ~145 MB resident.

Run: like the Kafka and Temporal processes (``brokers.spawn_detached``): its own session, a pid
file checked against ``/proc/<pid>/cmdline``, data, log, pid and credentials under
``$LISA_CHOREO_HOME/stack/objectstore-<port>``. Every port is on 127.0.0.1 and derived from the
S3 port ``P`` (default 8333): master ``P+1``, volume ``P+2``, filer ``P+3``, their gRPC ports
``P+10001..P+10003`` and the S3 gateway's ``P+10000``. Credentials are generated once per state
directory (random, mode 0600): ``s3.json`` for the server and ``credentials`` in the AWS shared
file format for clients; ``service_env`` points clients at that file
(``AWS_SHARED_CREDENTIALS_FILE``), so no secret is ever printed or passed on a command line.
Only the S3 port checks them: the master, volume and filer ports (HTTP and gRPC) take anyone who
can reach them, which is why everything binds to 127.0.0.1 (``-ip.bind``); its anonymous usage
report is turned off (``-master.telemetry=false``), so nothing leaves the machine.

Unix sockets: besides its TCP ports, ``weed server`` serves each gRPC service on a Unix socket at
a path fixed in its code, ``/tmp/seaweedfs-<service>-grpc-<port>.sock``, and routes its own calls
to that port through it. The file system is shared by every network namespace, so two servers
with the same gRPC ports on one machine (the stack's on loopback and a lab host's, say) take over
each other's sockets: the second one's filer then talked to the first one's master and volume
server (its puts failed, its notes were the other store's). So the filer's and S3 gateway's
sockets, which have flags, live in the server's own state directory, and ``start`` refuses to
start a server whose gRPC sockets another live process serves (``SocketClash``): servers that
share a machine need distinct ports (the lab's default is not the stack's).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import string
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from choreo.settings import home
from lisa_choreo.localstack.brokers import (
    StackError,
    _tail,
    managed_pid,
    spawn_detached,
    stop_managed,
)
from lisa_choreo.localstack.tools import GoBuild

MODULE = "github.com/seaweedfs/seaweedfs"
VERSION = "v0.0.0-20261109003541-7506e5f91cd6"
"""SeaweedFS 4.53 (the proxy serves it as a pseudo-version only)."""
COMMAND = f"{MODULE}/weed"
GO_MOD = f"""module lisa-choreo.local/seaweedfs-build

go 1.24

require {MODULE} {VERSION}

// SeaweedFS's own go.mod carries this replace; a wrapper module must repeat it.
replace github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0
"""
TOOLS_GO = f"""//go:build tools

// Package tools makes the weed command part of this module's build list.
package tools

import _ "{COMMAND}"
"""
DEFAULT_PORT = 8333
DEFAULT_BUCKET = "lisa-choreo"
DEFAULT_PREFIX = "store"
REGION = "us-east-1"


def bin_dir() -> Path:
    return home() / "seaweedfs" / "bin"


def binary_path() -> Path:
    return bin_dir() / "weed"


def _pinned() -> GoBuild:
    return GoBuild(binary_path(), bin_dir() / ".version", f"{MODULE}@{VERSION}")


def cached_binary() -> Path | None:
    """The built ``weed`` if this home holds the pinned version, else None (no build)."""
    return _pinned().cached()


def build(say=lambda text: None) -> Path:
    """Build the pinned ``weed`` once from the wrapper module; later calls return the cache."""
    pinned = _pinned()
    if (cached := pinned.cached()) is not None:
        return cached
    go = pinned.require_go("the object store (SeaweedFS)")
    src = home() / "seaweedfs" / "build"
    src.mkdir(parents=True, exist_ok=True)
    (src / "go.mod").write_text(GO_MOD)
    (src / "tools.go").write_text(TOOLS_GO)
    (src / "go.sum").unlink(missing_ok=True)  # resolved again for the pin written above
    bin_dir().mkdir(parents=True, exist_ok=True)
    say(f"building SeaweedFS ({VERSION}) with go build (once, 4-15 min) into {bin_dir()}")
    t0 = time.monotonic()
    flags = {"cwd": src, "GOFLAGS": "-buildvcs=false -mod=mod"}
    pinned.run_go(go, ["mod", "tidy"], "resolving SeaweedFS's modules (go mod tidy)", **flags)
    tmp = bin_dir() / "weed.partial"
    pinned.run_go(go, ["build", "-o", str(tmp), COMMAND], "building SeaweedFS (go build)", **flags)
    tmp.replace(binary_path())
    return pinned.record(t0, bin_dir() / ".build-seconds")


@dataclass(frozen=True)
class ObjectStoreServer:
    """One SeaweedFS server of the local stack, its S3 gateway on ``port``."""

    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    """The address it binds and serves on (a lab host's address inside its namespace)."""
    netns: str | None = None
    """Run inside this network namespace (``ip netns exec``; the lab's hosts), else here."""
    state_root: Path | None = None
    """Where its state goes (default ``$LISA_CHOREO_HOME/stack``)."""

    def __post_init__(self) -> None:
        if not 1024 <= self.port <= 65535 - 10003:
            raise StackError(f"object store port {self.port}: choose 1024..{65535 - 10003}")

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state_dir(self) -> Path:
        return (self.state_root or home() / "stack") / f"objectstore-{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "weed.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "weed.pid"

    @property
    def server_config(self) -> Path:
        """The S3 gateway's identities (holds the secret: mode 0600)."""
        return self.state_dir / "s3.json"

    @property
    def credentials_file(self) -> Path:
        """The services' credentials, AWS shared-file format (mode 0600): objects only."""
        return self.state_dir / "credentials"

    @property
    def admin_credentials_file(self) -> Path:
        """The stack's own credentials (buckets, readiness), never handed to a service."""
        return self.state_dir / "admin-credentials"

    def command(self, binary: Path) -> list[str]:
        p = self.port
        return [
            str(binary),
            "server",
            f"-dir={self.data_dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-master.port={p + 1}",
            f"-master.port.grpc={p + 10001}",
            f"-volume.port={p + 2}",
            f"-volume.port.grpc={p + 10002}",
            f"-filer.port={p + 3}",
            f"-filer.port.grpc={p + 10003}",
            "-master.volumeSizeLimitMB=1024",
            "-volume.max=64",
            "-s3",
            f"-s3.port={p}",
            f"-s3.port.grpc={p + 10000}",
            "-s3.port.iceberg=0",  # on by default (8181, 9101): off, two servers never collide
            "-s3.port.lance=0",
            f"-s3.config={self.server_config}",
            "-master.telemetry=false",  # on by default: nothing leaves the machine
            # A lone master rebuilds its topology from the volume server's heartbeat in ~1 s;
            # resuming its raft state waited ~15 s for an election at every restart.
            "-master.resumeState=false",
            "-volume.preStopSeconds=0",  # by default the volume server idles 10 s on SIGTERM
            # The two sockets that have flags: in this server's own directory, not /tmp.
            f"-filer.localSocket={self.socket_path('filer')}",
            f"-s3.localSocket={self.socket_path('s3')}",
        ]

    def socket_path(self, service: str) -> Path:
        """A local socket of ``service`` in the state directory, or under a short private
        folder when that path would pass the 107-byte limit of a socket's name."""
        path = self.state_dir / f"{service}.sock"
        if len(str(path)) <= 100:
            return path
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"lisa-weed-{digest}" / f"{service}.sock"

    def grpc_sockets(self) -> list[Path]:
        """The Unix sockets ``weed`` itself places in /tmp, from its gRPC ports (no flag)."""
        services = ("s3", "master", "volume", "filer")  # gRPC ports P+10000 .. P+10003
        return [
            Path(f"/tmp/seaweedfs-{name}-grpc-{self.port + 10000 + k}.sock")
            for k, name in enumerate(services)
        ]


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


SERVICE_ACTIONS = ("Read", "Write", "List")
"""What the services' key may do: read, write and list objects. Creating, deleting or
configuring a bucket needs SeaweedFS's ``Admin`` (or ``DeleteBucket``), which only the stack's
own key holds: a service's key cannot remove the store it writes to."""


def _new_key() -> tuple[str, str]:
    alphabet = string.ascii_uppercase + string.digits
    return "LISA" + "".join(secrets.choice(alphabet) for _ in range(16)), secrets.token_urlsafe(30)


def _shared_file(key_id: str, secret: str) -> str:
    return f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"


def ensure_credentials(server: ObjectStoreServer) -> Path:
    """Two access keys per state directory, made once: the services' (``SERVICE_ACTIONS``) and
    the stack's (``Admin``), in the server's ``s3.json`` and one AWS shared file each (all
    0600). Returns the services' file."""
    server.state_dir.mkdir(parents=True, exist_ok=True)
    files = (server.credentials_file, server.admin_credentials_file, server.server_config)
    if all(path.exists() for path in files):
        return server.credentials_file
    (service_id, service_secret), (admin_id, admin_secret) = _new_key(), _new_key()
    identities = [
        {
            "name": "lisa-choreo-services",
            "credentials": [{"accessKey": service_id, "secretKey": service_secret}],
            "actions": list(SERVICE_ACTIONS),
        },
        {
            "name": "lisa-choreo-stack",
            "credentials": [{"accessKey": admin_id, "secretKey": admin_secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        },
    ]
    _write_private(server.server_config, json.dumps({"identities": identities}, indent=2) + "\n")
    _write_private(server.credentials_file, _shared_file(service_id, service_secret))
    _write_private(server.admin_credentials_file, _shared_file(admin_id, admin_secret))
    return server.credentials_file


def _credentials(server: ObjectStoreServer, admin: bool = False) -> tuple[str, str]:
    import configparser

    parser = configparser.ConfigParser()
    parser.read(server.admin_credentials_file if admin else server.credentials_file)
    section = parser["default"]
    return section["aws_access_key_id"], section["aws_secret_access_key"]


def client(server: ObjectStoreServer, attempts: int = 3, admin: bool = True) -> Any:
    """A boto3 client on this server: with the stack's own key (bucket creation, readiness,
    tests), or with the services' (``admin=False``)."""
    import boto3
    from botocore.config import Config

    key_id, secret = _credentials(server, admin)
    config = Config(
        region_name=REGION,
        connect_timeout=2,
        read_timeout=30,
        retries={"mode": "standard", "max_attempts": attempts},
        s3={"addressing_style": "path"},
    )
    session = boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret)
    return session.client("s3", endpoint_url=server.endpoint, config=config)


def store_uri(bucket: str = DEFAULT_BUCKET, prefix: str = DEFAULT_PREFIX) -> str:
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def service_env(
    server: ObjectStoreServer, bucket: str = DEFAULT_BUCKET, prefix: str = DEFAULT_PREFIX
) -> dict[str, str]:
    """What a service needs to use this server as its claim-check store: the credentials as a
    file reference, never their value."""
    return {
        "LISA_STORE_URI": store_uri(bucket, prefix),
        "AWS_ENDPOINT_URL_S3": server.endpoint,
        "AWS_SHARED_CREDENTIALS_FILE": str(server.credentials_file),
        "AWS_REGION": REGION,
    }


def probe(server: ObjectStoreServer) -> bool:
    """True if the S3 gateway answers an authenticated request (its filer is up too)."""
    if not server.admin_credentials_file.exists():
        return False
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client(server, attempts=1).list_buckets()
    except (BotoCoreError, ClientError):
        return False
    return True


def ensure_bucket(server: ObjectStoreServer, bucket: str = DEFAULT_BUCKET) -> bool:
    """Create ``bucket`` unless it exists, then write and delete one object in it: SeaweedFS
    allocates a bucket's volumes on its first write (~5 s here), which is better paid now than
    by a service's first put. True if created here."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = client(server)
    created = True
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise StackError(
                f"creating bucket {bucket!r} on {server.endpoint} failed: {exc}"
            ) from exc
        created = False
    try:
        s3.put_object(Bucket=bucket, Key=".lisa-choreo-ready", Body=b"")
        s3.delete_object(Bucket=bucket, Key=".lisa-choreo-ready")
    except (BotoCoreError, ClientError) as exc:
        raise StackError(f"bucket {bucket!r} on {server.endpoint} is not writable: {exc}") from exc
    return created


@dataclass(frozen=True)
class ObjectStoreStatus:
    running: bool
    ready: bool
    pid: int | None
    server: ObjectStoreServer

    def describe(self) -> str:
        s = self.server
        if not self.running:
            return "object store: stopped"
        health = "ready" if self.ready else "running but its S3 API does not answer"
        return (
            f"object store: {health} on {s.endpoint} (SeaweedFS, pid {self.pid})\n"
            f"  logs: {s.log_file}\n  data: {s.data_dir}\n  credentials: {s.credentials_file}"
        )


def _markers(server: ObjectStoreServer) -> tuple[str, ...]:
    return ("server", str(server.data_dir))


def running_pid(server: ObjectStoreServer) -> int | None:
    return managed_pid(server.pid_file, *_markers(server))


def status(server: ObjectStoreServer) -> ObjectStoreStatus:
    pid = running_pid(server)
    ready = pid is not None and probe(server)
    return ObjectStoreStatus(running=pid is not None, ready=ready, pid=pid, server=server)


class SocketClash(StackError):
    """Another SeaweedFS on this machine serves the gRPC sockets this server would take."""


def _socket_served(path: Path) -> bool:
    """Whether a live process accepts connections on the Unix socket ``path``."""
    if not path.is_socket():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe_socket:
        probe_socket.settimeout(1.0)
        try:
            probe_socket.connect(str(path))
        except OSError:
            return False  # a stale file: weed replaces it
    return True


def check_sockets(server: ObjectStoreServer) -> None:
    """Refuse to start ``server`` where another live server serves its gRPC sockets."""
    served = [path for path in server.grpc_sockets() if _socket_served(path)]
    if served:
        raise SocketClash(
            f"another SeaweedFS on this machine serves {served[0]} (gRPC port "
            f"{server.port + 10000}..{server.port + 10003}); weed fixes these socket paths, "
            f"whatever the network namespace: start this one on another port than {server.port}"
        )


def start(server: ObjectStoreServer, say=lambda text: None) -> None:
    """Start the server without waiting (building ``weed`` first if this home has none)."""
    binary = build(say)
    check_sockets(server)
    ensure_credentials(server)
    server.data_dir.mkdir(parents=True, exist_ok=True)
    for service in ("filer", "s3"):
        folder = server.socket_path(service).parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    command = server.command(binary)
    if server.netns:
        command = ["ip", "netns", "exec", server.netns, *command]
    spawn_detached(command, server.log_file, server.pid_file)


def wait_ready(server: ObjectStoreServer, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe(server):
        if running_pid(server) is None:
            raise StackError(
                f"the object store on {server.endpoint} exited during start-up; "
                f"log tail: {_tail(server.log_file)}"
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"the object store on {server.endpoint} not ready after {timeout_s:.0f} s; "
                f"see {server.log_file}"
            )
        time.sleep(0.2)


def up(server: ObjectStoreServer, bucket: str = DEFAULT_BUCKET, say=lambda text: None) -> bool:
    """Start (unless running), wait until ready, create the bucket. True if started here."""
    started = False
    if running_pid(server) is not None and not server.admin_credentials_file.exists():
        say(f"restarting the object store on {server.endpoint}: its keys predate the split")
        stop(server)  # one key served both the stack and the services: made again below
        server.credentials_file.unlink(missing_ok=True)
    if running_pid(server) is None:
        start(server, say)
        started = True
    wait_ready(server)
    ensure_bucket(server, bucket)
    return started


def stop(server: ObjectStoreServer, timeout_s: float = 8.0) -> bool:
    """SIGTERM, SIGKILL at the deadline. The volume server syncs and closes its volumes within
    a fraction of a second of SIGTERM; the filer then waits 15 s to flush its change log (not
    the objects' metadata, which is in its LevelDB store) to volumes that are gone, and gives
    up: 8 s is ample for the part that matters."""
    return stop_managed(server.pid_file, _markers(server), timeout_s)


def kill(server: ObjectStoreServer) -> int | None:
    """SIGKILL, as a crash would (fault tests); the pid killed, or None if none ran."""
    pid = running_pid(server)
    if pid is None:
        return None
    os.kill(pid, signal.SIGKILL)
    while running_pid(server) is not None:
        time.sleep(0.05)
    return pid
