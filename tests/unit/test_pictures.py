"""The run's pictures from synthetic data: valid PNGs, drawn also when there is nothing to show,
and a threshold that is the catalogue's own rule (no broker, no store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from lisa_choreo import pictures
from lisa_pipeline.events import CatalogSource
from lisa_science.stacking import stacked_fap

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG
    with Image.open(path) as image:
        size = image.size
        image.verify()
    return size


def source(sid: str, f_hz: float, k: int, snr: float, n: int = 10) -> CatalogSource:
    return CatalogSource(
        source_id=sid,
        frequency_hz=f_hz,
        frequency_bin=k,
        sigma_frequency_hz=1e-7,
        stacked_statistic=snr**2 + 4 * n,
        stacked_snr=snr,
        fap=1e-20,
        n_segments=n,
        n_estimates=n,
    )


def synthetic(n_segments: int = 10, seed: int = 0) -> pictures.RunData:
    """Chi-square 4 dof noise per segment and bin, plus two loud bins, as the search gives."""
    rng = np.random.default_rng(seed)
    f = np.linspace(1e-4, 2e-2, 3000)
    per_segment = rng.chisquare(4, size=(n_segments, f.size))
    per_segment[:, 500] += 60.0
    per_segment[:, 1800] += 30.0
    per_segment[-1, 2000:2100] = np.nan  # a segment whose PSD was unknown there
    total = np.nansum(per_segment, axis=0)
    count = np.isfinite(per_segment).sum(axis=0)
    stack = pictures.Stack(f, total, count, n_independent_bins=1500, segments=n_segments)
    quality = [
        pictures.SegmentQuality(
            segment_id=f"s-{i}",
            t0=1e6 + i * 86_400.0,
            duration_s=86_400.0,
            ratios=tuple(
                pictures.BandRatio(ch, lo, hi, 1 + 0.05 * rng.standard_normal())
                for ch in "AET"
                for lo, hi in ((5e-4, 2e-3), (2e-3, 5e-3), (1e-2, 2.5e-2))
            ),
            gap_samples=100 * (i % 3),
            glitch_samples=7 if i == 4 else 0,
            usable_fraction=0.99,
        )
        for i in range(n_segments)
    ]
    return pictures.RunData(
        stacks=[stack],
        sources=[source("GB1234.000", f[500], 500, 24.0), source("GB12000.0", f[1800], 1800, 16.0)],
        fap=1e-3,
        truth_hz=[f[500], f[1800]],
        quality=quality,
        hop_ms={"conditioned": list(rng.lognormal(4, 1, 50)), "searched": [12.0, 15.0, 9.0]},
        queue_wait_ms={"conditioned": list(rng.lognormal(2, 1, 50)), "estimated": [0.0, 3.0]},
        title="unit",
    )


def test_draw_all_writes_four_valid_pngs(tmp_path: Path):
    drawn = pictures.draw_all(synthetic(), tmp_path)
    assert [p.path.name for p in drawn] == [
        "spectrum.png",
        "quality.png",
        "catalogue.png",
        "latency.png",
    ]
    for p in drawn:
        width, height = png_size(p.path)
        assert width >= 800, p.path
        assert height >= 500, p.path
        assert p.what
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temp file, then renamed


def test_pictures_are_drawn_when_there_is_nothing_to_show(tmp_path: Path):
    """A run that failed early still gets its pictures, saying what is missing."""
    drawn = pictures.draw_all(pictures.RunData(), tmp_path)
    assert len(drawn) == 4
    for p in drawn:
        png_size(p.path)


def test_threshold_is_the_stacked_fap_the_catalogue_promotes_at():
    data = synthetic()
    stack = data.stacks[0]
    threshold = stack.threshold(data.fap)
    for k in (0, 2050):  # 10 segments, and 9 where one segment was NaN
        n = stack.count[k]
        # 3000 grid bins over 1500 independent ones: padded by 2, trials are the grid bins
        n_trials, coherence = stack.trials()
        assert (n_trials, coherence) == (3000, pytest.approx(0.4563, abs=1e-4))
        fap = stacked_fap(threshold[k], n, n_trials, coherence=coherence)
        assert fap == pytest.approx(data.fap, rel=1e-6)
        # between Bonferroni over the independent bins and over the grid bins
        assert stats.chi2.isf(data.fap / 1500, 4 * n) < threshold[k]
        assert threshold[k] < stats.chi2.isf(data.fap / 3000, 4 * n)
    assert threshold[2050] < threshold[0]
    assert np.isnan(stack.threshold(1e-3)[stack.count == 0]).all()


def test_each_figure_alone_into_a_new_folder(tmp_path: Path):
    data = synthetic(n_segments=3)
    out = tmp_path / "deep" / "folder"
    paths = [
        pictures.draw_spectrum(out / "s.png", data.stacks, data.sources, data.fap),
        pictures.draw_quality(out / "q.png", data.quality),
        pictures.draw_catalogue(out / "c.png", data.sources),
        pictures.draw_latency(out / "l.png", data.hop_ms, {}),
    ]
    for path in paths:
        png_size(path)


def test_hop_latencies_pair_each_segment_with_its_previous_hop():
    from lisa_choreo.mainjob import hop_latencies

    times = {
        "raw": {"a": 1000, "b": 1000},
        "conditioned": {"a": 1150, "b": 1400},
        "searched": {"a": 1200},  # b not searched yet: no hop for it
        "estimated": {"a": 1290},
        "catalogued": {"a": 1300},
    }
    hops = hop_latencies(times)
    assert hops == {
        "conditioned": [150.0, 400.0],
        "searched": [50.0],
        "estimated": [90.0],
        "catalogued": [10.0],
    }


def test_queue_waits_come_from_each_stage_s_consumer_spans_on_its_input(tmp_path: Path):
    import json

    from choreo.settings import KafkaSettings
    from lisa_choreo.mainjob import queue_waits

    kafka = KafkaSettings(topic_prefix="run-1.")
    spans = [
        {"name": "process run-1.lisa.segments.raw", "attributes": {"lisa.queue_wait_ms": 12.5}},
        {"name": "process run-1.lisa.sources.estimates", "attributes": {"lisa.queue_wait_ms": 3}},
        # the catalog's internal hop, another run's span, a span without the attribute
        {"name": "process run-1.catalog-by-grid", "attributes": {"lisa.queue_wait_ms": 99}},
        {"name": "process run-2.lisa.segments.raw", "attributes": {"lisa.queue_wait_ms": 99}},
        {"name": "send run-1.lisa.segments.conditioned", "attributes": {}},
    ]
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(json.dumps(s) for s in spans) + "\nnot json\n")
    assert queue_waits(path, kafka) == {
        "conditioned": [12.5],
        "searched": [],
        "estimated": [],
        "catalogued": [3.0],
    }
    assert queue_waits(tmp_path / "absent.jsonl", kafka)["conditioned"] == []


def test_the_run_record_holds_what_plot_needs(tmp_path: Path, monkeypatch):
    from lisa_choreo.mainjob import RUN_FILE, Run

    monkeypatch.setenv("LISA_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    monkeypatch.setenv("LISA_CATALOG_FAP", "0.002")
    run = Run.new("process", tmp_path / "out")
    run.truth_hz = [1.94e-3]
    run.save()
    again = Run.load(tmp_path / "out")
    assert again == run
    assert again.topic_prefix == f"process-{run.run_id}."
    assert again.kafka().topic_prefix == again.topic_prefix
    assert again.kafka().bootstrap_servers == "127.0.0.1:19092"
    assert again.catalog_fap == 0.002
    assert again.store_uri == (tmp_path / "out" / "store").resolve().as_uri()
    assert again.service_env("catalog")["LISA_CATALOG_FAP"] == "0.002"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / RUN_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a run record"):
        Run.load(tmp_path / "bad")


def test_the_catalogue_gains_a_sky_map_once_sources_are_refined(tmp_path: Path):
    plain = [source("GB1", 1.94e-3, 317, 38.0), source("GB2", 3.22e-3, 538, 24.0)]
    refined = [
        plain[0].model_copy(
            update={
                "ecliptic_latitude_rad": 0.65,
                "sigma_ecliptic_latitude_rad": 0.3,
                "ecliptic_longitude_rad": 2.97,
                "sigma_ecliptic_longitude_rad": 0.2,
            }
        ),
        plain[1],
    ]
    width_plain, _ = png_size(pictures.draw_catalogue(tmp_path / "a.png", plain))
    width_sky, _ = png_size(pictures.draw_catalogue(tmp_path / "b.png", refined))
    assert width_sky > 1.5 * width_plain  # the sky map beside the frequency plot
