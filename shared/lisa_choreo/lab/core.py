"""A lab of hosts on one machine: brokers, the store and services in network namespaces.

``Lab.up(n)`` builds the network (``lisa_choreo.lab.net``), starts one Kafka node per host (a
KRaft quorum across the hosts, topics with replication 3 and min ISR 2 from three hosts on), the
claim-check store on host 1 (``lisa_choreo.lab.store``) and records the lab in
``$LISA_CHOREO_HOME/lab/state.json``. ``run`` starts a service in a host's namespace with the
lab's environment, its own host name (a UTS namespace, so that instance ids differ between hosts
as between servers) and its health endpoint on the host's address. ``fault`` and ``heal`` change
one host; ``down`` removes everything, from the state file or, without one, from the names.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from choreo.settings import KafkaSettings, home
from lisa_choreo.lab import net
from lisa_choreo.lab.net import LabError, Layout

KAFKA_PORT = 9092
HEALTH_BASE_PORT = 8100
FAULTS = ("down", "partition", "slow")
_children: dict[int, subprocess.Popen] = {}  # started by this process: reaped when they end


class LabSettings(BaseSettings):
    """``LISA_LAB_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="LISA_LAB_")

    name: str = Field("lisalab", description="prefix of the lab's namespaces and root link")
    subnet: ipaddress.IPv4Network = Field(
        ipaddress.IPv4Network("10.213.0.0/24"),
        description="the lab's private subnet; refused if a route of the machine covers it",
    )
    kafka_heap: str = Field("512m", description="heap of each host's broker JVM")
    store: str = Field("file", description="claim-check store: file or s3")
    store_host: int = Field(1, ge=1, description="the host that runs the object store")
    store_port: int = Field(
        8433,
        ge=1024,
        le=65535 - 10003,
        description="the S3 store's port (and P+1..P+3, P+10000..P+10003): not the stack's "
        "8333, since weed's gRPC sockets are per machine, not per namespace",
    )
    slow_delay_ms: int = Field(100, ge=0, description="fault slow: one-way delay (netem)")
    slow_jitter_ms: int = Field(20, ge=0, description="fault slow: delay jitter (netem)")
    slow_loss_pct: float = Field(2.0, ge=0, le=100, description="fault slow: random loss")
    slow_rate: str = Field("2mbit", description="fault slow without netem: tbf bandwidth cap")


@dataclass(frozen=True)
class LabProcess:
    """A service started by ``Lab.run``."""

    host: int
    service: str
    pid: int
    log: Path
    health_url: str

    def health(self, probe: str = "readyz", timeout_s: float = 2.0) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.health_url}/{probe}", timeout=timeout_s) as r:
                return {"status": r.status, **json.load(r)}
        except urllib.error.HTTPError as exc:
            return {"status": exc.code, **json.load(exc)}
        except (OSError, ValueError):
            return None

    @property
    def alive(self) -> bool:
        child = _children.get(self.pid)
        if child is not None:
            return child.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def terminate(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (drain, commit, leave the group), SIGKILL at the deadline."""
        deadline = time.monotonic() + timeout_s
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self.alive:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            while self.alive and time.monotonic() < deadline:
                time.sleep(0.1)
            deadline = time.monotonic() + 10

    @property
    def ready(self) -> bool:
        answer = self.health()
        return answer is not None and answer["status"] == 200

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready:
            if not self.alive:
                raise LabError(f"{self.service} on h{self.host} exited; see {self.log}")
            if time.monotonic() > deadline:
                raise LabError(f"{self.service} on h{self.host} not ready in {timeout_s} s")
            time.sleep(0.2)

    def log_contains(self, text: str) -> bool:
        try:
            return text in self.log.read_text(errors="replace")
        except OSError:
            return False

    def as_json(self) -> dict:
        return {
            "host": self.host,
            "service": self.service,
            "pid": self.pid,
            "log": str(self.log),
            "health_url": self.health_url,
        }


class Lab:
    """The lab of this ``LISA_CHOREO_HOME`` (one lab per name on a machine)."""

    def __init__(self, settings: LabSettings | None = None, root: Path | None = None) -> None:
        self.settings = settings or LabSettings()
        self.root = root or home() / "lab"
        self.state_file = self.root / "state.json"

    # -- state --------------------------------------------------------------------------------

    def state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def _save(self, state: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def _require_state(self) -> dict:
        state = self.state()
        if state is None:
            raise LabError("no lab is up here: `lisa-choreo lab up --hosts N`")
        return state

    @property
    def layout(self) -> Layout:
        state = self._require_state()
        return Layout(state["name"], ipaddress.IPv4Network(state["subnet"]), state["hosts"])

    def _host(self, host: int | str) -> int:
        number = int(str(host).removeprefix("h"))
        if not 1 <= number <= self.layout.hosts:
            raise LabError(f"no host {host}: the lab has h1..h{self.layout.hosts}")
        return number

    # -- brokers ------------------------------------------------------------------------------

    def nodes(self, layout: Layout | None = None):
        from lisa_choreo.localstack.brokers import KafkaNode

        layout = layout or self.layout
        quorum = tuple(layout.ip(i) for i in range(1, layout.hosts + 1))
        return [
            KafkaNode(
                port=KAFKA_PORT,
                node_id=i,
                cluster_size=layout.hosts,
                host=layout.ip(i),
                netns=layout.netns(i),
                quorum=quorum,
                state_root=self.root / "data",
                heap=self.settings.kafka_heap,
            )
            for i in range(1, layout.hosts + 1)
        ]

    def replication(self) -> tuple[int, int]:
        """(replication factor, min ISR) of the lab's topics: 3 and 2 from three hosts on."""
        rf = min(3, self.layout.hosts)
        return rf, 2 if rf >= 3 else 1

    def kafka(self, prefix: str = "") -> KafkaSettings:
        """How a client in the root namespace reaches the lab's cluster."""
        bootstrap = ",".join(n.bootstrap for n in self.nodes())
        return KafkaSettings(
            bootstrap_servers=bootstrap,
            security_protocol="PLAINTEXT",
            sasl_mechanism=None,
            topic_prefix=prefix,
        )

    def _start_broker(self, host: int) -> None:
        from lisa_choreo.localstack import brokers

        node = self.nodes()[host - 1]
        (node.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        brokers.start(node, base_port=KAFKA_PORT)

    def wait_brokers(self, timeout_s: float = 180.0) -> None:
        """Until every node answers with the whole cluster in its metadata."""
        from lisa_choreo.localstack import brokers

        try:
            brokers.wait_ready(self.nodes(), timeout_s)
        except brokers.StackError as exc:
            raise LabError(str(exc)) from exc

    # -- up / down ----------------------------------------------------------------------------

    def up(self, hosts: int, topics: bool = True) -> dict:
        """Build the lab of ``hosts`` hosts and start its brokers and store. A lab that is up
        with as many hosts is left alone; with another count, refused."""
        net.require_root()
        state = self.state()
        if state is not None and net.existing_namespaces(state["name"]):
            if state["hosts"] != hosts:
                raise LabError(f"a lab of {state['hosts']} hosts is up: `lab down` first")
            return state
        layout = Layout(self.settings.name, self.settings.subnet, hosts)
        self.down()  # leftovers of a lab that failed half-way, if any
        if self.settings.store_host > hosts:
            raise LabError(f"LISA_LAB_STORE_HOST={self.settings.store_host} > {hosts} hosts")
        state = {
            "name": layout.name,
            "subnet": str(layout.subnet),
            "hosts": hosts,
            "faults": {},
            "services": [],
            "store": {"kind": self.settings.store, "host": self.settings.store_host, "env": {}},
        }
        self._save(state)  # first: `down` finds what to remove even if the rest fails
        try:
            net.build(layout)
            for host in range(1, hosts + 1):
                self._start_broker(host)
            self.wait_brokers()
            from lisa_choreo.lab.store import start_object_store

            state["store"]["env"] = start_object_store(
                self, self.settings.store, self.settings.store_host
            )
            self._save(state)
            if topics:
                from choreo.topology import ensure_topics
                from lisa_choreo.registry import topology

                rf, isr = self.replication()
                asyncio.run(ensure_topics(self.kafka(), topology().all_topics(), rf, isr))
        except BaseException:
            self.down()
            raise
        return state

    def down(self) -> dict[str, int]:
        """Remove every namespace, link and process of the lab, and its data (not its logs).
        Idempotent."""
        state = self.state()
        name = state["name"] if state else self.settings.name
        removed = net.destroy(name, f"{name}0")
        # the brokers' storage goes (a next lab formats a new cluster), their logs stay
        for node_dir in (self.root / "data").glob("kafka-*"):
            shutil.rmtree(node_dir / "data", ignore_errors=True)
        (self.root / "data" / "cluster.id").unlink(missing_ok=True)
        shutil.rmtree(self.root / "store", ignore_errors=True)
        for server_dir in (self.root / "data" / "s3").glob("objectstore-*"):
            # the S3 store goes too (objects, sockets, its lab's credentials); its log stays
            shutil.rmtree(server_dir / "data", ignore_errors=True)
            for leftover in (*server_dir.glob("*.sock"), *server_dir.glob("*.pid")):
                leftover.unlink(missing_ok=True)
            for secret in ("credentials", "s3.json"):
                (server_dir / secret).unlink(missing_ok=True)
        self.state_file.unlink(missing_ok=True)
        return removed

    # -- services -----------------------------------------------------------------------------

    def env(self, prefix: str = "") -> dict[str, str]:
        """What a client needs to use the lab: its brokers, its store, the replication of the
        topics that services create themselves (the catalogue's changelog)."""
        state = self._require_state()
        rf, _ = self.replication()
        return {
            "LISA_KAFKA_BOOTSTRAP_SERVERS": self.kafka().bootstrap_servers,
            "LISA_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
            "LISA_KAFKA_TOPIC_PREFIX": prefix,
            "LISA_CATALOG_REPLICATION": str(rf),
            **state["store"]["env"],
        }

    def run(self, host: int | str, service: str, **extra: str) -> LabProcess:
        """Start ``lisa-choreo run SERVICE`` in the host's namespace (detached; ``down`` or
        ``fault down`` ends it). ``extra`` adds or overrides environment variables."""
        from lisa_choreo.registry import SERVICE_MODULES

        if service not in SERVICE_MODULES:
            raise LabError(f"unknown service {service!r}: {', '.join(SERVICE_MODULES)}")
        number = self._host(host)
        state = self._require_state()
        if state["faults"].get(str(number)) == "down":
            raise LabError(f"h{number} is down: `lab heal h{number}` first")
        layout = self.layout
        index = sum(1 for s in state["services"] if s["host"] == number)
        port = HEALTH_BASE_PORT + index
        workdir = self.root / "hosts" / f"h{number}"
        log = workdir / "logs" / f"{service}-{index}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **self.env(),
            "LISA_CHOREO_HOME": str(workdir / "home"),
            "LISA_HEALTH_HOST": layout.ip(number),
            "LISA_HEALTH_PORT": str(port),
            # spans to a collector on the host's own loopback would go nowhere: off unless asked
            "OTEL_TRACES_EXPORTER": os.environ.get("OTEL_TRACES_EXPORTER", "none"),
            **extra,
        }
        hostname = layout.netns(number)
        command = [
            "ip", "netns", "exec", layout.netns(number),
            # its own host name (UTS namespace): instance and client ids name the host, as on
            # separate servers; each exec keeps the pid, which is the service's in the end
            "unshare", "--uts", "--",
            "sh", "-c", 'hostname "$0" && exec "$@"', hostname,
            sys.executable, "-m", "lisa_choreo.cli", "run", service,
        ]  # fmt: skip
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        _children[proc.pid] = proc
        started = LabProcess(number, service, proc.pid, log, f"http://{layout.ip(number)}:{port}")
        state["services"].append(started.as_json())
        self._save(state)
        return started

    def services(self) -> list[LabProcess]:
        state = self.state() or {"services": []}
        return [
            LabProcess(s["host"], s["service"], s["pid"], Path(s["log"]), s["health_url"])
            for s in state["services"]
        ]

    # -- faults -------------------------------------------------------------------------------

    def fault(self, host: int | str, kind: str) -> str:
        """Inject ``kind`` on the host; returns what was done, in words."""
        if kind not in FAULTS:
            raise LabError(f"fault {kind!r}: one of {', '.join(FAULTS)}")
        number = self._host(host)
        state = self._require_state()
        layout = self.layout
        if state["faults"].get(str(number)):
            raise LabError(f"h{number} already has a fault: `lab heal h{number}` first")
        if kind == "down":
            net.set_link(layout, number, up=False)  # first: peers get no FIN/RST, as on power loss
            killed = net.kill_all(layout.netns(number))
            what = f"h{number} down: link cut, {killed} process(es) killed"
        elif kind == "partition":
            net.set_link(layout, number, up=False)
            what = f"h{number} partitioned: link cut, processes running"
        else:
            what = f"h{number} slow: " + net.slow_down(
                layout,
                number,
                net.Slowness(
                    self.settings.slow_delay_ms,
                    self.settings.slow_jitter_ms,
                    self.settings.slow_loss_pct,
                    self.settings.slow_rate,
                ),
            )
        state["faults"][str(number)] = kind
        self._save(state)
        return what

    def heal(self, host: int | str, wait: bool = True) -> str:
        """Undo the host's fault: link up, no slowness; a host that was down boots again, i.e.
        its broker starts (and, with ``wait``, is back in the cluster). Services that ran there
        stay dead: restarting them, there or elsewhere, is the operator's decision."""
        number = self._host(host)
        state = self._require_state()
        layout = self.layout
        fault = state["faults"].pop(str(number), None)
        net.speed_up(layout, number)
        net.set_link(layout, number, up=True)
        if fault == "down":
            self._start_broker(number)
            if wait:
                self.wait_brokers()
        self._save(state)
        return f"h{number} healed" + (f" (was {fault})" if fault else " (had no fault)")

    # -- status -------------------------------------------------------------------------------

    def status(self) -> list[str]:
        from lisa_choreo.localstack import brokers

        state = self.state()
        if state is None:
            return ["lab: down"]
        layout = self.layout
        if not net.existing_namespaces(layout.name):
            return [f"lab: state in {self.state_file} but no namespace: `lab down` to clean up"]
        lines = [
            f"lab {layout.name}: {layout.hosts} host(s) on {layout.subnet}, "
            f"root namespace {layout.root_ip}"
        ]
        alive = {p.pid for p in self.services() if p.alive}
        for i, node in zip(range(1, layout.hosts + 1), self.nodes(), strict=True):
            broker = "running" if brokers._running_pid(node) else "stopped"
            services = [
                f"{p.service}({p.pid})" for p in self.services() if p.host == i and p.pid in alive
            ]
            lines.append(
                f"  h{i} {layout.ip(i)} link {'up' if net.link_up(layout, i) else 'DOWN'}"
                f" fault {state['faults'].get(str(i), '-')} broker {broker}"
                f" services {' '.join(services) or '-'}"
                f" escaped-packets {net.escaped_packets(layout, i)}"
            )
        return lines
