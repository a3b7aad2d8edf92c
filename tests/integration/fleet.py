"""Running the whole pipeline in tests: daily files, all services as processes, the catalogue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from choreo.publisher import make_producer
from choreo.settings import KafkaSettings
from choreo.store import Store
from lisa_pipeline.events import CatalogSource
from lisa_pipeline.topics import SOURCES_ESTIMATES
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


def as_table(sources) -> dict[int, dict]:
    return {
        s.frequency_bin: {
            "stacked_statistic": s.stacked_statistic,
            "stacked_snr": s.stacked_snr,
            "fap": s.fap,
            "frequency_hz": s.frequency_hz,
            "sigma_frequency_hz": s.sigma_frequency_hz,
            "mean_amplitude": s.mean_amplitude,
            "n_segments": s.n_segments,
            "n_estimates": s.n_estimates,
            "contributing_segments": sorted(s.contributing_segments),
        }
        for s in sources
    }


def assert_same(got, want) -> None:
    g, w = as_table(got), as_table(want)
    assert sorted(g) == sorted(w), "the same bins"
    for b, expected in w.items():
        for name, value in expected.items():
            if isinstance(value, float):
                assert g[b][name] == pytest.approx(value, rel=1e-9), (b, name)
            else:
                assert g[b][name] == value, (b, name)


def publish_raw(settings, records) -> None:
    async def send() -> None:
        producer = make_producer(settings, "test-reference-catalogue")
        await producer.start()
        try:
            futures = [
                await producer.send(
                    settings.topic(SOURCES_ESTIMATES), r.value, r.key, headers=list(r.headers)
                )
                for r in records
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(send())


def reference_catalogue(services: Services, records, n_segments: int, tmp_path: Path) -> list:
    """The catalogue a second, fresh catalog service builds from ``records`` (estimates records
    copied as they are, in their order) on a private prefix: what the catalogue should hold if
    only those segments had ever reached it."""
    import uuid

    from choreo.topology import Topology, ensure_topics
    from lisa_choreo.processes import ServiceProcess
    from lisa_choreo.registry import TOPICS
    from lisa_services.catalog.service import step as catalog_step

    reference = services.settings.model_copy(update={"topic_prefix": f"ref{uuid.uuid4().hex[:8]}."})
    declared = Topology(topics=TOPICS, steps=(catalog_step,)).all_topics()
    asyncio.run(ensure_topics(reference, declared))
    env = {
        **services.env,
        "LISA_KAFKA_TOPIC_PREFIX": reference.topic_prefix,
        "LISA_CHOREO_HOME": str(tmp_path / "ref-home"),
        "OTEL_TRACES_EXPORTER": "none",
    }
    proc = ServiceProcess("catalog", tmp_path / "ref-catalog.log", env).start()
    try:
        proc.wait_ready(120)
        publish_raw(reference, sorted(records, key=lambda r: (r.timestamp, r.partition)))
        return wait_for_catalogue(reference, n_segments, 300)
    finally:
        proc.terminate()


# (frequency Hz, optimal SNR per day in each of A and E): promoted on their first segment, far
# above the threshold at 60 segments and with their leakage far below it, so the catalogue does
# not depend on the order segments arrive in.
LINES = ((2.1e-3, 5.0), (4.3e-3, 6.0), (7.7e-3, 4.5))


def lines_days(out: Path, days: int, seed: int, dt: float = 5.0) -> list[Path]:
    """One LDC file per day at ``dt``: SciRD TDI 2.0 noise drawn as the simulator draws it, plus
    ``LINES``, so that every step does its real work (candidates, fits, promotions) on data made
    in a second (the verification binaries take a minute for 60 days).

    The binaries are promoted on their first segment, and their window's leakage stays far
    (> 4 sigma at 60 segments) below the promotion threshold: no bin hovers at the threshold,
    where the updates seen along the way would depend on the order segments arrive in, which
    differs between any two runs (six partitions processed in parallel), faults or not. Louder
    binaries (the benchmark's SNR 9-12 per day) make the leakage five bins from the 7.7 mHz line
    reach the threshold near 60 segments."""
    from lisa_science.noise import tdi_psd
    from lisa_science.segments import aet_to_xyz
    from lisa_science.simulate import coloured_noise

    n = int(DAY / dt)
    rng = np.random.default_rng(seed)
    time_s = np.arange(days * n) * dt
    channels = {
        ch: coloured_noise(days * n, dt, lambda f, ch=ch: tdi_psd(f, ch, "2.0"), rng)
        for ch in ("A", "E", "T")
    }
    for k, (f, snr) in enumerate(LINES):
        for ch, phase in (("A", 0.3 + k), ("E", 1.1 + k)):
            amplitude = snr * np.sqrt(float(tdi_psd(np.array([f]), ch, "2.0")[0]) / DAY)
            channels[ch] += amplitude * np.cos(2 * np.pi * f * time_s + phase)
    x, y, z = aet_to_xyz(channels["A"], channels["E"], channels["T"])
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for d in range(days):
        part = slice(d * n, (d + 1) * n)
        path = out / f"day-{d:03d}.h5"
        write_ldc(str(path), TDIData(t0=d * DAY, dt=dt, x=x[part], y=y[part], z=z[part]))
        files.append(path)
    return files


def fault_table(sources) -> dict[int, tuple]:
    """What a fault run must reproduce of each source: bin -> (stacked statistic, segments,
    estimates, contributing segment ids)."""
    return {
        s.frequency_bin: (
            s.stacked_statistic,
            s.n_segments,
            s.n_estimates,
            tuple(sorted(s.contributing_segments)),
        )
        for s in sources
    }


def assert_same_catalogue(settings: KafkaSettings, result: list, expected: list, n: int):
    """A fault run's catalogue equals the fault-free one (each source once, the same bins,
    statistics to 1e-9, every segment and estimate counted once) and its accounting loses no
    segment; returns the run's accounting report."""
    from lisa_choreo.accounting import build_report

    assert len(result) == len(expected)  # each source once
    got, want = fault_table(result), fault_table(expected)
    assert sorted(got) == sorted(want)  # the same bins
    for bin_, (stat, segments, estimates, contributing) in want.items():
        assert got[bin_][0] == pytest.approx(stat, rel=1e-9)
        assert got[bin_][1:] == (segments, estimates, contributing)
        assert len(set(contributing)) == len(contributing) == n  # every segment once
    report = asyncio.run(build_report(settings))
    assert len(report.segments.raw) == n
    assert report.segments.unaccounted == set()
    return report
