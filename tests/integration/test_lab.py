"""Host faults across the lab's simulated servers (``lisa-choreo lab``), with the real pipeline.

One lab of three hosts (network namespaces on a bridge with no uplink, a KRaft broker on each,
topics with replication 3 and min ISR 2) serves every test of this module, and one fault-free run
of 32 daily segments is the reference. Each fault run feeds the same 32 segments (2 per second,
from the root namespace, as an operator's ingest would), injects its fault mid-run, and its final
catalogue must equal the reference: the same bins, stacked statistics to 1e-9 relative, each
segment and each estimate counted once, no segment unaccounted for. The step services run on h3
(the "service host"); h1 and h2 run brokers only.

- a broker host (h1) down mid-run (link cut, broker SIGKILLed), then booted again;
- the service host (h3, with its broker) down mid-run, its services restarted on h2 at once;
- the service host partitioned for 30 s (processes alive), then healed;
- the service host's link slowed (netem where the kernel has it, else a bandwidth cap and
  random loss) while the segments flow.

What each fault cost is measured, not asserted (the machine is shared): recovery times, the
longest stall of the catalogue, the time to settle against the reference's, redeliveries absorbed
and dead letters; the figures go to ``artifacts/lab.json`` and the README. The last test checks
that ``lab down`` leaves no namespace, link or process.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from choreo.logs import read_log_events
from choreo.topology import ensure_topics
from lisa_choreo.lab import net
from lisa_choreo.lab.core import Lab, LabSettings
from lisa_choreo.registry import topology
from tests.conftest import wait_until
from tests.integration import fleet
from tests.integration.fleet import STEPS, catalogue, ingest_files, lines_days

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab makes network namespaces: root only"),
]

SEGMENTS = 32
FEED_INTERVAL_S = 0.5
SERVICE_HOST, SPARE_HOST, BROKER_HOST = 3, 2, 1
PARTITION_S = 30
# A lab of its own, on a subnet and names no operator's default lab uses. The claim-check store
# is the S3 server on host 2 (the spare host, never faulted), on its own ports: weed's gRPC
# sockets are per machine, so the stack's SeaweedFS, which CI runs too, must not share them.
SETTINGS = LabSettings(
    name="lisalabt", subnet="10.214.0.0/24", kafka_heap="448m", store="s3", store_host=SPARE_HOST
)
FIGURES = Path(os.environ.get("LISA_TEST_FIGURES_LAB", "artifacts/lab.json"))


def record_figures(name: str, **figures) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[name] = figures
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The three-host lab; removed at the end whatever happened (and before, if a crashed
    session left one behind)."""
    the_lab = Lab(SETTINGS, root=tmp_path_factory.mktemp("lab"))
    net.destroy(SETTINGS.name, f"{SETTINGS.name}0")
    saved = dict(os.environ)
    try:
        the_lab.up(3, topics=False)
        # this process ingests as an operator on the root namespace would: the store's endpoint
        # (on the store host's lab address) and credentials file, as `lab env` prints them
        os.environ.update({k: v for k, v in the_lab.env().items() if k.startswith("AWS_")})
        yield the_lab
    finally:
        os.environ.clear()
        os.environ.update(saved)
        the_lab.down()
        # the services' and brokers' logs outlive the temporary folder, for a failed CI run
        logs = FIGURES.parent / "lab-logs"
        shutil.rmtree(logs, ignore_errors=True)
        for part in ("hosts", "data"):  # services' logs; brokers' (their storage is gone)
            if (the_lab.root / part).exists():
                shutil.copytree(
                    the_lab.root / part,
                    logs / part,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.sock", "credentials", "s3.json"),
                )


@pytest.fixture(autouse=True)
def healed(request):
    """After each test, every host healed: a failed fault test leaves no fault to the next."""
    yield
    if "lab" not in request.fixturenames:
        return
    the_lab = request.getfixturevalue("lab")
    state = the_lab.state()
    for host in list(state["faults"]) if state else []:
        the_lab.heal(int(host))


@pytest.fixture(scope="module")
def days(tmp_path_factory) -> list[Path]:
    """32 daily files: SciRD noise and three binaries promoted on their first segment."""
    return lines_days(tmp_path_factory.mktemp("lab-days"), SEGMENTS, seed=32)


class Run:
    """One pass of the pipeline over the segments, on topics of its own (a prefix)."""

    def __init__(self, lab: Lab, name: str, days: list[Path]) -> None:
        self.lab = lab
        self.days = days
        self.name = name
        self.prefix = f"{name}-{uuid.uuid4().hex[:6]}."
        self.settings = lab.kafka(self.prefix)
        rf, isr = lab.replication()
        asyncio.run(ensure_topics(self.settings, topology().all_topics(), rf, isr))
        # a store of its own too: ingest keeps its ledger of ingested files there
        self.store_uri = f"{lab.env()['LISA_STORE_URI'].rstrip('/')}/{name}"
        self.procs: list = []  # every process of the run, replaced ones included
        self.current: dict = {}  # service -> its process now
        self.restarts: list[str] = []
        self.feeder: threading.Thread | None = None
        self.t0 = 0.0

    def start_steps(self, host: int) -> None:
        for step in STEPS:
            self._start(host, step)
        wait_until(
            lambda: self.supervise() or all(self.current[s].ready for s in STEPS),
            300,
            f"{self.name}: the steps ready on h{host}",
        )

    def _start(self, host: int, service: str):
        env = {"LISA_KAFKA_TOPIC_PREFIX": self.prefix, "LISA_STORE_URI": self.store_uri}
        proc = self.lab.run(host, service, **env)
        self.procs.append(proc)
        self.current[service] = proc
        return proc

    def supervise(self) -> None:
        """What systemd or Kubernetes does: a service that exited is started again on its host,
        unless the host is down (moving it is the test's decision). The catalogue exits by
        design when it cannot publish (its input uncommitted, for its successor to redo)."""
        faults = (self.lab.state() or {}).get("faults", {})
        for service, proc in list(self.current.items()):
            if not proc.alive and faults.get(str(proc.host)) != "down":
                self.restarts.append(service)
                self._start(proc.host, service)

    def feed(self) -> None:
        """Feed the segments at 2 per second in the background, from the root namespace."""

        def loop() -> None:
            for k, path in enumerate(self.days):
                time.sleep(max(self.t0 + k * FEED_INTERVAL_S - time.monotonic(), 0.0))
                ingest_files(self.settings, self.store_uri, [path])

        self.t0 = time.monotonic()
        self.feeder = threading.Thread(target=loop, daemon=True)
        self.feeder.start()

    def stacked(self) -> list[datetime]:
        """When each segment was stacked, from the logs of every catalogue of this run."""
        return sorted(
            datetime.fromisoformat(record["timestamp"])
            for proc in self.procs
            if proc.service == "catalog"
            for record in read_log_events(proc.log, "segment stacked")
        )

    def wait_stacked(self, n: int, timeout_s: float, what: str) -> None:
        wait_until(lambda: self.supervise() or len(self.stacked()) >= n, timeout_s, what)

    def settle(self, timeout_s: float = 600) -> tuple[list, float]:
        """The catalogue once every source has stacked every segment, and the time from the
        first input to then."""

        def complete():
            self.supervise()
            if self.feeder is not None and self.feeder.is_alive():
                return None
            sources = catalogue(self.settings)
            return sources if sources and min(s.n_segments for s in sources) >= SEGMENTS else None

        sources = wait_until(complete, timeout_s, f"{self.name}: a complete catalogue")
        return sources, time.monotonic() - self.t0

    def longest_stall_s(self) -> float:
        times = self.stacked()
        return max((b - a).total_seconds() for a, b in itertools.pairwise(times))

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()


def store_objects(run: Run) -> list[str]:
    """The keys under the run's store prefix, listed on the lab's S3 server."""
    from choreo.objectstore import make_client, parse_root

    bucket, prefix = parse_root(run.store_uri)
    pages = (
        make_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
    )
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def run_pipeline(lab: Lab, days: list[Path], name: str) -> Run:
    run = Run(lab, name, days)
    run.start_steps(SERVICE_HOST)
    run.feed()
    return run


def assert_same_catalogue(run: Run, result: list, expected: list) -> dict:
    """The equality the issue asks for, and the run's accounting."""
    report = fleet.assert_same_catalogue(run.settings, result, expected, SEGMENTS)
    return {
        "lost": len(report.segments.unaccounted),
        "dead_lettered": len(report.segments.dead_lettered),
        "redelivered_events": report.segments.duplicate_deliveries,
    }


@pytest.fixture(scope="module")
def reference(lab, days):
    """The fault-free run on the same lab and data."""
    run = run_pipeline(lab, days, "ref")
    try:
        sources, settled_s = run.settle()
        assert_same_catalogue(run, sources, sources)  # accounting only: nothing lost
        stall = run.longest_stall_s()
        objects = store_objects(run)
        # every file's ledger note and its products are objects of the lab's S3 server
        assert sum(key.endswith(".done") for key in objects) == SEGMENTS
        assert sum(key.endswith(".h5") for key in objects) >= 3 * SEGMENTS
    finally:
        run.stop()
    record_figures(
        "lab-reference",
        segments=SEGMENTS,
        settled_s=round(settled_s, 1),
        longest_stall_s=round(stall, 2),
    )
    return {"catalogue": sources, "settled_s": settled_s, "stall_s": stall}


def figures_of(run: Run, settled_s: float, reference: dict, accounting: dict) -> dict:
    return {
        "segments": SEGMENTS,
        "restarted_by_supervisor": sorted(run.restarts),
        "settled_s": round(settled_s, 1),
        "vs_reference": round(settled_s / reference["settled_s"], 2),
        "longest_stall_s": round(run.longest_stall_s(), 2),
        "reference_longest_stall_s": round(reference["stall_s"], 2),
        **accounting,
    }


def isr_missing(lab: Lab, settings, node_id: int) -> int:
    """Partitions of the run's topics whose in-sync replicas lack ``node_id``."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def count() -> int:
        admin = AIOKafkaAdminClient(**settings.client_options())
        await admin.start()
        try:
            names = [settings.topic(t.name) for t in topology().all_topics()]
            described = await admin.describe_topics(names)
        finally:
            await admin.close()
        return sum(1 for t in described for p in t["partitions"] if node_id not in p["isr"])

    return asyncio.run(count())


def test_a_broker_host_down_mid_run_and_back(lab, days, reference):
    run = run_pipeline(lab, days, "brokerdown")
    try:
        run.wait_stacked(8, 120, "8 segments stacked before the fault")
        downed = time.monotonic()
        lab.fault(BROKER_HOST, "down")
        # the pipeline goes on with two brokers (min ISR 2): 8 more segments while h1 is down
        run.wait_stacked(16, 300, "8 more segments stacked with h1 down")
        progress_s = time.monotonic() - downed
        healed = time.monotonic()
        lab.heal(BROKER_HOST)  # boots the broker and waits until it is back in the cluster
        back_s = time.monotonic() - healed
        wait_until(
            lambda: isr_missing(lab, run.settings, BROKER_HOST) == 0,
            180,
            "h1's broker back in every partition's in-sync replicas",
        )
        isr_s = time.monotonic() - healed
        sources, settled_s = run.settle()
        accounting = assert_same_catalogue(run, sources, reference["catalogue"])
    finally:
        run.stop()
    record_figures(
        "lab-broker-host-down",
        down_to_8_more_stacked_s=round(progress_s, 1),
        heal_to_broker_in_cluster_s=round(back_s, 1),
        heal_to_full_isr_s=round(isr_s, 1),
        **figures_of(run, settled_s, reference, accounting),
    )


def test_a_service_host_down_its_services_restarted_on_another(lab, days, reference):
    run = run_pipeline(lab, days, "hostdown")
    try:
        run.wait_stacked(8, 120, "8 segments stacked before the fault")
        stacked_before = len(run.stacked())
        downed = time.monotonic()
        lab.fault(SERVICE_HOST, "down")  # its services and its broker SIGKILLed, link cut
        assert not any(p.alive for p in run.current.values())
        run.start_steps(SPARE_HOST)  # the operator (or a supervisor) restarts them on h2
        restarted_s = time.monotonic() - downed
        run.wait_stacked(stacked_before + 1, 300, "the restarted catalogue to stack a segment")
        first_s = time.monotonic() - downed
        sources, settled_s = run.settle()
        accounting = assert_same_catalogue(run, sources, reference["catalogue"])
        lab.heal(SERVICE_HOST)  # boots its broker again, for the next tests
    finally:
        run.stop()
    record_figures(
        "lab-service-host-down",
        down_to_restarted_ready_s=round(restarted_s, 1),
        down_to_first_new_stack_s=round(first_s, 1),
        **figures_of(run, settled_s, reference, accounting),
    )


def test_a_service_host_partitioned_for_30_s_then_healed(lab, days, reference):
    run = run_pipeline(lab, days, "partition")
    try:
        run.wait_stacked(8, 120, "8 segments stacked before the fault")
        lab.fault(SERVICE_HOST, "partition")
        time.sleep(PARTITION_S)  # the outage itself: the services must ride it out alone
        assert all(p.alive for p in run.current.values())  # cut off, not killed
        stacked_at_heal = len(run.stacked())
        healed = time.monotonic()
        lab.heal(SERVICE_HOST)
        run.wait_stacked(stacked_at_heal + 1, 300, "a segment stacked after the heal")
        resumed_s = time.monotonic() - healed
        sources, settled_s = run.settle()
        accounting = assert_same_catalogue(run, sources, reference["catalogue"])
    finally:
        run.stop()
    record_figures(
        "lab-service-host-partition",
        partition_s=PARTITION_S,
        heal_to_first_new_stack_s=round(resumed_s, 1),
        **figures_of(run, settled_s, reference, accounting),
    )


def test_a_slow_link_to_the_service_host(lab, days, reference):
    run = run_pipeline(lab, days, "slow")
    try:
        run.wait_stacked(4, 120, "4 segments stacked before the fault")
        how = lab.fault(SERVICE_HOST, "slow")
        sources, settled_s = run.settle()
        lab.heal(SERVICE_HOST)
        accounting = assert_same_catalogue(run, sources, reference["catalogue"])
    finally:
        run.stop()
    record_figures("lab-slow-link", fault=how, **figures_of(run, settled_s, reference, accounting))


_REACH = """
import errno, socket, sys
for dst in sys.argv[1:]:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        s.settimeout(3)
        try:
            s.connect((dst, 53))
            s.send(b"x")
            print(dst, kind, "sent")
        except OSError as exc:
            print(dst, kind, errno.errorcode.get(exc.errno, exc.errno))
"""


def test_nothing_leaves_the_lab(lab):
    """From a host: any address outside the subnet is unreachable before a packet is made (no
    route), and no host's guard ever had to drop a packet for outside (after every fault run)."""
    import subprocess
    import sys

    layout = lab.layout
    outside = ["192.0.2.1", "1.1.1.1", "10.213.0.1", "172.16.0.1"]
    result = subprocess.run(
        ["ip", "netns", "exec", layout.netns(1), sys.executable, "-c", _REACH, *outside],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 2 * len(outside)
    assert all(line.endswith("ENETUNREACH") for line in lines), lines
    routes = net.in_ns(layout.netns(1), "ip", "-4", "route", "show", "table", "all").stdout
    assert "default" not in routes
    assert (
        net.in_ns(layout.switch, "ip", "-4", "addr", "show", "dev", net.BRIDGE).stdout.count("inet")
        == 0
    )
    for host in range(1, layout.hosts + 1):
        assert net.escaped_packets(layout, host) == 0


def test_lab_down_leaves_no_namespace_link_or_process(lab):
    """Last in the module: ``down`` on the shared lab, then again (idempotent). The module's
    teardown calls it once more, harmlessly."""
    pids_before = {ns: net.pids(ns) for ns in net.existing_namespaces(SETTINGS.name)}
    assert sum(len(p) for p in pids_before.values()) >= 3  # the brokers at least
    removed = lab.down()
    assert removed["namespaces"] == 4
    assert removed["links"] == 1
    assert net.existing_namespaces(SETTINGS.name) == []
    assert not net.link_exists(f"{SETTINGS.name}0")
    for pids in pids_before.values():
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or _zombie(pid), pid
    assert lab.state() is None
    assert not list((lab.root / "data").glob("kafka-*/data"))  # no broker storage left
    assert not list((lab.root / "data").glob("s3/objectstore-*/data"))  # no object left
    assert not list((lab.root / "data").glob("s3/objectstore-*/*.sock"))
    assert not list((lab.root / "data").glob("s3/objectstore-*/credentials"))
    assert lab.down() == {"processes": 0, "namespaces": 0, "links": 0}
    assert shutil.which("ip")  # (what the checks above relied on)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
