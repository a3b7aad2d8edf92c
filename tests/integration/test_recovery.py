"""Recovery in seconds, on the real broker with real service processes.

- A SIGKILLed step (``condition``) or catalogue started again takes its partitions back as the
  same static member (KIP-345): the replacement joins the generation its predecessor held (the
  broker ran no rebalance, so it waited out no session) and processes a new record, with a session
  timeout of 45 s in force.
- SIGTERM of one of two replicas: it leaves the group explicitly after its last commit, the other
  takes every partition at its next heartbeat and processes a record of a partition it did not
  have.
- Default instance ids: one per live replica on a host; a killed replica's is taken over first.
- A SIGKILLed service loses no log line, whatever its output is (a file, a pipe).
- A random step SIGKILLed and restarted every 2-6 s on 60 segments: the catalogue equals the
  fault-free run's, and the time to settle is reported as a ratio of the fault-free time.

Nothing here is a race against a stopwatch except where the session timeout itself is the bound
(a recovery that waited it out would fail) and a loose 10x bound on that ratio (measured ~1x);
the numbers are printed and kept in ``artifacts/reliability.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner

from choreo import Envelope
from choreo.logs import read_log_events
from choreo.publisher import Publisher, make_producer
from choreo.settings import KafkaSettings
from choreo.store import Store
from choreo.topology import Topology, ensure_topics
from lisa_choreo.registry import TOPICS, topology
from lisa_choreo.simfile import simulate
from lisa_services.catalog.service import step as catalog_step
from lisa_services.ingest.files import plan_file
from tests.conftest import Services, wait_until
from tests.integration.fleet import (
    DAY,
    STEPS,
    assert_same_catalogue,
    catalogue,
    ingest_files,
    lines_days,
    split_days,
    start_steps,
)
from tests.integration.test_catalog import make_segments, publish
from tests.toy.events import NUMBERS, Number

pytestmark = pytest.mark.kafka

SESSION_S = 45  # long on purpose: a recovery that waited for it would fail the tests below
LONG_SESSION = {
    "LISA_STEP_SESSION_TIMEOUT_MS": str(SESSION_S * 1000),
    "LISA_CATALOG_SESSION_TIMEOUT_S": str(SESSION_S),
}
FIGURES = Path(os.environ.get("LISA_TEST_FIGURES", "artifacts/reliability.json"))


# -- helpers ----------------------------------------------------------------------------------


def events(proc, name: str) -> list[dict]:
    """The JSON log lines ``name`` of a service process, in order."""
    return read_log_events(proc.log_path, name)


def processed(proc, subject: str) -> bool:
    return any(r.get("subject") == subject for r in events(proc, "processed"))


def stacked(proc, segment_id: str) -> bool:
    return any(r.get("segment_id") == segment_id for r in events(proc, "segment stacked"))


def last_assignment(proc) -> dict:
    """The service's latest ``partitions assigned`` line (its partitions and generation)."""
    assigned = events(proc, "partitions assigned")
    assert assigned, f"{proc.name} logged no assignment; see {proc.log_path}"
    return assigned[-1]


def partition_numbers(assignment: dict, topic: str) -> set[int]:
    """Partition numbers of ``topic`` in a runner's assignment line (``TopicPartition(...)``)."""
    return {
        int(re.search(r"partition=(\d+)", tp).group(1))
        for tp in assignment["partitions"]
        if f"topic='{topic}'" in tp
    }


def group_members(settings: KafkaSettings, group: str) -> list[str]:
    """Member ids of a consumer group, as the broker has them now (DescribeGroups)."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def describe() -> list[str]:
        admin = AIOKafkaAdminClient(**settings.client_options())
        await admin.start()
        try:
            (response,) = await admin.describe_consumer_groups([group])
        finally:
            await admin.close()
        (described,) = response.to_object()["groups"]
        return [m["member_id"] for m in described["members"]]

    return asyncio.run(describe())


def partitions_of(proc) -> int:
    answer = proc.health()
    return answer.get("partitions", -1) if answer and answer["status"] == 200 else -1


def record_figures(name: str, **figures) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[name] = figures
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True))


@pytest.fixture(scope="module")
def noise_days(tmp_path_factory) -> list[Path]:
    """Eight one-day files of analytic noise at dt = 5 s: each a new raw segment."""
    work = tmp_path_factory.mktemp("noise8")
    whole = simulate(work / "noise8.h5", 8 * DAY, 5.0, "analytic", "none", seed=16)
    return split_days(whole, work / "days", 8, int(DAY / 5.0))


# -- instance ids: one per live replica, a killed one's taken over -----------------------------

_CLAIM = """
import sys, time
from choreo.runner import instance_id, mark_left
from choreo.settings import StepSettings
print(instance_id("probe", "group.x", StepSettings()), flush=True)
if sys.argv[1:] == ["left"]:
    mark_left()
time.sleep(600)
"""


def test_instance_ids_are_unique_per_host_and_a_killed_ones_is_taken_over(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISA_STEP_")}
    env["LISA_CHOREO_HOME"] = str(tmp_path)
    procs: list[subprocess.Popen] = []

    def claim(*args: str) -> str:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CLAIM, *args], stdout=subprocess.PIPE, text=True, env=env
        )
        procs.append(proc)
        return proc.stdout.readline().strip().rsplit("-", 1)[1]

    try:
        assert [claim("left"), claim(), claim()] == ["0", "1", "2"]  # live: never shared
        procs[0].terminate()  # index 0: stopped cleanly (it left its group)
        procs[1].kill()  # index 1: SIGKILLed, its membership still held by the broker
        for proc in procs[:2]:
            proc.wait()
        assert claim() == "1"  # the killed one's identity first: its partitions come back
        assert claim() == "0"  # then the lowest free index
        assert claim() == "3"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


# -- SIGKILL, then a replacement with the same instance id -------------------------------------


def test_sigkilled_step_restarted_takes_its_partitions_back_at_once(services, noise_days):
    settings = services.settings
    group = settings.topic("condition")
    first = services.start("condition", **LONG_SESSION)
    (segment,) = ingest_files(settings, services.store_uri, noise_days[:1])
    wait_until(lambda: processed(first, segment), 60, "condition to process the first segment")
    instance = first.health()["instance_id"]
    assert instance
    assert instance.startswith("condition-")
    before = last_assignment(first)
    assert len(before["partitions"]) == 6
    (member,) = group_members(settings, group)
    assert member.startswith(f"{instance}-")  # the broker knows it as a static member

    first.kill()  # SIGKILL: no commit, no LeaveGroup; the broker still counts it as a member
    killed = time.monotonic()
    second = services.start("condition", wait=False, **LONG_SESSION)
    (segment,) = ingest_files(settings, services.store_uri, noise_days[1:2])
    wait_until(
        lambda: processed(second, segment),
        SESSION_S,
        "the replacement to process a new segment within the session timeout",
    )
    recovered_s = time.monotonic() - killed

    assert second.health()["instance_id"] == instance
    after = last_assignment(second)
    assert after["partitions"] == before["partitions"]
    # The same generation: the broker swapped the member in place, without a rebalance, so
    # nothing waited for the killed member's session to expire.
    assert after["generation"] == before["generation"]
    (replacement,) = group_members(settings, group)
    assert replacement.startswith(f"{instance}-")
    assert replacement != member
    record_figures(
        "recovery-sigkill-condition",
        session_timeout_s=SESSION_S,
        kill_to_first_record_s=round(recovered_s, 2),
        generation_unchanged=True,
    )


@pytest.fixture
def catalog_topics(services: Services) -> Services:
    declared = Topology(topics=TOPICS, steps=(catalog_step,)).all_topics()
    asyncio.run(ensure_topics(services.settings, declared))
    return services


def test_sigkilled_catalog_restarted_takes_its_partitions_back_at_once(catalog_topics):
    services = catalog_topics
    settings = services.settings
    store = Store(services.store_uri)
    env = {**LONG_SESSION, "LISA_CATALOG_COMMIT_INTERVAL_S": "0.5"}
    first = services.start("catalog", **env)
    (seg0,) = make_segments(store, 1, first=0)
    publish(settings, [seg0.record()])
    wait_until(lambda: stacked(first, "seg-000"), 60, "the catalogue to stack seg-000")
    instance = first.health()["instance_id"]
    assert instance
    assert instance.startswith("catalog-")
    before = last_assignment(first)
    (member,) = group_members(settings, settings.topic("catalog"))
    assert member.startswith(f"{instance}-")

    first.kill()
    killed = time.monotonic()
    second = services.start("catalog", wait=False, **env)
    (seg1,) = make_segments(store, 1, first=1)
    publish(settings, [seg1.record()])
    wait_until(
        lambda: stacked(second, "seg-001"),
        SESSION_S,
        "the replacement catalogue to stack a new segment within the session timeout",
    )
    recovered_s = time.monotonic() - killed

    assert second.health()["instance_id"] == instance
    after = last_assignment(second)
    assert after["partitions"] == before["partitions"]
    assert after["generation"] == before["generation"]  # swapped in place, no rebalance
    (replacement,) = group_members(settings, settings.topic("catalog"))
    assert replacement.startswith(f"{instance}-")
    assert replacement != member
    assert not stacked(second, "seg-000")  # recovered from the changelog, not stacked again
    record_figures(
        "recovery-sigkill-catalog",
        session_timeout_s=SESSION_S,
        kill_to_first_record_s=round(recovered_s, 2),
        generation_unchanged=True,
    )


# -- SIGTERM of one of two replicas -----------------------------------------------------------


def test_sigterm_hands_the_partitions_over_to_the_other_replica_at_once(services, noise_days):
    settings = services.settings
    group = settings.topic("condition")
    leaving = services.start("condition", **LONG_SESSION)
    staying = services.start("condition", **LONG_SESSION)
    wait_until(
        lambda: partitions_of(leaving) > 0 and partitions_of(leaving) + partitions_of(staying) == 6,
        60,
        "the two replicas to share the six partitions",
    )
    assert leaving.health()["instance_id"] != staying.health()["instance_id"]
    theirs = partition_numbers(last_assignment(leaving), settings.topic("lisa.segments.raw"))
    assert theirs
    assert len(theirs) < 6

    # a segment whose key (its id) lands on a partition of the replica that will leave
    def partition(path: Path) -> int:
        key = plan_file(path, DAY, 0.0).segment_id(0).encode()
        return DefaultPartitioner()(key, list(range(6)), list(range(6)))

    target = next(p for p in noise_days if partition(p) in theirs)

    terminated = time.monotonic()
    assert leaving.terminate() == 0  # SIGTERM: finish, commit, leave
    assert leaving.log_contains('"left the group"')
    wait_until(
        lambda: partitions_of(staying) == 6,
        SESSION_S / 3,
        "the other replica to hold every partition well before the session timeout",
    )
    handed_over_s = time.monotonic() - terminated
    (segment,) = ingest_files(settings, services.store_uri, [target])
    wait_until(lambda: processed(staying, segment), 60, "the other replica to process it")
    assert processed(staying, segment)
    assert not processed(leaving, segment)
    assert len(last_assignment(staying)["partitions"]) == 6
    (member,) = group_members(settings, group)
    assert member.startswith(f"{staying.health()['instance_id']}-")
    record_figures(
        "recovery-sigterm-condition",
        session_timeout_s=SESSION_S,
        sigterm_to_all_partitions_s=round(handed_over_s, 2),
    )


# -- logs survive a SIGKILL --------------------------------------------------------------------

# A step whose handler writes through every channel a service has (our structlog lines, a
# library's stdlib logging, a bare print to stdout), then SIGKILLs its own process.
_SELF_KILLING_STEP = """
import logging, os, signal, sys
import structlog
from choreo import Consumes, Produces, Step
from choreo.runner import run_step
from tests.toy.events import NUMBERS, SQUARES, Number, Square

step = Step("toy-last-words", consumes=[Consumes(NUMBERS, Number)],
            produces=[Produces(SQUARES, Square)], description="dies on its first input")

@step.handler
def die(event):
    value = event.data.value
    print(f"printed to stdout before the kill {value}")
    logging.getLogger("some.library").warning("library line before the kill %s", value)
    structlog.get_logger("probe").warning("last words before the kill", value=value)
    os.kill(os.getpid(), signal.SIGKILL)

sys.exit(run_step(step))
"""


def _publish_number(settings: KafkaSettings, value: int) -> None:
    async def send() -> None:
        producer = make_producer(settings, "test-last-words")
        await producer.start()
        try:
            envelope = Envelope.root(Number(value=value), source="test", subject=f"n{value}")
            await Publisher(producer, settings).publish([(NUMBERS, envelope)])
        finally:
            await producer.stop()

    asyncio.run(send())


@pytest.mark.parametrize("output", ["file", "pipe"])
def test_a_sigkilled_service_loses_no_log_line(services, output):
    settings = services.settings
    env = {**os.environ, **services.env, "LISA_STEP_GROUP_ID": f"last-words-{uuid.uuid4().hex}"}
    env.pop("PYTHONUNBUFFERED", None)  # what the service must cope with, not what CI may set
    log_path = services.workdir / f"last-words-{output}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SELF_KILLING_STEP],
            stdout=log if output == "file" else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=Path(__file__).resolve().parents[2],
        )
    try:
        _publish_number(settings, 7)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    text = log_path.read_text() if output == "file" else out.decode()
    assert '"step started"' in text
    for line in (
        "printed to stdout before the kill 7",
        "library line before the kill 7",
        "last words before the kill",
    ):
        assert line in text, (line, text[-2000:])


# -- random SIGKILLs every 2-6 s on 60 segments ------------------------------------------------


def _fresh(kafka: KafkaSettings, tmp_path_factory, name: str) -> Services:
    settings = kafka.model_copy(update={"topic_prefix": f"{name}-{uuid.uuid4().hex[:6]}."})
    asyncio.run(ensure_topics(settings, topology().all_topics()))
    return Services(settings, tmp_path_factory.mktemp(name))


def _complete(settings: KafkaSettings, n: int) -> list | None:
    sources = catalogue(settings)
    return sources if sources and min(s.n_segments for s in sources) >= n else None


FEED_INTERVAL_S = 0.5  # segments arrive at 2 per second, as in the benchmark's end-to-end case


def _run(services: Services, files: list[Path], rng: random.Random | None) -> dict:
    """Start the pipeline, feed one file every FEED_INTERVAL_S and wait until the catalogue has
    stacked them all; with ``rng``, SIGKILL a random step every 2-6 s (and start it again at
    once) until then. Returns the catalogue, the time from the first input to the settled
    catalogue and the kills."""
    env = {"LISA_STEP_MAX_BATCH": "2"}  # small batches: kills land between and inside them
    start_steps(services, **env)
    running = {p.name: p for p in services.started}

    def feed() -> None:
        start = time.monotonic()
        for k, path in enumerate(files):
            time.sleep(max(start + k * FEED_INTERVAL_S - time.monotonic(), 0.0))
            ingest_files(services.settings, services.store_uri, [path])

    feeder = threading.Thread(target=feed)
    kills: list[str] = []
    victims: list[str] = []  # the steps in a random order, again and again: each gets killed
    result = None
    t0 = time.monotonic()
    feeder.start()
    while result is None:
        next_kill = time.monotonic() + (rng.uniform(2.0, 6.0) if rng else 3600.0)
        while result is None and time.monotonic() < next_kill:
            if not feeder.is_alive():
                result = _complete(services.settings, len(files))
            time.sleep(0.1)
            assert time.monotonic() - t0 < 900, f"not settled after {len(kills)} kills"
        if result is None:
            victims = victims or rng.sample(STEPS, len(STEPS))
            victim = victims.pop()
            running[victim].kill()  # SIGKILL: no drain, no commit, no LeaveGroup
            running[victim] = services.start(victim, wait=False, **env)
            kills.append(victim)
    settled_s = time.monotonic() - t0
    feeder.join()
    return {"catalogue": result, "settled_s": settled_s, "kills": kills}


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_random_sigkills_every_few_seconds_on_60_segments(kafka, tmp_path_factory):
    """60 daily segments at dt = 5 s (see ``_lines_days``) arriving at 2 per second; a random step
    SIGKILLed and restarted every 2-6 s until the catalogue has stacked them all. The catalogue
    equals the fault-free run's, and the time to settle is reported against the fault-free one."""
    n = 60
    files = lines_days(tmp_path_factory.mktemp("lines60"), n, seed=60)

    clean = _fresh(kafka, tmp_path_factory, "clean60")
    try:
        fault_free = _run(clean, files, None)
    finally:
        for proc in clean.started:
            proc.terminate()
    services = _fresh(kafka, tmp_path_factory, "kill60")
    try:
        faulty = _run(services, files, random.Random(20261130))
        result, expected, kills = faulty["catalogue"], fault_free["catalogue"], faulty["kills"]
        report = assert_same_catalogue(services.settings, result, expected, n)
        ratio = faulty["settled_s"] / fault_free["settled_s"]
        feed_s = (n - 1) * FEED_INTERVAL_S
        record_figures(
            "random-kills-60",
            segments=n,
            feed_s=feed_s,
            kills=len(kills),
            kills_per_step={s: kills.count(s) for s in STEPS},
            fault_free_s=round(fault_free["settled_s"], 1),
            with_kills_s=round(faulty["settled_s"], 1),
            tail_after_last_input_s=[
                round(fault_free["settled_s"] - feed_s, 1),
                round(faulty["settled_s"] - feed_s, 1),
            ],
            ratio=round(ratio, 2),
            dead_lettered=len(report.segments.dead_lettered),
            redelivered_events=report.segments.duplicate_deliveries,
        )
        assert set(kills) == set(STEPS)
        assert ratio < 10, f"settled in {ratio:.1f}x the fault-free time"
    finally:
        services.kill_all()
