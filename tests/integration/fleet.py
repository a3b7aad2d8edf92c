"""Running the whole pipeline in tests: daily files, all services as processes, the catalogue."""

from __future__ import annotations

import asyncio
from pathlib import Path

from choreo.settings import KafkaSettings
from choreo.store import Store
from lisa_pipeline.events import CatalogSource
from lisa_science.ldc import TDIData, read_ldc_slice, write_ldc
from lisa_services.ingest.files import plan_file
from lisa_services.ingest.publish import publish_file
from tests.conftest import Services, wait_until

DAY = 86_400.0
STEPS = ("condition", "gb-search", "estimate", "catalog")


def split_days(path: Path, out_dir: Path, days: int, samples_per_day: int) -> list[Path]:
    """One LDC file per day, so tests can feed a run gradually with the same segment ids."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for d in range(days):
        part = read_ldc_slice(str(path), d * samples_per_day, (d + 1) * samples_per_day)
        target = out_dir / f"day-{d:03d}.h5"
        write_ldc(str(target), TDIData(t0=part.t0, dt=part.dt, x=part.x, y=part.y, z=part.z))
        files.append(target)
    return files


def ingest_files(settings: KafkaSettings, store_uri: str, files: list[Path]) -> list[str]:
    """Publish each file's segments (in this process; the ingest CLI does the same)."""
    store = Store(store_uri)
    ids: list[str] = []
    for path in files:
        plan = plan_file(path, DAY, 0.0)
        result = asyncio.run(publish_file(plan, store, settings, 0.0))
        ids += result.segment_ids
    return ids


def catalogue(settings: KafkaSettings) -> list[CatalogSource]:
    from lisa_choreo.catalogue import read_catalogue

    return asyncio.run(read_catalogue(settings))


def wait_for_catalogue(settings: KafkaSettings, n_segments: int, timeout_s: float) -> list:
    """The catalogue once every source has stacked all segments."""
    return wait_until(
        lambda: (c := catalogue(settings)) and min(s.n_segments for s in c) >= n_segments and c,
        timeout_s,
        f"a catalogue stacking {n_segments} segments",
    )


def start_steps(services: Services, **env: str) -> None:
    for name in STEPS:
        services.start(name, wait=False, **env)
    for proc in services.started:
        proc.wait_ready(120)
