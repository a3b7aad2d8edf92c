"""``lisa-choreo tail`` on the real broker: it shows what is there, filters, follows, stops cleanly
on SIGINT, and leaves no trace in the cluster (no consumer group, no committed offset)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from choreo import Envelope, Event
from choreo.publisher import Publisher, make_producer
from choreo.reader import partitions_of
from choreo.settings import KafkaSettings
from choreo.store import ArrayRef
from lisa_pipeline.events import CandidatesGB, GBCandidate, SegmentTiming
from lisa_pipeline.topics import CANDIDATES_GB
from tests.conftest import Services, read_all, wait_until
from tests.toy.events import NUMBERS, SQUARES, Number, Square

pytestmark = pytest.mark.kafka
# Other tests' private prefixes (the `prefixed` fixture): their groups may come and go meanwhile.
OTHER_TEST_GROUP = re.compile(r"^t[0-9a-f]{10}\.")


def publish(settings: KafkaSettings, items: Sequence[tuple[str, Event, str]]) -> list[Envelope]:
    """(topic, body, subject) -> root envelopes, durable on return."""
    envelopes = [(t, Envelope.root(data, source="test-tail", subject=s)) for t, data, s in items]

    async def send() -> None:
        producer = make_producer(settings, "test-tail")
        await producer.start()
        try:
            await Publisher(producer, settings).publish(envelopes)
        finally:
            await producer.stop()

    asyncio.run(send())
    return [e for _, e in envelopes]


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout.splitlines()


def candidates() -> CandidatesGB:
    ref = ArrayRef(uri="file:///s/x.h5", sha256="a" * 64, size_bytes=1, shapes={"f": [3]})
    return CandidatesGB(
        timing=SegmentTiming(segment_id="seg-1", t0=0.0, dt=5.0, n_samples=100),
        statistic=ref,
        fmin_hz=1e-4,
        fmax_hz=2e-2,
        n_independent_bins=10,
        fap=0.01,
        threshold=20.0,
        candidates=[GBCandidate(frequency_hz=3.2178e-3, bin=3, statistic=629.0, snr=25.0, fap=0)],
        conditioned=ref,
        psd=ref,
    )


def test_tail_shows_events_filters_them_and_prints_json(services: Services) -> None:
    numbers = publish(services.settings, [(NUMBERS, Number(value=i), f"n{i}") for i in range(5)])
    publish(
        services.settings, [(SQUARES, Square(value=i, square=i * i), f"n{i}") for i in range(3)]
    )
    publish(services.settings, [(CANDIDATES_GB, candidates(), "seg-1")])

    shown = lines(services.cli("tail", NUMBERS, "--from-beginning"))
    assert len(shown) == 5
    assert {re.search(r" (n\d)  value (\d)$", line).groups() for line in shown} == {
        (f"n{i}", str(i)) for i in range(5)
    }
    assert all(f" {NUMBERS} " in line and " lisa.toy.number.v1 " in line for line in shown)

    both = [NUMBERS, SQUARES, "--from-beginning"]
    squares = lines(services.cli("tail", *both, "--type", "lisa.toy.square.v1"))
    assert sorted(line.rsplit("  ", 1)[1] for line in squares) == ["0² = 0", "1² = 1", "2² = 4"]
    picked = lines(services.cli("tail", *both, "--subject", "n[12]"))
    assert sorted(re.search(r" (n\d)  ", line).group(1) for line in picked) == [
        "n1",
        "n1",
        "n2",
        "n2",
    ]
    none = lines(services.cli("tail", *both, "--type", "lisa.toy.square.v1", "--subject", "n4"))
    assert none == []

    (line,) = lines(services.cli("tail", CANDIDATES_GB, "--from-beginning"))
    assert line.endswith("seg-1  1 candidate, best 3.2178 mHz SNR 25.0 (FAP 0)")

    records = [
        json.loads(x) for x in lines(services.cli("tail", NUMBERS, "--from-beginning", "--json"))
    ]
    assert {r["headers"]["ce_id"] for r in records} == {e.id for e in numbers}
    for r in records:
        assert r["topic"] == NUMBERS  # without the deployment prefix, as typed
        assert isinstance(r["partition"], int)
        assert isinstance(r["offset"], int)
        assert r["key"] == r["headers"]["ce_subject"]
        assert r["body"] == {"value": int(r["key"][1:])}
        assert {"ce_specversion", "ce_type", "ce_source", "ce_time"} <= set(r["headers"])

    # default: from the end, without --follow: nothing new, says so, exits 0
    result = services.cli("tail", NUMBERS)
    assert lines(result) == []
    assert "nothing new" in result.stderr


def test_from_time_starts_at_the_first_record_at_or_after_it(services: Services) -> None:
    publish(services.settings, [(NUMBERS, Number(value=i), f"early{i}") for i in range(3)])
    cut = datetime.now(UTC) + timedelta(milliseconds=5)
    wait_until(lambda: datetime.now(UTC) > cut, 5, "the clock to pass the cut")
    publish(services.settings, [(NUMBERS, Number(value=i), f"late{i}") for i in range(4)])

    after = lines(services.cli("tail", NUMBERS, "--from-time", cut.isoformat()))
    assert sorted(re.search(r" (\w+)  value", x).group(1) for x in after) == [
        f"late{i}" for i in range(4)
    ]
    assert len(lines(services.cli("tail", NUMBERS, "--from-time", "-1h"))) == 7
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert lines(services.cli("tail", NUMBERS, "--from-time", future)) == []
    bad = services.cli("tail", NUMBERS, "--from-time", "last tuesday")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0


def test_a_missing_topic_is_one_line_and_exit_2(services: Services) -> None:
    result = services.cli("tail", "lisa.no.such.topic", "--from-beginning")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"lisa-choreo: no such topic: {services.settings.topic('lisa.no.such.topic')}"
    ]


async def _cluster_view(settings: KafkaSettings) -> tuple[set[str], dict[str, dict]]:
    """Every consumer group, and the committed offsets of this test's groups."""
    admin = AIOKafkaAdminClient(**settings.client_options())
    await admin.start()
    try:
        groups = {g[0] for g in await admin.list_consumer_groups()}
        ours = sorted(g for g in groups if g.startswith(settings.topic_prefix))
        offsets = {
            g: {
                (tp.topic, tp.partition): m.offset
                for tp, m in (await admin.list_consumer_group_offsets(g)).items()
            }
            for g in ours
        }
        return groups, offsets
    finally:
        await admin.close()


async def _end_offsets(settings: KafkaSettings, topic: str) -> dict[tuple[str, int], int]:
    partitions = await partitions_of(settings, [settings.topic(topic)])
    consumer = AIOKafkaConsumer(**settings.client_options(), group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        return {(tp.topic, tp.partition): end for tp, end in ends.items() if end}
    finally:
        await consumer.stop()


def test_tail_beside_a_step_commits_nothing_and_creates_no_group(services: Services) -> None:
    settings = services.settings
    services.start("toy-square")
    publish(settings, [(NUMBERS, Number(value=i), f"n{i}") for i in range(12)])
    wait_until(lambda: len(read_all(settings, SQUARES)) >= 12, 60, "12 squares")
    group = settings.topic("toy-square")
    ends = asyncio.run(_end_offsets(settings, NUMBERS))

    def settled() -> bool:
        committed = asyncio.run(_cluster_view(settings))[1].get(group, {})
        return all(committed.get(tp) == end for tp, end in ends.items())

    wait_until(settled, 60, "toy-square to commit every input")
    groups_before, offsets_before = asyncio.run(_cluster_view(settings))
    assert group in groups_before

    assert len(lines(services.cli("tail", NUMBERS, SQUARES, "--from-beginning"))) == 24
    assert len(lines(services.cli("tail", NUMBERS, "--from-time", "-1h", "--json"))) == 12
    lines(services.cli("tail", NUMBERS, SQUARES))

    groups_after, offsets_after = asyncio.run(_cluster_view(settings))
    assert offsets_after == offsets_before
    new = groups_after - groups_before
    unexplained = {
        g for g in new if g.startswith(settings.topic_prefix) or not OTHER_TEST_GROUP.match(g)
    }
    assert not unexplained, f"groups appeared while tailing: {sorted(unexplained)}"
    assert not [g for g in groups_after if "tail" in g.removeprefix(settings.topic_prefix)]


class _Lines:
    """A pipe read line by line in a thread, so the test can wait on it with a deadline."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def find(self, text: str) -> str | None:
        return next((x for x in list(self.lines) if text in x), None)

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


def test_follow_sees_a_later_event_and_sigint_exits_cleanly(services: Services) -> None:
    publish(services.settings, [(NUMBERS, Number(value=1), "before")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "lisa_choreo.cli", "tail", NUMBERS, "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **services.env},
    )
    try:
        out, err = _Lines(proc.stdout), _Lines(proc.stderr)
        wait_until(lambda: err.find("following") or proc.poll() is not None, 60, "tail -f ready")
        assert proc.poll() is None, err.lines
        t0 = time.monotonic()
        publish(services.settings, [(NUMBERS, Number(value=42), "after")])
        line = wait_until(lambda: out.find(" after "), 30, "the new event on tail's stdout")
        latency = time.monotonic() - t0
        assert line.endswith("after  value 42")
        assert not out.find(" before ")  # from the end: the older event is not replayed
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        out.join(5)
        err.join(5)
        assert not [x for x in err.lines if "Traceback" in x or "Error" in x], err.lines
        assert latency < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
