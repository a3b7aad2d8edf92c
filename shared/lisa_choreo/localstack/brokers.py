"""The local stack: a real Apache Kafka broker (KRaft) assembled from Maven Central artifacts.

``up`` fetches the jars once (``mvn dependency:copy-dependencies`` on ``deploy/kafka/pom.xml``,
cached under ``$LISA_CHOREO_HOME/kafka``), formats the storage once, starts the JVM on loopback and
waits until the broker answers metadata requests. ``up`` on a running stack only reports it;
``down`` stops it (SIGTERM for a controlled shutdown, SIGKILL after a deadline).

A secure node (``KafkaNode.secure``, ``stack up --secure``) listens with TLS and SASL
SCRAM-SHA-512 only, authorizes with ACLs (``StandardAuthorizer``, nothing allowed without one)
and gets its SCRAM users when its storage is formatted, one per password file that
``lisa_choreo.security.credentials`` made; the ``security`` file in its state directory says so,
and a plain stack is never started on secure storage or the other way round.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import string
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from choreo.settings import KafkaSettings, home
from lisa_choreo.security import credentials


class StackError(RuntimeError):
    """A one-line explanation for the operator (no traceback)."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    ready: bool
    pid: int | None
    bootstrap: str
    state_dir: Path
    log_file: Path
    brokers: int = 0
    cluster_id: str | None = None

    def describe(self) -> str:
        if not self.running:
            return f"kafka: stopped (state in {self.state_dir})"
        health = (
            f"ready, {self.brokers} broker(s), cluster {self.cluster_id}"
            if self.ready
            else ("running but not answering metadata requests")
        )
        return (
            f"kafka: {health} on {self.bootstrap} (pid {self.pid})\n"
            f"  logs: {self.log_file}\n  data: {self.state_dir / 'data'}"
        )


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node (combined broker + controller) of the local stack.

    The defaults are the stack's nodes: loopback, consecutive ports, state under
    ``$LISA_CHOREO_HOME/stack``. The lab (``lisa_choreo.lab``) runs one node per network
    namespace instead: each on its own ``host`` address with the same ports, its JVM started
    inside ``netns``, the quorum named by ``quorum`` (every node's address, in node id order),
    its state under ``state_root`` and its heap given by ``heap``."""

    port: int = 9092
    node_id: int = 1
    cluster_size: int = 1
    secure: bool = False
    host: str = "127.0.0.1"
    netns: str | None = None
    quorum: tuple[str, ...] = ()
    state_root: Path | None = None
    heap: str | None = None

    @property
    def controller_port(self) -> int:
        return self.port + 1000

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def state_dir(self) -> Path:
        if self.state_root is not None:
            return self.state_root / f"kafka-{self.node_id}"
        return home() / "stack" / f"kafka-{self.port}"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "kafka.pid"

    @property
    def security_file(self) -> Path:
        """Present iff the storage was formatted for secure mode (lists the SCRAM users)."""
        return self.state_dir / "security"

    def admin_settings(self) -> KafkaSettings:
        """How the stack's own tools reach this node: plaintext, or as the super user."""
        if not self.secure:
            return KafkaSettings(
                bootstrap_servers=self.bootstrap,
                security_protocol="PLAINTEXT",
                sasl_mechanism=None,
            )
        files = credentials.SecureFiles(credentials.secure_dir())
        return files.client_settings(credentials.ADMIN, self.bootstrap)


def formatted_secure(port: int) -> bool:
    """Whether the storage of the node on ``port`` (this home) was formatted for secure mode."""
    return KafkaNode(port=port).security_file.exists()


def _require(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise StackError(f"`{tool}` not found on PATH: {why}")
    return path


def fetch_with_maven(component: str, why: str) -> Path:
    """``deploy/<component>/pom.xml``'s runtime dependencies, copied once per pom version into
    ``$LISA_CHOREO_HOME/<component>/<pom sha>/libs``; later calls need no network."""
    pom_bytes = resource(component, "pom.xml").read_bytes()
    digest = hashlib.sha256(pom_bytes).hexdigest()[:12]
    libs = home() / component / digest / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    pom = libs.parent / "pom.xml"  # a real file for Maven, whatever the install looks like
    pom.parent.mkdir(parents=True, exist_ok=True)
    pom.write_bytes(pom_bytes)
    mvn = _require("mvn", f"Maven fetches {why} once (Debian: apt-get install maven)")
    libs.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise StackError(f"fetching {why} with Maven failed: " + " | ".join(tail))
    marker.write_text(digest)
    return libs


def resource(component: str, name: str) -> Traversable:
    """A launch file shipped in the package (``lisa_choreo/localstack/resources/<component>``)."""
    return resources.files("lisa_choreo.localstack.resources").joinpath(component, name)


def _log_config(node: KafkaNode) -> Path:
    path = node.state_dir / "log4j2.properties"
    path.write_text(resource("kafka", "log4j2.properties").read_text())
    return path


def kafka_libs() -> Path:
    return fetch_with_maven("kafka", "the Kafka jars")


def _voters(node: KafkaNode, base_port: int) -> str:
    if node.quorum:  # one node per address, all on the same ports (the lab)
        return ",".join(f"{i + 1}@{h}:{node.controller_port}" for i, h in enumerate(node.quorum))
    return ",".join(f"{i + 1}@127.0.0.1:{base_port + i + 1000}" for i in range(node.cluster_size))


def _write_config(node: KafkaNode, base_port: int) -> Path:
    template = resource("kafka", "server.properties.template").read_text()
    replication = min(3, node.cluster_size)
    values: dict[str, object] = dict(
        node_id=node.node_id,
        host=node.host,
        voters=_voters(node, base_port),
        port=node.port,
        controller_port=node.controller_port,
        data_dir=node.state_dir / "data",
        replication=replication,
        min_isr=2 if replication >= 3 else 1,
    )
    if node.secure:
        files = _secure_files()
        template += resource("kafka", "server-secure.properties.template").read_text()
        values.update(
            admin_password=files.password(credentials.ADMIN),
            keystore=files.broker_keystore,
            truststore=files.ca_cert,
        )
    path = node.state_dir / "server.properties"
    path.unlink(missing_ok=True)  # recreated 0600: in secure mode it holds the admin password
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(string.Template(template).substitute(values))
    return path


def _secure_files() -> credentials.SecureFiles:
    files = credentials.SecureFiles(credentials.secure_dir())
    if not files.exists() or not files.broker_keystore.exists():
        raise StackError(
            f"no credentials in {files.root}: `lisa-choreo stack up --secure` makes them"
        )
    return files


def _format_command(java: str, classpath: str, node: KafkaNode, config: Path, base_port: int):
    """StorageTool's arguments; for a secure node, with one ``--add-scram`` per principal. Those
    carry passwords, so they go to the JVM in an argument file (mode 0600, deleted after use:
    the java launcher expands ``@file``) and never appear in a process listing."""
    args = [
        "-cp",
        classpath,
        "kafka.tools.StorageTool",
        "format",
        # one token: an id is base64url and may begin with "-", which would read as an option
        f"--cluster-id={_cluster_id(base_port, node)}",
        "-c",
        str(config),
        "--ignore-formatted",
    ]
    if not node.secure:
        return [java, *args], None, []
    files = _secure_files()
    users = files.principals()
    for user in users:
        args += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={files.password(user)}]"]
    argfile = files.root / f"format-{node.port}.args"
    argfile.unlink(missing_ok=True)
    fd = os.open(argfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        for arg in args:
            out.write('"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"\n')
    return [java, f"@{argfile}"], argfile, users


def _check_security(node: KafkaNode) -> None:
    """Refuse to start a node in the other mode than its storage was formatted in."""
    if not (node.state_dir / "data" / "meta.properties").exists():
        return
    if node.secure and not node.security_file.exists():
        raise StackError(
            f"the storage in {node.state_dir} was formatted without security; use another "
            "--port or LISA_CHOREO_HOME for a secure stack"
        )
    if not node.secure and node.security_file.exists():
        raise StackError(f"the storage in {node.state_dir} is a secure stack's: add --secure")


def _cluster_id(base_port: int, node: KafkaNode | None = None) -> str:
    """Kafka cluster ids are a base64url UUID; shared by all nodes of one local cluster."""
    if node is not None and node.state_root is not None:
        path = node.state_root / "cluster.id"
    else:
        path = home() / "stack" / f"cluster-{base_port}.id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())
    return path.read_text().strip()


def managed_pid(pid_file: Path, *markers: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and its command line holds every marker
    (our JVM, with our state directory): a recycled pid is never taken for ours."""
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        for _ in range(20):  # empty while the kernel is still exec'ing a just-started JVM
            if cmdline:
                break
            time.sleep(0.05)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if all(m.encode() in cmdline for m in markers) else None


def stop_managed(pid_file: Path, markers: tuple[str, ...], timeout_s: float) -> bool:
    """SIGTERM (a graceful close), SIGKILL at the deadline. True if something was stopped."""
    pid = managed_pid(pid_file, *markers)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while managed_pid(pid_file, *markers) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if managed_pid(pid_file, *markers) is not None:
        os.kill(pid, signal.SIGKILL)
        while managed_pid(pid_file, *markers) is not None:
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


def spawn_detached(command: list[str], log_path: Path, pid_file: Path) -> None:
    """Start a long-lived process in its own session (Ctrl-C in the caller's terminal must not
    kill it), output appended to ``log_path``, pid recorded for ``managed_pid``."""
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file.write_text(str(proc.pid))


def _markers(node: KafkaNode) -> tuple[str, ...]:
    return ("kafka.Kafka", str(node.state_dir))


def _running_pid(node: KafkaNode) -> int | None:
    return managed_pid(node.pid_file, *_markers(node))


async def probe(
    bootstrap: str, timeout_s: float = 5.0, settings: KafkaSettings | None = None
) -> dict | None:
    """The cluster's description if a broker answers metadata requests, else None. ``settings``
    (security protocol and credentials) default to a plaintext client of ``bootstrap``."""
    # A broker that is down or still starting is an expected answer here, not an error to log.
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    options = settings.client_options() if settings else {}
    options["bootstrap_servers"] = bootstrap
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        return await asyncio.wait_for(admin.describe_cluster(), timeout_s)
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
        aiokafka_log.setLevel(level)


def status(node: KafkaNode) -> BrokerStatus:
    pid = _running_pid(node)
    cluster = asyncio.run(probe(node.bootstrap, 3.0, node.admin_settings())) if pid else None
    return BrokerStatus(
        running=pid is not None,
        ready=cluster is not None,
        pid=pid,
        bootstrap=node.bootstrap,
        state_dir=node.state_dir,
        log_file=node.log_file,
        brokers=len(cluster["brokers"]) if cluster else 0,
        cluster_id=cluster["cluster_id"] if cluster else None,
    )


def start(node: KafkaNode, base_port: int | None = None) -> None:
    """Start one node's JVM (formatting its storage the first time) without waiting."""
    base_port = node.port - (node.node_id - 1) if base_port is None else base_port
    java = _require(
        "java", "the Kafka broker needs a JDK 17+ (Debian: apt-get install default-jdk)"
    )
    libs = kafka_libs()
    _check_security(node)
    (node.state_dir / "logs").mkdir(parents=True, exist_ok=True)
    config = _write_config(node, base_port)
    classpath = f"{libs}/*"
    if not (node.state_dir / "data" / "meta.properties").exists():
        command, argfile, users = _format_command(java, classpath, node, config, base_port)
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        finally:
            if argfile is not None:
                argfile.unlink(missing_ok=True)
        if result.returncode != 0:
            output = result.stdout + result.stderr
            if node.secure:
                output = _secure_files().redact(output)
            raise StackError(f"formatting Kafka storage failed: {output}")
        if node.secure:
            node.security_file.write_text(
                "SASL_SSL SCRAM-SHA-512 StandardAuthorizer\nusers=" + ",".join(users) + "\n"
            )
    # 1 GiB: a test session creates thousands of partitions (a topic prefix per test); 512 MiB
    # ran out of heap after ~2 h of them on one broker.
    heap = node.heap or os.environ.get("LISA_KAFKA_HEAP", "1g")
    # `ip netns exec` execs the JVM in place: the recorded pid is the JVM's.
    netns = ["ip", "netns", "exec", node.netns] if node.netns else []
    spawn_detached(
        [
            *netns,
            java,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            f"-Dkafka.logs.dir={node.state_dir / 'logs'}",
            f"-Dlog4j2.configurationFile={_log_config(node)}",
            f"-Dlisa.choreo.state={node.state_dir}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(config),
        ],
        node.state_dir / "logs" / "stdout.log",
        node.pid_file,
    )


def wait_ready(nodes: list[KafkaNode], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(nodes)
    while pending:
        node = pending[0]
        if _running_pid(node) is None:
            tail = _tail(node.log_file) or _tail(node.state_dir / "logs" / "stdout.log")
            raise StackError(f"Kafka on {node.bootstrap} exited during start-up; log tail: {tail}")
        cluster = asyncio.run(probe(node.bootstrap, 2.0, node.admin_settings()))
        if cluster and len(cluster["brokers"]) >= node.cluster_size:
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise StackError(
                f"Kafka on {node.bootstrap} not ready after {timeout_s:.0f} s; see {node.log_file}"
            )
        time.sleep(0.5)


def stop(node: KafkaNode, timeout_s: float = 60.0) -> bool:
    """Controlled shutdown, then SIGKILL at the deadline. True if something was stopped."""
    return stop_managed(node.pid_file, _markers(node), timeout_s)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def cluster_nodes(port: int, size: int, secure: bool = False) -> list[KafkaNode]:
    """``size`` nodes on consecutive ports from ``port`` (3 for broker-fault tests)."""
    return [
        KafkaNode(port=port + i, node_id=i + 1, cluster_size=size, secure=secure)
        for i in range(size)
    ]


def scram_users(node: KafkaNode) -> list[str]:
    """The SCRAM users a secure node's storage was formatted with (names only)."""
    try:
        text = node.security_file.read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith("users=")), "users=")
    return [u for u in line.removeprefix("users=").split(",") if u]


def up(nodes: list[KafkaNode]) -> list[KafkaNode]:
    """Start the nodes that are not running; harmless when all are. Returns those started."""
    started = [n for n in nodes if _running_pid(n) is None]
    for node in started:
        start(node, base_port=nodes[0].port)
    wait_ready(nodes)
    return started


def down(nodes: list[KafkaNode]) -> list[KafkaNode]:
    return [n for n in nodes if stop(n)]
