"""Retraction, a saga by compensation, on the real broker with every service as its own process.

- 30 daily segments through condition, gb-search, estimate and catalog (coarse cadence, dt =
  10 s, three binaries that every step really processes). The last day's file is retracted by
  file BEFORE it is ingested, one stacked segment is retracted by id after the catalogue settled:
  the final catalogue equals the one a second catalogue builds from the same estimates without
  those two segments (same bins, statistics to 1e-9 relative, same sources and estimates);
  retracting again changes nothing (no new record on ``lisa.catalog``); the retracted-first
  segment, ingested afterwards, is never counted; the retraction's trace links to the segment's.
- Synthetic statistics straight into the catalogue: a retraction sent before its segment is
  honoured, across a restart of the catalogue (the ledger is in its table), and a retraction
  subtracts exactly what was added.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from choreo.logs import read_log_events
from choreo.store import Store
from choreo.topology import Topology, ensure_topics
from lisa_choreo import traceview
from lisa_choreo.registry import TOPICS
from lisa_pipeline.topics import CATALOG, RETRACTIONS, SOURCES_ESTIMATES
from lisa_services.catalog.service import step as catalog_step
from lisa_services.ingest.files import plan_file
from tests.conftest import Services, read_all, wait_until
from tests.integration.fleet import (
    DAY,
    LINES,
    assert_same,
    catalogue,
    ingest_files,
    lines_days,
    reference_catalogue,
    start_steps,
)
from tests.integration.test_catalog import LINE, make_segments, publish

pytestmark = pytest.mark.kafka

DT = 10.0  # coarse: 8640 samples a day, every step fast
DAYS = 30


def events(proc, name: str) -> list[dict]:
    return read_log_events(proc.log_path, name)


def logged(proc, name: str, segment_id: str) -> bool:
    return any(r.get("segment_id") == segment_id for r in events(proc, name))


@pytest.fixture(scope="module")
def days(tmp_path_factory) -> list[Path]:
    return lines_days(tmp_path_factory.mktemp("lines30") / "days", DAYS, seed=30, dt=DT)


@pytest.mark.timeout(900)
def test_retraction_gives_the_catalogue_without_the_segment(services, days, kafka, tmp_path):
    settings = services.settings
    start_steps(services)
    catalog = next(p for p in services.started if p.name == "catalog")
    last_id = plan_file(days[-1], DAY, 0.0).segment_id(0)

    # 1. the last day is retracted by file before it is ingested
    result = services.cli("retract", "--file", str(days[-1]), "--reason", "bad calibration")
    assert result.returncode == 0, result.stderr
    assert last_id in result.stdout
    wait_until(lambda: logged(catalog, "segment retracted", last_id), 60, "the first retraction")

    # 2. 29 days through the pipeline
    ids = ingest_files(settings, services.store_uri, days[:-1])
    assert len(ids) == DAYS - 1
    wait_until(
        lambda: (c := catalogue(settings)) and min(s.n_segments for s in c) >= DAYS - 1,
        600,
        "a catalogue stacking 29 segments",
    )
    before = catalogue(settings)
    assert len(before) == len(LINES)

    # 3. one stacked segment retracted by id
    target = ids[5]
    result = services.cli("retract", target, "--reason", "glitch storm")
    assert result.returncode == 0, result.stderr
    after = wait_until(
        lambda: (
            (c := catalogue(settings))
            and all(target not in s.contributing_segments for s in c)
            and c
        ),
        60,
        "the catalogue without the retracted segment",
    )
    assert {s.n_segments for s in after} == {DAYS - 2}
    # the grid lists what it subtracted; the id retracted before any segment of it came is in
    # the ledger only, until that segment arrives
    assert all(s.retracted_segments == [target] for s in after)
    assert after.withdrawn == []  # strong lines: nothing falls below the threshold

    # 4. the file retracted first now arrives: never counted
    (late,) = ingest_files(settings, services.store_uri, days[-1:])
    assert late == last_id
    wait_until(
        lambda: logged(catalog, "retracted segment ignored", last_id), 120, "the late segment"
    )
    wait_until(
        lambda: all(s.retracted_segments == sorted([target, last_id]) for s in catalogue(settings)),
        60,
        "the updates saying the late segment is retracted",
    )
    # 5. retracting again changes nothing and publishes nothing
    n_records = len(read_all(settings, CATALOG))
    result = services.cli("retract", target)
    assert result.returncode == 0, result.stderr
    wait_until(
        lambda: len([r for r in events(catalog, "retraction already applied")]) >= 1,
        60,
        "the second retraction seen",
    )
    assert len(read_all(settings, CATALOG)) == n_records
    final = catalogue(settings)
    assert_same(final, after)
    assert all(last_id not in s.contributing_segments for s in final)

    # The reference: a second catalogue fed the same estimates, without the two segments.
    estimates = read_all(settings, SOURCES_ESTIMATES)
    kept = [r for r in estimates if r.key.decode() not in (target, last_id)]
    assert len({r.key for r in kept}) == DAYS - 2
    expected = reference_catalogue(services, kept, DAYS - 2, tmp_path)
    assert_same(final, expected)

    # products rewritten: catalog.csv holds the 28-segment catalogue
    csv_text = (services.workdir / "home" / "products" / "catalog" / "catalog.csv").read_text()
    rows = csv_text.strip().splitlines()[1:]
    assert len(rows) == len(LINES)
    assert all(f",{DAYS - 2}," in row for row in rows)

    # tracing: the retraction's processing links to the segment's own flow
    assert catalog.terminate() == 0
    spans = traceview.read_jsonl(services.spans)
    stacked = [
        s
        for s in spans
        if s["name"] == f"process {settings.topic(SOURCES_ESTIMATES)}"
        and s["attributes"].get("cloudevents.event_subject") == target
    ]
    assert stacked
    segment_traces = {s["trace_id"] for s in stacked}
    retract_spans = [s for s in spans if s["name"] == f"catalog retract {target}"]
    assert retract_spans
    assert {lk["trace_id"] for s in retract_spans for lk in s["links"]} <= segment_traces
    assert any(lk["trace_id"] in segment_traces for s in retract_spans for lk in s["links"])
    consumed = [
        s
        for s in spans
        if s["name"] == f"process {settings.topic(RETRACTIONS)}"
        and s["attributes"].get("cloudevents.event_subject") == target
    ]
    assert consumed, "the retraction is consumed in its own trace"
    assert {s["trace_id"] for s in retract_spans} <= {s["trace_id"] for s in consumed}


# -- synthetic statistics straight into the catalogue ------------------------------------------


@pytest.fixture
def catalog_services(services: Services) -> Services:
    declared = Topology(topics=TOPICS, steps=(catalog_step,)).all_topics()
    asyncio.run(ensure_topics(services.settings, declared))
    return services


def test_a_retraction_before_its_segment_survives_a_restart(catalog_services):
    services = catalog_services
    settings = services.settings
    store = Store(services.store_uri)
    env = {"LISA_CATALOG_COMMIT_INTERVAL_S": "0.5"}
    first = services.start("catalog", **env)
    segments = make_segments(store, 8)
    ids = [s.envelope.data.timing.segment_id for s in segments]

    result = services.cli("retract", "seg-003")  # before the segment exists anywhere
    assert result.returncode == 0, result.stderr
    wait_until(lambda: logged(first, "segment retracted", "seg-003"), 60, "the retraction")
    # seg-003 first, before any segment of its grid: refused, its grid noted in the ledger
    publish(settings, [segments[3].record()])
    wait_until(lambda: logged(first, "retracted segment ignored", "seg-003"), 60, "seg-003")
    publish(settings, [s.record() for s in segments if s is not segments[3]])
    kept = [s for s in segments if s.envelope.data.timing.segment_id != "seg-003"]
    (source,) = wait_until(
        lambda: (c := catalogue(settings)) and c[0].n_segments == 7 and c, 60, "7 segments"
    )
    total = np.sum([s.stat for s in kept], axis=0)
    assert source.frequency_bin == LINE
    assert source.stacked_statistic == pytest.approx(float(total[LINE]), rel=1e-12)
    assert source.contributing_segments == sorted(set(ids) - {"seg-003"})
    assert source.retracted_segments == ["seg-003"]  # listed by the grid created after it
    assert source.n_estimates == 3  # seg-000..002 carry one; seg-003's never counted
    assert not logged(first, "segment stacked", "seg-003")

    # A restart recovers the ledger from the table's changelog: seg-003 again is still refused.
    assert first.terminate() == 0
    second = services.start("catalog", **env)
    publish(settings, [segments[3].record()])
    wait_until(lambda: logged(second, "retracted segment ignored", "seg-003"), 60, "after restart")
    assert not logged(second, "segment stacked", "seg-003")
    # ... and a retraction of a stacked segment subtracts exactly its statistic, once.
    assert services.cli("retract", "seg-005", "seg-005").returncode == 0
    (source,) = wait_until(
        lambda: (c := catalogue(settings)) and c[0].n_segments == 6 and c, 60, "6 segments"
    )
    rest = [s for s in kept if s.envelope.data.timing.segment_id != "seg-005"]
    total = np.sum([s.stat for s in rest], axis=0)
    assert source.stacked_statistic == pytest.approx(float(total[LINE]), rel=1e-9)
    assert source.retracted_segments == ["seg-003", "seg-005"]
    assert sorted(source.contributing_segments) == sorted(
        s.envelope.data.timing.segment_id for s in rest
    )
