"""The orchestrator of the side-by-side study: Temporal's development server, on loopback.

``temporal server start-dev`` (the ``temporal`` CLI) is the whole of Temporal in one Go process:
frontend, history, matching and internal worker services, persistence in one SQLite file, and
the web UI. The stack builds the CLI once with ``go install`` from the Go module proxy at a pinned
version into ``$LISA_CHOREO_HOME/temporal/bin`` (``GOBIN``; a ``.version`` file beside it names
the version built, so a new pin rebuilds and later calls need no network), then runs it like the
Kafka and Zipkin JVMs (``brokers.spawn_detached``): its own session, a pid file checked against
``/proc/<pid>/cmdline`` so a recycled pid is never signalled, its log and database under
``$LISA_CHOREO_HOME/stack/temporal-<port>``. It is up when its HTTP API answers for the
``default`` namespace (``/api/v1/namespaces/default``).

Why the dev server and this version: it is the one distribution of Temporal that runs from a
single binary without Docker, Cassandra or PostgreSQL; the Python SDK's ``start_local()``
downloads a server at run time (fails offline); CLI v1.5.1 (server 1.29.1, UI 2.42.1) is the
latest whose module ``go install`` accepts (v1.9.1 and later carry a ``replace`` directive in
their ``go.mod``, which ``go install pkg@version`` refuses). The build took 4.5 minutes on two
cores with empty Go caches (1.8 GB of modules downloaded), 2.3 with a warm build cache, and leaves
a 252 MB binary; the server is up in about a second and holds ~145 MB.

Ports: gRPC frontend ``port`` (7233), web UI ``port + 1000`` (8233), HTTP API ``port + 10``.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from choreo.settings import home
from lisa_choreo.localstack.brokers import (
    StackError,
    _tail,
    managed_pid,
    spawn_detached,
    stop_managed,
)
from lisa_choreo.localstack.tools import GoBuild

CLI_MODULE = "github.com/temporalio/cli/cmd/temporal"
CLI_VERSION = "v1.5.1"
"""The pinned CLI; v1.9.1 and later: ``go install`` refuses their ``replace`` directive."""
DEFAULT_ADDRESS = "127.0.0.1:7233"
NAMESPACE = "default"


def backend_address() -> str:
    """``LISA_TEMPORAL_ADDRESS``: where workers and clients find the frontend (host:port)."""
    return os.environ.get("LISA_TEMPORAL_ADDRESS", DEFAULT_ADDRESS)


def default_port() -> int:
    return int(backend_address().rsplit(":", 1)[1])


def bin_dir() -> Path:
    return home() / "temporal" / "bin"


def binary_path() -> Path:
    return bin_dir() / "temporal"


def _pinned() -> GoBuild:
    return GoBuild(binary_path(), bin_dir() / ".version", f"{CLI_MODULE}@{CLI_VERSION}")


def cached_binary() -> Path | None:
    """The built CLI if this home holds the pinned version, else None (no build)."""
    return _pinned().cached()


def install_command() -> list[str]:
    return ["go", "install", f"{CLI_MODULE}@{CLI_VERSION}"]


def build(say=lambda text: None) -> Path:
    """``go install`` the pinned CLI into ``bin_dir()`` once; later calls return the cache."""
    pinned = _pinned()
    if (cached := pinned.cached()) is not None:
        return cached
    go = pinned.require_go("the Temporal dev server")
    target = bin_dir()
    target.mkdir(parents=True, exist_ok=True)
    say(f"building the Temporal CLI {CLI_VERSION} with go install (once, 2-5 min) into {target}")
    t0 = time.monotonic()
    pinned.run_go(go, install_command()[1:], "building the Temporal CLI", GOBIN=str(target))
    return pinned.record(t0, target / ".build-seconds")


@dataclass(frozen=True)
class TemporalServer:
    """One dev server of the local stack: frontend on ``port``, UI on ``port + 1000``."""

    port: int = 7233

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_port(self) -> int:
        return self.port + 1000

    @property
    def http_port(self) -> int:
        return self.port + 10

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def workflow_page(self, workflow_id: str, run_id: str, namespace: str = NAMESPACE) -> str:
        """The web UI's page of one workflow run (its history and timeline)."""
        return f"{self.ui_url}/namespaces/{namespace}/workflows/{workflow_id}/{run_id}/history"

    def latest_run_id(self, workflow_id: str, namespace: str = NAMESPACE) -> str | None:
        """The run id of a workflow's latest run, from the HTTP API (no SDK client needed)."""
        url = f"http://127.0.0.1:{self.http_port}/api/v1/namespaces/{namespace}/workflows/"
        try:
            with urllib.request.urlopen(url + workflow_id, timeout=5) as resp:
                info = json.loads(resp.read())["workflowExecutionInfo"]
        except (OSError, ValueError, KeyError):
            return None
        return info["execution"]["runId"]

    @property
    def state_dir(self) -> Path:
        return home() / "stack" / f"temporal-{self.port}"

    @property
    def db_file(self) -> Path:
        return self.state_dir / "temporal.db"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "temporal.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "temporal.pid"

    def command(self, binary: Path) -> list[str]:
        return [
            str(binary),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--http-port",
            str(self.http_port),
            "--db-filename",
            str(self.db_file),
            "--log-format",
            "json",
        ]


@dataclass(frozen=True)
class TemporalStatus:
    running: bool
    ready: bool
    pid: int | None
    server: TemporalServer
    foreign: bool = False

    def describe(self) -> str:
        s = self.server
        if self.foreign:
            return f"temporal: a server not started by lisa-choreo answers on {s.address}"
        if not self.running:
            return "temporal: stopped"
        health = "ready" if self.ready else "running but its HTTP API does not answer"
        return (
            f"temporal: {health} on {s.address} (pid {self.pid})\n"
            f"  ui: {s.ui_url}/\n  logs: {s.log_file}\n  data: {s.db_file}"
        )


def probe(server: TemporalServer, timeout_s: float = 2.0) -> dict | None:
    """The ``default`` namespace's description if the frontend answers, else None."""
    url = f"http://127.0.0.1:{server.http_port}/api/v1/namespaces/{NAMESPACE}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) and "namespaceInfo" in body else None


def _markers(server: TemporalServer) -> tuple[str, ...]:
    return ("start-dev", str(server.state_dir))


def running_pid(server: TemporalServer) -> int | None:
    return managed_pid(server.pid_file, *_markers(server))


def status(server: TemporalServer) -> TemporalStatus:
    pid = running_pid(server)
    ready = probe(server) is not None
    return TemporalStatus(
        running=pid is not None,
        ready=ready and pid is not None,
        pid=pid,
        server=server,
        foreign=ready and pid is None,
    )


def start(server: TemporalServer, say=lambda text: None) -> None:
    """Start the server without waiting (building the CLI first if this home has none)."""
    binary = build(say)
    server.state_dir.mkdir(parents=True, exist_ok=True)
    spawn_detached(server.command(binary), server.log_file, server.pid_file)


def wait_ready(server: TemporalServer, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while probe(server) is None:
        if running_pid(server) is None:
            raise StackError(
                f"Temporal on {server.address} exited during start-up; "
                f"log tail: {_tail(server.log_file)}"
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"Temporal on {server.address} not ready after {timeout_s:.0f} s; "
                f"see {server.log_file}"
            )
        time.sleep(0.1)


def launch(server: TemporalServer, say=lambda text: None) -> bool:
    """Start the server unless one answers already; no waiting. True if started here."""
    if running_pid(server) is not None or probe(server) is not None:
        return False
    start(server, say)
    return True


def up(server: TemporalServer, say=lambda text: None) -> bool:
    """``launch`` then wait until ready; harmless when up. True if started here."""
    started = launch(server, say)
    wait_ready(server)
    return started


def stop(server: TemporalServer, timeout_s: float = 30.0) -> bool:
    """SIGTERM (the server stops its services), SIGKILL at the deadline. True if stopped."""
    return stop_managed(server.pid_file, _markers(server), timeout_s)


def kill(server: TemporalServer) -> int | None:
    """SIGKILL, as a crash would (fault tests); the pid killed, or None if none ran."""
    pid = running_pid(server)
    if pid is None:
        return None
    os.kill(pid, signal.SIGKILL)
    while running_pid(server) is not None:
        time.sleep(0.05)
    return pid
