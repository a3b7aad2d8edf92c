"""Secure mode on a real broker of its own (``stack up --secure`` on free ports, its own
LISA_CHOREO_HOME): TLS + SASL SCRAM-SHA-512 + ACLs derived from the topology. The broker does
what the declarations grant and refuses the rest; services run as their own principals; no
password reaches a log or a span."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import ssl
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest

from choreo import codec
from choreo.settings import KafkaSettings
from lisa_choreo.processes import ServiceProcess
from lisa_choreo.registry import topology
from lisa_choreo.security import acl_admin, acls, credentials
from lisa_pipeline.events import SegmentConditioned, SegmentRaw
from lisa_pipeline.topics import (
    CANDIDATES_GB,
    CATALOG,
    SEGMENTS_CONDITIONED,
    SEGMENTS_RAW,
    SOURCES_ESTIMATES,
)
from tests.conftest import wait_until

pytestmark = pytest.mark.kafka


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_broker_port() -> int:
    """A client port P with P + 1000 (the controller's, ``KafkaNode``) free as well."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 1000 < 65536 and _port_free(port + 1000):
            return port
    raise RuntimeError("no free pair of ports")


def _clean_environ() -> dict[str, str]:
    """The test run's environment without any Kafka client setting (the plaintext broker's)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LISA_KAFKA_")}


@dataclass
class SecureStack:
    base: Path
    home: Path
    port: int
    prefix: str
    files: credentials.SecureFiles
    env: dict[str, str]
    outputs: list[str] = field(default_factory=list)  # every CLI run's stdout + stderr

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def broker_logs(self) -> Path:
        return self.home / "stack" / f"kafka-{self.port}" / "logs"

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "lisa_choreo.cli", *args],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**self.env, **(env or {})},
        )
        self.outputs.append(result.stdout + result.stderr)
        return result

    def service_env(self, name: str) -> dict[str, str]:
        """What ``lisa-choreo stack env --service NAME`` prints, as a dict."""
        result = self.cli("stack", "env", "--service", name, "--port", str(self.port))
        assert result.returncode == 0, result.stderr
        env = {}
        for line in result.stdout.splitlines():
            name_value = line.removeprefix("export ")
            key, _, value = name_value.partition("=")
            env[key] = shlex.split(value)[0] if value else ""
        return env

    def settings(self, principal: str) -> KafkaSettings:
        return self.files.client_settings(principal, self.bootstrap, self.prefix)

    def topic(self, name: str) -> str:
        return self.prefix + name


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    """A secure single-node stack on free ports with its own home, stopped at the end whatever
    happened (also when ``stack up`` itself failed half-way)."""
    from choreo.settings import home

    base = tmp_path_factory.mktemp("secure")
    stack_home = base / "home"
    stack_home.mkdir()
    jars = home() / "kafka"  # the test run's jar cache (content-addressed): no second fetch
    if jars.is_dir():
        (stack_home / "kafka").symlink_to(jars, target_is_directory=True)
    port = _free_broker_port()
    prefix = f"s{uuid.uuid4().hex[:8]}."
    env = {
        **_clean_environ(),
        "LISA_CHOREO_HOME": str(stack_home),
        "LISA_KAFKA_TOPIC_PREFIX": prefix,
        "LISA_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
    }
    stack = SecureStack(
        base,
        stack_home,
        port,
        prefix,
        credentials.SecureFiles(credentials.secure_dir(stack_home)),
        env,
    )
    try:
        up = stack.cli("stack", "up", "--secure", "--port", str(port), "--no-tracing")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "secure: SASL_SSL" in up.stdout
        yield stack
    finally:
        down = stack.cli("stack", "down", "--port", str(port), "--no-tracing")
        assert down.returncode == 0, down.stderr


def _assert_no_password_anywhere(stack: SecureStack, roots: list[Path]) -> int:
    """No principal's password in any log or spans file under ``roots``, in the broker's logs,
    or in any CLI output. Returns the number of files read."""
    secrets = [p.encode() for p in stack.files.passwords()]
    assert len(secrets) == len(acls.principals(topology())) + 1  # and the admin's
    files = [
        p
        for root in [*roots, stack.broker_logs]
        for p in root.rglob("*")
        if p.is_file() and (p.suffix in (".log", ".jsonl") or ".log" in p.name)
    ]
    for path in files:
        data = path.read_bytes()
        leaked = [i for i, s in enumerate(secrets) if s in data]
        assert not leaked, f"a password appears in {path}"
    for text in stack.outputs:
        assert not any(s.decode() in text for s in secrets), "a password in a CLI's output"
    return len(files)


# -- the stack and its ACLs ---------------------------------------------------------------------


def test_the_broker_holds_exactly_the_acls_derived_from_the_topology(secure: SecureStack):
    plan = acls.derive(topology(), secure.prefix)
    on_broker = asyncio.run(acl_admin.describe_acls(secure.settings(credentials.ADMIN)))
    assert on_broker == plan
    printed = secure.cli("acl", "plan")
    assert printed.returncode == 0
    lines = printed.stdout.splitlines()
    assert len(lines) == len(plan)
    assert any(
        line.split() == ["User:condition", "ALLOW", "READ", "TOPIC", "LITERAL", raw]
        for line in lines
        for raw in [secure.topic(SEGMENTS_RAW)]
    )
    again = secure.cli("acl", "apply")  # idempotent, as the local admin
    assert again.returncode == 0, again.stderr
    assert f"{len(plan)} ACL bindings in place" in again.stdout
    assert asyncio.run(acl_admin.describe_acls(secure.settings(credentials.ADMIN))) == plan


def test_secrets_are_private_files_and_env_shows_only_their_paths(secure: SecureStack):
    root = secure.files.root
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for path in root.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    config = secure.home / "stack" / f"kafka-{secure.port}" / "server.properties"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # holds the admin's password
    env = secure.service_env("condition")
    assert env["LISA_KAFKA_BOOTSTRAP_SERVERS"] == secure.bootstrap
    assert env["LISA_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["LISA_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["LISA_KAFKA_SASL_USERNAME"] == "condition"
    assert env["LISA_KAFKA_SASL_PASSWORD_FILE"] == str(secure.files.password_file("condition"))
    assert env["LISA_KAFKA_SSL_CAFILE"] == str(secure.files.ca_cert)
    assert env["LISA_KAFKA_TOPIC_PREFIX"] == secure.prefix
    assert "LISA_KAFKA_SASL_PASSWORD" not in env
    status = secure.cli("stack", "status", "--port", str(secure.port), "--no-tracing")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "ready, 1 broker(s)" in status.stdout


# -- authentication -----------------------------------------------------------------------------


def test_anonymous_untrusted_and_wrong_password_clients_are_refused(secure: SecureStack):
    ca = create_ssl_context(cafile=str(secure.files.ca_cert))
    scram = {"sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "condition"}

    async def connect(**options):
        """One connection, then a metadata request (the first one that needs a login)."""
        conn = await create_conn("127.0.0.1", secure.port, request_timeout_ms=10_000, **options)
        try:
            return await conn.send(MetadataRequest([]))
        finally:
            conn.close()

    async def scenario():
        # no TLS, no SASL: the broker's TLS handshake fails and it closes the connection
        with pytest.raises(KafkaConnectionError):
            await connect()
        # TLS but no SASL: a request before authenticating closes the connection
        with pytest.raises(KafkaConnectionError):
            await connect(security_protocol="SSL", ssl_context=ca)
        # a certificate nobody but this stack's CA vouches for: the client refuses the broker
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(
                security_protocol="SASL_SSL",
                ssl_context=ssl.create_default_context(),
                sasl_plain_password=secure.files.password("condition"),
                **scram,
            )
        # the right user, a wrong password; an unknown user
        with pytest.raises(SaslAuthenticationFailed):
            await connect(
                security_protocol="SASL_SSL",
                ssl_context=ca,
                sasl_plain_password="wrong-" + uuid.uuid4().hex,
                **scram,
            )
        with pytest.raises(SaslAuthenticationFailed):
            await connect(
                security_protocol="SASL_SSL",
                ssl_context=ca,
                sasl_mechanism="SCRAM-SHA-512",
                sasl_plain_username="mallory",
                sasl_plain_password="x",
            )
        # and a whole client: it cannot even bootstrap
        admin = AIOKafkaAdminClient(bootstrap_servers=secure.bootstrap, request_timeout_ms=5000)
        with pytest.raises(KafkaConnectionError):
            await admin.start()
        await admin.close()
        # the right credentials get in
        assert await connect(
            security_protocol="SASL_SSL",
            ssl_context=ca,
            sasl_plain_password=secure.files.password("condition"),
            **scram,
        )

    asyncio.run(scenario())
    log = (secure.broker_logs / "server.log").read_text(errors="replace")
    assert "Failed authentication with /127.0.0.1" in log
    assert "(SSL handshake failed)" in log
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in log


# -- authorization ------------------------------------------------------------------------------


def test_a_service_consumes_its_input_and_produces_its_output(secure: SecureStack):
    key = f"probe-{uuid.uuid4().hex[:8]}".encode()

    async def scenario():
        # ingest publishes raw segments in a transaction under its transactional-id prefix
        ingest = AIOKafkaProducer(
            **secure.settings("ingest").client_options(),
            transactional_id=secure.topic(f"ingest-{uuid.uuid4().hex[:16]}"),
        )
        await ingest.start()
        try:
            async with ingest.transaction():
                await ingest.send(secure.topic(SEGMENTS_RAW), b"probe", key=key)
        finally:
            await ingest.stop()
        # condition reads its input in its own group and commits
        condition = secure.settings("condition")
        consumer = AIOKafkaConsumer(
            secure.topic(SEGMENTS_RAW),
            **condition.client_options(),
            group_id=secure.topic("condition"),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            seen = None
            async with asyncio.timeout(60):
                while seen is None:
                    batch = await consumer.getmany(timeout_ms=500)
                    seen = next((r for rs in batch.values() for r in rs if r.key == key), None)
            await consumer.commit()
        finally:
            await consumer.stop()
        # ... and writes its output and its dead letters (idempotent, acks=all)
        producer = AIOKafkaProducer(
            **condition.client_options(), enable_idempotence=True, acks="all"
        )
        await producer.start()
        try:
            await producer.send_and_wait(secure.topic(SEGMENTS_CONDITIONED), b"out", key=key)
            await producer.send_and_wait(secure.topic(SEGMENTS_RAW + ".dlq"), b"dead", key=key)
        finally:
            await producer.stop()
        return seen

    seen = asyncio.run(scenario())
    assert seen.value == b"probe"


def test_what_a_service_does_not_declare_is_refused_by_the_broker(secure: SecureStack):
    condition = secure.settings("condition").client_options()

    async def scenario():
        producer = AIOKafkaProducer(**condition, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            # gb-search's output, the catalogue: not declared by condition
            for topic in (CANDIDATES_GB, CATALOG):
                with pytest.raises(TopicAuthorizationFailedError):
                    await producer.send_and_wait(secure.topic(topic), b"forged")
        finally:
            await producer.stop()
        # reading a topic it does not consume
        other = AIOKafkaConsumer(
            secure.topic(CANDIDATES_GB), **condition, group_id=secure.topic("condition")
        )
        try:
            with pytest.raises(TopicAuthorizationFailedError):
                await other.start()
        finally:
            await other.stop()
        # joining another service's group
        intruder = AIOKafkaConsumer(
            secure.topic(SEGMENTS_RAW), **condition, group_id=secure.topic("gb-search")
        )
        try:
            with pytest.raises(GroupAuthorizationFailedError):
                await intruder.start()  # joins the group before it returns
        finally:
            await intruder.stop()
        # creating a topic
        admin = AIOKafkaAdminClient(**condition)
        await admin.start()
        try:
            response = await admin.create_topics([NewTopic(secure.topic("x"), 1, 1)])
        finally:
            await admin.close()
        assert [code for _, code, *_ in response.topic_errors] == [
            TopicAuthorizationFailedError.errno
        ]
        # a transaction under another service's id
        forged = AIOKafkaProducer(
            **secure.settings("ingest").client_options(),
            transactional_id=secure.topic("condition-1"),
        )
        try:
            with pytest.raises(TransactionalIdAuthorizationFailed):
                await forged.start()
        finally:
            await forged.stop()
        # the operator reads but writes no output topic (only replay targets, the inputs)
        operator = AIOKafkaProducer(
            **secure.settings(acls.OPERATOR).client_options(), enable_idempotence=True
        )
        await operator.start()
        try:
            with pytest.raises(TopicAuthorizationFailedError):
                await operator.send_and_wait(secure.topic(CATALOG), b"forged")
            with pytest.raises(TopicAuthorizationFailedError):
                await operator.send_and_wait(secure.topic(SEGMENTS_RAW + ".dlq"), b"forged")
        finally:
            await operator.stop()

    asyncio.run(scenario())


# -- services as their own principals, as processes ----------------------------------------------


def _run_env(stack: SecureStack, workdir: Path, principal: str) -> dict[str, str]:
    return {
        **_clean_environ(),
        **stack.service_env(principal),
        "LISA_STORE_URI": (stack.base / "store").as_uri(),
        "LISA_CHOREO_HOME": str(workdir / "home"),
        "OTEL_TRACES_EXPORTER": "jsonl",
        "LISA_OTEL_JSONL_PATH": str(workdir / "spans.jsonl"),
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def _read(stack: SecureStack, topic: str) -> list:
    from choreo.reader import TopicReader

    async def collect():
        async with TopicReader(stack.settings(acls.OPERATOR), [topic]) as reader:
            return await reader.snapshot()

    return asyncio.run(collect())


def test_condition_processes_a_segment_end_to_end_as_its_own_principal(secure: SecureStack):
    workdir = secure.base / "condition-run"
    workdir.mkdir()
    env = _run_env(secure, workdir, "condition")
    proc = ServiceProcess(
        "condition", workdir / "condition.log", {**env, "LISA_LOG_LEVEL": "DEBUG"}
    ).start()
    try:
        proc.wait_ready(90)
        # a real segment: simulated, ingested by the CLI as the ingest principal
        h5 = workdir / "one-day.h5"
        sim = secure.cli("simulate", str(h5), "--days", "1", "--sources", "none", "--seed", "7")
        assert sim.returncode == 0, sim.stderr
        ingested = secure.cli("ingest", str(h5), env=_run_env(secure, workdir, "ingest"))
        assert ingested.returncode == 0, ingested.stdout + ingested.stderr
        assert "published 1 segment(s)" in ingested.stdout
        raw = [
            r
            for r in _read(secure, SEGMENTS_RAW)
            if dict(r.headers or ()).get("ce_type") == SegmentRaw.ce_type.encode()
        ]
        assert len(raw) == 1
        segment_id = raw[0].key
        # the operator's tools read the dead letters (and replay them: the operator's one write)
        operator_env = _run_env(secure, workdir, acls.OPERATOR)

        def letters() -> list[dict]:
            listed = secure.cli("dlq", "list", "--json", env=operator_env)
            assert listed.returncode == 0, listed.stderr
            found = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
            return [d for d in found if d["service"] == "condition"]

        before = {d["ref"] for d in letters()}

        # a record that is not an event: condition dead-letters it with its own principal
        async def junk():
            producer = AIOKafkaProducer(**secure.settings("ingest").client_options())
            await producer.start()
            try:
                await producer.send_and_wait(secure.topic(SEGMENTS_RAW), b"{not json", key=b"j")
            finally:
                await producer.stop()

        asyncio.run(junk())
        conditioned = wait_until(
            lambda: [r for r in _read(secure, SEGMENTS_CONDITIONED) if r.key == segment_id],
            120,
            "the conditioned segment",
        )
        event = codec.decode(
            conditioned[0].key,
            conditioned[0].value,
            conditioned[0].headers,
            {SegmentConditioned.ce_type: SegmentConditioned},
        )
        assert event.source == "condition"
        assert event.data.timing.segment_id == segment_id.decode()
        (letter,) = wait_until(
            lambda: [d for d in letters() if d["ref"] not in before], 60, "the dead letter"
        )
        assert letter["topic"] == SEGMENTS_RAW
        replay = secure.cli("dlq", "replay", letter["ref"], env=operator_env)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "replayed 1" in replay.stdout
        wait_until(
            lambda: len([d for d in letters() if d["ref"] not in before]) == 2,
            60,
            "the replayed record dead-lettered again",
        )
    finally:
        code = proc.terminate()
    assert code == 0, proc.log_path.read_text()[-3000:]
    spans = (workdir / "spans.jsonl").read_text()
    assert secure.topic(SEGMENTS_RAW) in spans  # condition's consumer spans
    assert _assert_no_password_anywhere(secure, [workdir]) >= 3


def test_the_faust_catalog_runs_as_its_own_principal(secure: SecureStack):
    """faust creates its internal topics, joins its group (the app id), consumes its input and
    dead-letters what it cannot decode, all with the catalog's ACLs."""
    workdir = secure.base / "catalog-run"
    workdir.mkdir()
    proc = ServiceProcess(
        "catalog", workdir / "catalog.log", _run_env(secure, workdir, "catalog")
    ).start()
    try:
        proc.wait_ready(120)

        async def junk():
            producer = AIOKafkaProducer(**secure.settings("estimate").client_options())
            await producer.start()
            try:
                await producer.send_and_wait(
                    secure.topic(SOURCES_ESTIMATES), b"{not json", key=b"junk"
                )
            finally:
                await producer.stop()

        asyncio.run(junk())
        dead = wait_until(
            lambda: _read(secure, SOURCES_ESTIMATES + ".dlq"), 90, "the catalog's dead letter"
        )
        headers = dict(dead[0].headers)
        assert headers["dlq_service"] == b"catalog"
    finally:
        code = proc.terminate()
    assert code == 0, proc.log_path.read_text()[-3000:]

    async def topics():
        admin = AIOKafkaAdminClient(**secure.settings(credentials.ADMIN).client_options())
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    app_id = secure.topic("catalog")
    assert {f"{app_id}-by-grid", f"{app_id}-stacks-changelog"} <= asyncio.run(topics())
    assert _assert_no_password_anywhere(secure, [workdir]) >= 2


# -- the main job, every service as its own principal -------------------------------------------


def test_the_main_job_runs_on_the_secure_stack_with_a_principal_per_service(
    secure: SecureStack, tmp_path: Path
):
    """``lisa-choreo process`` on the secure stack: the run's prefix gets the ACLs its
    declarations imply, each service runs as itself (the ACLs refuse any other writer), the
    tools read as the operator, and no password shows in any log, span or output."""
    from lisa_science.ldc import TDIData, write_ldc
    from lisa_science.simulate import analytic_tdi_noise

    dt, n = 5.0, 3 * 17_280
    x, y, z = analytic_tdi_noise(n, dt, np.random.default_rng(11))
    t = np.arange(n) * dt
    signal = 3e-21 * np.sin(2 * np.pi * 2.5e-3 * t)  # a strong line at 2.5 mHz
    data = tmp_path / "three-days.h5"
    write_ldc(str(data), TDIData(t0=0.0, dt=dt, x=x + signal, y=y - signal, z=z))
    out = tmp_path / "run"
    result = secure.cli("process", str(data), "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((out / "run.json").read_text())
    assert record["secure"] is True
    assert "source(s)" in result.stdout
    bindings = asyncio.run(acl_admin.describe_acls(secure.settings(credentials.ADMIN)))
    run_prefix = record["topic_prefix"]
    granted = {b.principal for b in bindings if b.resource_name.startswith(run_prefix)}
    assert granted == {f"User:{p}" for p in acls.principals(topology())}
    assert _assert_no_password_anywhere(secure, [out]) > 0
