"""Pause and resume under load, on the real broker with real service processes.

- ``condition`` (the step runner) paused with ``lisa-choreo step pause`` while segments keep
  arriving: it stops taking any, keeps its group membership (the same member, the group Stable,
  the same generation: no rebalance), stays live and ready with ``paused`` in its health; resumed,
  it takes them all: every raw segment is conditioned exactly once and the catalogue counts each
  segment once.
- ``catalog`` (faust) paused the same way: nothing stacked while paused, same membership; a
  SIGTERM while paused stops it at once (it holds no event) and its successor starts paused;
  resumed, every segment is stacked once.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from collections import Counter

import pytest

from choreo.logs import read_log_events
from choreo.settings import KafkaSettings
from choreo.store import Store
from choreo.topology import Topology, ensure_topics
from lisa_choreo.processes import free_port
from lisa_choreo.registry import TOPICS
from lisa_pipeline.topics import SEGMENTS_CONDITIONED, SEGMENTS_RAW
from lisa_services.catalog.service import step as catalog_step
from tests.conftest import Services, read_all, wait_until
from tests.integration.fleet import STEPS, catalogue, ingest_files, lines_days
from tests.integration.test_catalog import make_segments, publish

pytestmark = pytest.mark.kafka


def describe_group(settings: KafkaSettings, group: str) -> tuple[str, list[str]]:
    """The group's state and member ids, as the broker has them (DescribeGroups)."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def describe() -> tuple[str, list[str]]:
        admin = AIOKafkaAdminClient(**settings.client_options())
        await admin.start()
        try:
            (response,) = await admin.describe_consumer_groups([group])
        finally:
            await admin.close()
        (described,) = response.to_object()["groups"]
        return described["state"], sorted(m["member_id"] for m in described["members"])

    return asyncio.run(describe())


def subjects(settings: KafkaSettings, topic: str) -> Counter:
    return Counter(r.key.decode() for r in read_all(settings, topic))


def paused(proc) -> bool:
    answer = proc.health()
    return bool(answer and answer["status"] == 200 and answer.get("paused") is True)


def running(proc) -> bool:
    answer = proc.health()
    return bool(answer and answer["status"] == 200 and answer.get("paused") is False)


def paused_gauge(port: int, step: str) -> float | None:
    """``lisa.step.paused`` of ``step`` as Prometheus scrapes it from the service."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("lisa_step_paused") and f'lisa_step="{step}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.timeout(600)
def test_a_paused_step_keeps_its_membership_takes_nothing_and_resumes_losing_nothing(
    services, tmp_path
):
    settings = services.settings
    files = lines_days(tmp_path / "days", 16, seed=16, dt=10.0)
    metrics_port = free_port()
    for name in STEPS:  # small batches, so that the pause lands between two of them
        extra = {"LISA_METRICS_PORT": str(metrics_port)} if name == "condition" else {}
        services.start(name, wait=False, LISA_STEP_MAX_BATCH="2", **extra)
    for proc in services.started:
        proc.wait_ready(120)
    condition = next(p for p in services.started if p.name == "condition")
    assert running(condition)
    assert paused_gauge(metrics_port, "condition") == 0
    group = settings.topic("condition")

    # load: one file every 0.3 s for the whole test, the pause landing in the middle of it
    fed: list[str] = []

    def feed() -> None:
        for path in files:
            fed.extend(ingest_files(settings, services.store_uri, [path]))
            time.sleep(0.3)

    feeder = threading.Thread(target=feed)
    feeder.start()
    wait_until(lambda: len(subjects(settings, SEGMENTS_CONDITIONED)) >= 2, 60, "some conditioned")
    result = services.cli("step", "pause", "condition", "--reason", "maintenance")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: paused(condition), 30, "condition paused")
    health = condition.health()
    assert health["ready"] is True
    assert health["live"] is True
    assert health["pause_reason"] == "maintenance"
    assert condition.health("livez")["status"] == 200
    state, members = describe_group(settings, group)
    assert state == "Stable"
    assert len(members) == 1
    generation = health["generation"]
    assert paused_gauge(metrics_port, "condition") == 1
    frozen = subjects(settings, SEGMENTS_CONDITIONED)

    feeder.join()  # the rest arrives while paused
    assert len(fed) == len(files)
    time.sleep(3.0)  # several polls: a paused step takes nothing
    assert subjects(settings, SEGMENTS_CONDITIONED) == frozen
    assert len(frozen) < len(files), "the pause should land before the last segment"
    assert sum(subjects(settings, SEGMENTS_RAW).values()) == len(files)
    assert describe_group(settings, group) == (state, members)  # same member, no rebalance
    assert condition.health()["generation"] == generation
    status = services.cli("step", "status", "condition")
    assert status.returncode == 0
    assert "paused" in status.stdout
    assert "maintenance" in status.stdout

    result = services.cli("step", "resume", "condition")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: running(condition), 30, "condition running again")
    assert paused_gauge(metrics_port, "condition") == 0
    sources = wait_until(
        lambda: (c := catalogue(settings)) and min(s.n_segments for s in c) >= len(files) and c,
        300,
        "the catalogue of every segment",
    )
    conditioned = subjects(settings, SEGMENTS_CONDITIONED)
    assert set(conditioned) == set(fed)  # no loss
    assert set(conditioned.values()) == {1}  # no duplicate: each conditioned exactly once
    for source in sources:
        assert sorted(source.contributing_segments) == sorted(fed)  # each counted once
        assert source.n_segments == len(files)
    assert describe_group(settings, group) == (state, members)
    assert condition.health()["generation"] == generation
    assert len(read_log_events(condition.log_path, "step paused")) == 1
    assert len(read_log_events(condition.log_path, "step resumed")) == 1
    assigned = read_log_events(condition.log_path, "partitions assigned")
    assert {a["generation"] for a in assigned} == {generation}  # no rebalance at all


@pytest.fixture
def catalog_services(services: Services) -> Services:
    declared = Topology(topics=TOPICS, steps=(catalog_step,)).all_topics()
    asyncio.run(ensure_topics(services.settings, declared))
    return services


def stacked_ids(proc) -> list[str]:
    return [e["segment_id"] for e in read_log_events(proc.log_path, "segment stacked")]


@pytest.mark.timeout(300)
def test_a_paused_catalogue_stacks_nothing_survives_a_restart_and_resumes(catalog_services):
    services = catalog_services
    settings = services.settings
    store = Store(services.store_uri)
    env = {"LISA_CATALOG_COMMIT_INTERVAL_S": "0.5"}
    first = services.start("catalog", **env)
    assert running(first)
    segments = make_segments(store, 12)
    publish(settings, [s.record() for s in segments[:4]])
    wait_until(lambda: len(stacked_ids(first)) == 4, 60, "4 segments stacked")

    assert services.cli("step", "pause", "catalog").returncode == 0
    wait_until(lambda: paused(first), 30, "the catalogue paused")
    group = settings.topic("catalog")
    state, members = describe_group(settings, group)
    generation = first.health()["generation"]
    publish(settings, [s.record() for s in segments[4:8]])
    time.sleep(3.0)
    assert len(stacked_ids(first)) == 4
    assert catalogue(settings)[0].n_segments == 4
    assert describe_group(settings, group) == (state, members)
    assert first.health()["generation"] == generation
    assert first.health("livez")["status"] == 200

    # SIGTERM while paused: it holds no event, so faust stops at once; its successor is paused
    t0 = time.monotonic()
    assert first.terminate(timeout_s=30) == 0
    assert time.monotonic() - t0 < 20
    second = services.start("catalog", **env)
    assert paused(second)
    publish(settings, [s.record() for s in segments[8:]])
    time.sleep(2.0)
    assert stacked_ids(second) == []

    assert services.cli("step", "resume", "catalog").returncode == 0
    wait_until(lambda: running(second), 30, "the catalogue running again")
    (source,) = wait_until(
        lambda: (c := catalogue(settings)) and c[0].n_segments == 12 and c, 60, "12 segments"
    )
    ids = [s.envelope.data.timing.segment_id for s in segments]
    assert sorted(source.contributing_segments) == sorted(ids)
    counted = stacked_ids(first) + stacked_ids(second)
    assert sorted(counted) == sorted(ids)  # each stacked exactly once
