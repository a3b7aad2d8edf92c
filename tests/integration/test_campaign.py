"""The hybrid mode: a reprocessing campaign orchestrated by Temporal over the running choreography.

Every step service, the catalogue and the flow monitor run as processes on a private prefix; a
Temporal dev server of its own; ``lisa-choreo campaign reprocess`` as an operator runs it (the
command runs the campaign worker and the Kafka bridge while it waits).

- A four-day file, first cut in days, is reprocessed in half days: the old segments are
  retracted, the new ones counted, and the release published. The final catalogue equals the
  one a fresh catalogue builds from the new cut's estimates alone (same bins, statistics to
  1e-9); the release holds that catalogue and both lists of segments; running the command again
  attaches to the finished campaign: no second release, nothing changes.
- The same with a file whose last half day is empty: the new cut's last segment is dead-lettered
  (``no-data``), so the campaign fails and compensates: the new cut is retracted, the old data
  re-ingested (``<revision>_restore``) and counted again; no release; the catalogue equals the
  one built from the restored cut alone, which holds the same data as the original cut.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from choreo import codec
from lisa_pipeline.events import CatalogueRelease
from lisa_pipeline.products import csv_text
from lisa_pipeline.topics import CATALOG_RELEASES, SOURCES_ESTIMATES
from lisa_science.ldc import TDIData, read_ldc, write_ldc
from lisa_services.ingest.files import plan_file
from tests.conftest import Services, read_all
from tests.integration.fleet import (
    DAY,
    assert_same,
    catalogue,
    ingest_files,
    reference_catalogue,
    start_steps,
    wait_for_catalogue,
)
from tests.integration.test_flows_monitor import free_port
from tests.integration.test_retraction import LINES, lines_days

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DAYS = 4
HALF = DAY / 2


def one_file(tmp_path: Path, blank_last_half_day: bool) -> Path:
    """``DAYS`` days of noise and ``LINES`` in one file (optionally the last 12 h all NaN)."""
    parts = [read_ldc(str(p)) for p in lines_days(tmp_path / "days", DAYS, seed=4)]
    x, y, z = (np.concatenate([getattr(p, c) for p in parts]) for c in "xyz")
    if blank_last_half_day:
        for channel in (x, y, z):
            channel[-len(channel) // (2 * DAYS) :] = np.nan
    path = tmp_path / "four-days.h5"
    write_ldc(str(path), TDIData(t0=0.0, dt=parts[0].dt, x=x, y=y, z=z))
    return path


def releases(services: Services) -> list[CatalogueRelease]:
    types = {CatalogueRelease.ce_type: CatalogueRelease}
    return [
        codec.decode(r.key, r.value, r.headers, types).data
        for r in read_all(services.settings, CATALOG_RELEASES)
    ]


def start_pipeline(services: Services) -> None:
    start_steps(services)
    services.start(
        "flows",
        LISA_FLOWS_HTTP_PORT=str(free_port()),
        LISA_FLOWS_CHECK_INTERVAL_S="0.25",
        LISA_FLOWS_OFFSETS_INTERVAL_S="1",
    )


def reprocess(services: Services, server, path: Path, *args: str):
    return services.cli(
        "campaign",
        "reprocess",
        str(path),
        "--revision",
        "half",
        "--segment-s",
        str(HALF),
        "--wait-s",
        "300",
        *args,
        LISA_TEMPORAL_ADDRESS=server.address,
        OTEL_TRACES_EXPORTER="none",
    )


def estimates_of(services: Services, ids: list[str]) -> list:
    wanted = set(ids)
    return [r for r in read_all(services.settings, SOURCES_ESTIMATES) if r.key.decode() in wanted]


@pytest.mark.timeout(900)
def test_a_campaign_reprocesses_a_file_and_releases_its_catalogue(
    services: Services, temporal_server, tmp_path: Path
):
    settings = services.settings
    path = one_file(tmp_path, blank_last_half_day=False)
    start_pipeline(services)
    old = ingest_files(settings, services.store_uri, [path])
    assert len(old) == DAYS
    wait_for_catalogue(settings, DAYS, 300)

    result = reprocess(services, temporal_server, path, "--reason", "half-day cut")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("released ")

    new = [plan_file(path, HALF, 0.0, revision="half").segment_id(i) for i in range(2 * DAYS)]
    final = catalogue(settings)
    assert len(final) == len(LINES)
    for source in final:
        assert sorted(source.contributing_segments) == sorted(new)
        assert source.n_segments == 2 * DAYS

    (release,) = releases(services)
    assert release.segments == new
    assert release.retracted == old
    assert release.revision == "half"
    assert release.segment_s == HALF
    assert release.n_sources == len(final)
    assert release.csv == csv_text(final)
    assert release.campaign.startswith("campaign-")
    assert release.campaign.endswith(".half")

    expected = reference_catalogue(services, estimates_of(services, new), 2 * DAYS, tmp_path)
    assert_same(final, expected)

    # the same command again: the finished campaign's result, nothing redone
    again = reprocess(services, temporal_server, path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout == result.stdout
    assert len(releases(services)) == 1
    assert_same(catalogue(settings), expected)


@pytest.mark.timeout(900)
def test_a_failed_campaign_compensates_and_releases_nothing(
    services: Services, temporal_server, tmp_path: Path
):
    settings = services.settings
    path = one_file(tmp_path, blank_last_half_day=True)
    start_pipeline(services)
    ingest_files(settings, services.store_uri, [path])
    wait_for_catalogue(settings, DAYS, 300)
    original = catalogue(settings)

    result = reprocess(services, temporal_server, path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "dead-lettered" in result.stdout
    assert "no-data" in result.stdout
    assert "restored cut catalogued" in result.stdout

    restored = [
        plan_file(path, DAY, 0.0, revision="half_restore").segment_id(i) for i in range(DAYS)
    ]
    final = catalogue(settings)
    for source in final:
        assert sorted(source.contributing_segments) == sorted(restored)
    assert releases(services) == []
    # the restored cut holds the original data: the original catalogue's statistics, new ids
    expected = reference_catalogue(services, estimates_of(services, restored), DAYS, tmp_path)
    assert_same(final, expected)
    by_bin = {s.frequency_bin: s for s in original}
    for source in final:
        before = by_bin[source.frequency_bin]
        assert source.stacked_statistic == pytest.approx(before.stacked_statistic, rel=1e-9)
        assert source.stacked_snr == pytest.approx(before.stacked_snr, rel=1e-9)
    assert sorted(by_bin) == sorted(s.frequency_bin for s in final)
