"""Shared fixtures. Integration tests need the real broker: ``kafka`` starts it if it is down."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from choreo.settings import KafkaSettings


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    """Poll ``condition`` until truthy; fail with ``what`` at the deadline (no sleep-and-hope)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaSettings]:
    """The real Kafka broker of ``lisa-choreo stack`` (started here if nobody else did)."""
    from lisa_choreo.localstack import brokers

    settings = KafkaSettings()
    port = settings.bootstrap_servers.split(",")[0].rsplit(":", 1)[1]
    node = brokers.KafkaNode(port=int(port))
    started = []
    if asyncio.run(brokers.probe(settings.bootstrap_servers, 3.0)) is None:
        started = brokers.up([node])
    cluster = asyncio.run(brokers.probe(settings.bootstrap_servers, 10.0))
    assert cluster, "no real Kafka broker answers metadata requests"
    assert cluster["cluster_id"]
    yield settings
    brokers.down(started)


@pytest.fixture(scope="session")
def zipkin():
    """The stack's Zipkin (``lisa_choreo.localstack.tracing_ui``), started here if none answers on
    ``LISA_ZIPKIN_URL``; stopped at the end only if this session started it."""
    from lisa_choreo.localstack import tracing_ui

    server = tracing_ui.ZipkinServer(port=tracing_ui.default_port())
    started = tracing_ui.probe(server.url) is None and tracing_ui.up(server)
    assert tracing_ui.probe(server.url, 10.0), f"no Zipkin answers UP on {server.url}"
    yield server
    if started:
        tracing_ui.stop(server)


def _free_on_loopback(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


TEST_BUCKET = "lisa-test"


@pytest.fixture(scope="session")
def object_store():
    """A real S3 server (the stack's SeaweedFS, built once under ``$LISA_CHOREO_HOME`` when
    absent, several minutes cold) on loopback ports of its own: ``LISA_TEST_OBJECT_STORE_PORT``
    if set (reused when it runs already), else a free random set. Stopped at the end only if
    this session started it. The bucket ``lisa-test`` exists; tests use prefixes of their own."""
    import random
    import shutil

    from lisa_choreo.localstack import objectstore

    if objectstore.cached_binary() is None and shutil.which("go") is None:
        pytest.skip("no SeaweedFS in $LISA_CHOREO_HOME/seaweedfs/bin and no `go` to build it")
    port = int(os.environ.get("LISA_TEST_OBJECT_STORE_PORT", "0"))
    while not port:
        candidate = random.randint(21000, 39000)
        offsets = (0, 1, 2, 3, 10000, 10001, 10002, 10003)
        sockets = objectstore.ObjectStoreServer(candidate).grpc_sockets()
        if all(_free_on_loopback(candidate + k) for k in offsets) and not any(
            path.exists() for path in sockets
        ):
            port = candidate
    server = objectstore.ObjectStoreServer(port)
    started = objectstore.up(server, bucket=TEST_BUCKET)
    yield server
    if started:
        objectstore.stop(server)
        shutil.rmtree(server.state_dir, ignore_errors=True)


def s3_env(server, prefix: str) -> dict[str, str]:
    """A service's environment on ``server`` with its store under ``prefix`` of the test bucket
    (and no other AWS credentials in the way)."""
    from lisa_choreo.localstack import objectstore

    env = objectstore.service_env(server, TEST_BUCKET, prefix)
    return {**env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}


def read_all(settings: KafkaSettings, topic: str) -> list:
    """Every record of a topic as of now, read without a consumer group."""
    from choreo.reader import TopicReader

    async def collect():
        async with TopicReader(settings, [topic]) as reader:
            return await reader.snapshot()

    return asyncio.run(collect())


class Services:
    """Starts services as separate processes bound to one test's topics, store and span file."""

    def __init__(self, settings: KafkaSettings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.spans = workdir / "spans.jsonl"
        self.store_uri = (workdir / "store").as_uri()
        self.env = {
            "LISA_KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "LISA_KAFKA_TOPIC_PREFIX": settings.topic_prefix,
            "LISA_STORE_URI": self.store_uri,
            "LISA_CHOREO_HOME": str(workdir / "home"),
            "OTEL_TRACES_EXPORTER": "jsonl",
            "LISA_OTEL_JSONL_PATH": str(self.spans),
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        self.started: list = []

    def start(self, name: str, wait: bool = True, **env: str):
        from lisa_choreo.processes import ServiceProcess

        module = f"tests.toy.{name.removeprefix('toy-')}" if name.startswith("toy-") else None
        proc = ServiceProcess(
            name, self.workdir / f"{name}-{len(self.started)}.log", {**self.env, **env}, module
        ).start()
        self.started.append(proc)
        if wait:
            proc.wait_ready()
        return proc

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        """``lisa-choreo <args>`` with this test's settings."""
        return subprocess.run(
            [sys.executable, "-m", "lisa_choreo.cli", *args],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, **self.env, **env},
        )

    def kill_all(self) -> None:
        for proc in self.started:
            proc.kill()


@pytest.fixture
def services(prefixed: KafkaSettings, tmp_path: Path) -> Iterator[Services]:
    """The topology's topics under this test's prefix, and a factory of service processes."""
    from choreo.topology import ensure_topics
    from lisa_choreo.registry import topology
    from tests.toy.events import topology as toy_topology

    specs = topology().all_topics() + toy_topology().all_topics()
    asyncio.run(ensure_topics(prefixed, specs))
    svc = Services(prefixed, tmp_path)
    yield svc
    svc.kill_all()


@pytest.fixture
def prefixed(kafka: KafkaSettings) -> KafkaSettings:
    """Settings whose topics and groups are private to this test (``LISA_KAFKA_TOPIC_PREFIX``)."""
    return kafka.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_server_port() -> int:
    """A port P with P (gRPC), P + 10 (HTTP API) and P + 1000 (web UI) free on loopback."""
    for _ in range(200):
        port = random.randint(21000, 39000)
        if all(_port_free(p) for p in (port, port + 10, port + 1000)):
            return port
    raise RuntimeError("no free port triple for a Temporal server")


@pytest.fixture(scope="module")
def temporal_server():
    """A Temporal dev server of its own on free loopback ports (the stack's binary, built once with
    ``go install`` if absent: 2-5 min), its database removed at the end."""
    from lisa_choreo.localstack import temporal

    if temporal.cached_binary() is None and shutil.which("go") is None:
        pytest.skip("no Temporal CLI in $LISA_CHOREO_HOME/temporal/bin and no `go` to build it")
    srv = temporal.TemporalServer(free_server_port())
    temporal.up(srv)
    yield srv
    temporal.stop(srv)
    shutil.rmtree(srv.state_dir, ignore_errors=True)
