"""The local stack's tracing backend: Zipkin's executable jar (web UI, query API, memory storage).

Run like the Kafka broker of ``stack.py``: the jar is fetched once with Maven
(``deploy/zipkin/pom.xml``) and cached under ``$LISA_CHOREO_HOME/zipkin``; the JVM listens on
loopback only, in its own session, with a pid file checked against ``/proc/<pid>/cmdline`` so a
recycled pid is never signalled; ``up`` waits until ``/health`` answers UP.

Spans reach it through Zipkin's native intake ``POST /api/v2/spans``, sent by the OpenTelemetry
SDK's Zipkin exporter (``OTEL_TRACES_EXPORTER=zipkin_messaging``, see choreo.tracing): Zipkin's
OTLP module (``io.zipkin.contrib.otel:zipkin-module-otel``) is not published on Maven Central, so
OTLP has no door here. Zipkin's span model has no links: fan-in links (the catalogue's) do not
survive.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from choreo.settings import home
from lisa_choreo.localstack.brokers import (
    StackError,
    _require,
    _tail,
    fetch_with_maven,
    managed_pid,
    spawn_detached,
    stop_managed,
)

DEFAULT_URL = "http://127.0.0.1:9411"
EXPORTER = "zipkin_messaging"  # choreo.tracing: Zipkin JSON v2, topics as remote endpoints


def backend_url() -> str:
    """``LISA_ZIPKIN_URL``: where the CLI and the tests find the tracing backend."""
    return os.environ.get("LISA_ZIPKIN_URL", DEFAULT_URL).rstrip("/")


def default_port() -> int:
    return urlsplit(backend_url()).port or 9411


@dataclass(frozen=True)
class ZipkinServer:
    """One Zipkin JVM of the local stack, on loopback."""

    port: int = 9411

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def spans_endpoint(self) -> str:
        return f"{self.url}/api/v2/spans"

    def trace_page(self, trace_id: str) -> str:
        return f"{self.url}/zipkin/traces/{trace_id}"

    @property
    def state_dir(self) -> Path:
        return home() / "stack" / f"zipkin-{self.port}"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "zipkin.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "zipkin.pid"


@dataclass(frozen=True)
class ZipkinStatus:
    running: bool
    ready: bool
    pid: int | None
    url: str
    log_file: Path
    foreign: bool = False  # something answers on the port that this stack did not start

    def describe(self) -> str:
        if self.foreign:
            return f"zipkin: a server not started by lisa-choreo answers on {self.url}"
        if not self.running:
            return "zipkin: stopped"
        health = "ready" if self.ready else "running but /health does not answer UP"
        return (
            f"zipkin: {health} on {self.url} (pid {self.pid})\n"
            f"  ui: {self.url}/zipkin/\n  logs: {self.log_file}"
        )


def otel_env(url: str | None = None) -> dict[str, str]:
    """The ``OTEL_*`` variables a service needs to send its spans to this backend."""
    base = (url or backend_url()).rstrip("/")
    return {
        "OTEL_TRACES_EXPORTER": EXPORTER,
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT": f"{base}/api/v2/spans",
    }


def zipkin_jar() -> Path:
    """Zipkin's executable jar, fetched once per pom version; later calls need no network."""
    libs = fetch_with_maven("zipkin", "Zipkin's jar")
    jars = sorted(libs.glob("zipkin-server-*-exec.jar"))
    if not jars:
        raise StackError(f"no zipkin-server exec jar in {libs}")
    return jars[-1]


def probe(url: str, timeout_s: float = 2.0) -> dict | None:
    """Zipkin's health document if it answers UP, else None."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout_s) as resp:
            health = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return health if isinstance(health, dict) and health.get("status") == "UP" else None


def _running_pid(server: ZipkinServer) -> int | None:
    """The JVM's pid if our Zipkin is alive (guards against a recycled pid)."""
    return managed_pid(server.pid_file, "zipkin-server", str(server.state_dir))


def status(server: ZipkinServer) -> ZipkinStatus:
    pid = _running_pid(server)
    ready = probe(server.url) is not None
    return ZipkinStatus(
        running=pid is not None,
        ready=ready and pid is not None,
        pid=pid,
        url=server.url,
        log_file=server.log_file,
        foreign=ready and pid is None,
    )


def start(server: ZipkinServer) -> None:
    """Start the JVM without waiting: loopback only, memory storage, no broker collectors."""
    java = _require("java", "Zipkin needs a JDK 17+ (Debian: apt-get install default-jdk)")
    jar = zipkin_jar()
    server.state_dir.mkdir(parents=True, exist_ok=True)
    heap = os.environ.get("LISA_ZIPKIN_HEAP", "256m")
    # An indexed property replaces Armeria's whole port list, hence port and protocol restated.
    args = [
        "--armeria.ports[0].ip=127.0.0.1",
        f"--armeria.ports[0].port={server.port}",
        "--armeria.ports[0].protocols[0]=http",
    ]
    # Zipkin also consumes from brokers when their address variables are set (KAFKA_BOOTSTRAP_
    # SERVERS...): the local stack takes spans over HTTP only.
    for collector in ("kafka", "rabbitmq", "activemq", "pulsar", "scribe", "grpc"):
        args.append(f"--zipkin.collector.{collector}.enabled=false")
    spawn_detached(
        [
            java,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:TieredStopAtLevel=1",  # C1 only: starts in half the time, ample for a dev UI
            f"-Dlisa.choreo.state={server.state_dir}",
            "-jar",
            str(jar),
            *args,
        ],
        server.log_file,
        server.pid_file,
    )


def wait_ready(server: ZipkinServer, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while probe(server.url) is None:
        if _running_pid(server) is None:
            raise StackError(
                f"Zipkin on {server.url} exited during start-up; log tail: {_tail(server.log_file)}"
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"Zipkin on {server.url} not ready after {timeout_s:.0f} s; see {server.log_file}"
            )
        time.sleep(0.25)


def launch(server: ZipkinServer) -> bool:
    """Start Zipkin unless one answers already (ours, or another stack's on the same port,
    which serves as well), without waiting. True if started here."""
    if _running_pid(server) is not None or probe(server.url) is not None:
        return False
    start(server)
    return True


def up(server: ZipkinServer) -> bool:
    """``launch`` then wait until ready; harmless when ours is up. True if started here."""
    started = launch(server)
    wait_ready(server)
    return started


def stop(server: ZipkinServer, timeout_s: float = 30.0) -> bool:
    """SIGTERM (Spring's graceful close), SIGKILL at the deadline. True if something stopped."""
    return stop_managed(server.pid_file, ("zipkin-server", str(server.state_dir)), timeout_s)


def query(url: str, path: str, timeout_s: float = 10.0) -> object:
    """GET a JSON document from the backend's API; OSError if it cannot be reached."""
    with urllib.request.urlopen(f"{url.rstrip('/')}{path}", timeout=timeout_s) as resp:
        return json.loads(resp.read())
