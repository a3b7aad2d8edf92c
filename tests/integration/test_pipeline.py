"""The science services as separate processes on the real broker, with real HDF5 files.

Truths come from ../shared/science (the SciRD noise model and the verification-binary SNRs), not
from numbers this code produced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from choreo import codec
from choreo.events import Event
from choreo.settings import KafkaSettings
from lisa_choreo import traceview
from lisa_pipeline.events import CandidatesGB, SegmentConditioned, SegmentRaw, SourceEstimates
from lisa_pipeline.topics import (
    CANDIDATES_GB,
    SEGMENTS_CONDITIONED,
    SEGMENTS_RAW,
    SOURCES_ESTIMATES,
)
from tests.conftest import Services, read_all, wait_until

pytestmark = pytest.mark.kafka

DAY = 86_400.0
SCIENCE_STEPS = ("condition", "gb-search", "estimate")


def events(settings: KafkaSettings, topic: str, model: type[Event]) -> list:
    return [
        codec.decode(r.key, r.value, r.headers, {model.ce_type: model})
        for r in read_all(settings, topic)
    ]


def run_steps(services: Services, **env: str) -> None:
    for name in SCIENCE_STEPS:
        services.start(name, wait=False, **env)
    for proc in services.started:
        proc.wait_ready()


def simulate(services: Services, name: str, days: float, *args: str) -> str:
    path = services.workdir / name
    result = services.cli("simulate", str(path), "--days", str(days), *args)
    assert result.returncode == 0, result.stderr
    return str(path)


def ingest(services: Services, path: str, *args: str) -> str:
    result = services.cli("ingest", path, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_psd_of_one_day_of_analytic_noise_matches_the_scird_model(services: Services):
    """One day holds only T (f_hi - f_lo) independent frequency cells per band (130 in
    0.5-2 mHz), so no estimator can pin the level better than ~1 / sqrt(T df): 9 % there, 2.4 %
    at 35-55 mHz (Welch with a Hann window, 50 % overlap, loses ~10 % more). A fixed 0.9-1.1
    bound would fail ~30 % of honest days in the lowest band; the test allows 3 sigma of that
    limit per band and checks the level to 10 % where the limit allows (bands above 10 mHz)."""
    run_steps(services)
    ingest(services, simulate(services, "noise.h5", 1, "--sources", "none", "--seed", "11"))
    (seg,) = wait_until(
        lambda: events(services.settings, SEGMENTS_CONDITIONED, SegmentConditioned),
        90,
        "a conditioned segment",
    )
    for r in seg.data.psd_model_ratio:
        if r.channel == "T":
            continue  # T's model is tiny below 10 mHz and not part of the acceptance
        sigma = 1.1 / np.sqrt(DAY * (r.fmax_hz - r.fmin_hz))
        tolerance = 0.1 if r.fmin_hz >= 1e-2 else 3 * sigma
        assert abs(r.ratio - 1) <= tolerance, (r.channel, r.fmin_hz, r.ratio, tolerance)
    assert seg.data.usable_fraction == 1.0
    assert seg.data.glitch_samples == 0


def test_am_cvn_is_found_in_one_day_with_all_verification_binaries(services: Services):
    # This day holds no Galactic foreground, and condition is told so. With the default
    # foreground component (0.5 yr) the free amplitude's one-day scatter (~1 % of the half-year
    # level here) raises the 2 mHz PSD by ~20 %, and this realisation's AM CVn (SNR 5.5 for an
    # optimal 8, against a threshold of 5.2) falls below the threshold: the measured cost of
    # following a foreground on a single day (README, "Foreground").
    run_steps(services, LISA_CONDITION_FOREGROUND_YEARS="0")
    ingest(services, simulate(services, "vb.h5", 1, "--sources", "verification", "--seed", "5"))
    (est,) = wait_until(
        lambda: events(services.settings, SOURCES_ESTIMATES, SourceEstimates),
        120,
        "estimates of the segment",
    )
    (cands,) = events(services.settings, CANDIDATES_GB, CandidatesGB)
    bin_hz = 1 / DAY
    am_cvn = [c for c in cands.data.candidates if abs(c.frequency_hz - 1.94e-3) <= bin_hz]
    assert am_cvn, [c.frequency_hz for c in cands.data.candidates]
    assert 5 <= am_cvn[0].snr <= 11  # optimal SNR 8.0 over 1 day (../shared/science table)
    assert am_cvn[0].statistic > cands.data.threshold
    fits = [e for e in est.data.estimates if abs(e.frequency_hz - 1.94e-3) <= bin_hz]
    assert fits
    assert 5 <= fits[0].snr <= 11
    assert fits[0].sigma_frequency_hz < bin_hz  # the fit localises better than a bin


def test_ten_days_of_noise_give_no_more_false_candidates_than_the_fap(services: Services):
    """FAP 1 % per segment over 10 segments: 0.1 false candidates expected; P(>= 2) = 0.5 %,
    so at most one is allowed (a miscalibrated statistic gives dozens)."""
    run_steps(services)
    ingest(services, simulate(services, "noise10.h5", 10, "--sources", "none", "--seed", "21"))
    found = wait_until(
        lambda: (
            (e := events(services.settings, CANDIDATES_GB, CandidatesGB)) and len(e) >= 10 and e
        ),
        180,
        "10 search results",
    )
    false_alarms = sum(len(e.data.candidates) for e in found)
    assert false_alarms <= 1
    # and the statistic is chi-square 4 on noise: mean 4 over the band of every segment
    from choreo.store import Store

    store = Store(services.store_uri)
    means = [float(np.nanmean(store.get(e.data.statistic)["stat"])) for e in found]
    assert 3.8 <= float(np.mean(means)) <= 4.2


def test_bad_files_are_refused_and_reingest_publishes_nothing(services: Services):
    import h5py

    bad = services.workdir / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("obs/other", data=np.zeros(10))
    result = services.cli("ingest", str(bad))
    assert result.returncode == 2
    assert "obs/tdi" in result.stderr or "dataset" in result.stderr
    truncated = services.workdir / "truncated.h5"
    good = simulate(services, "good.h5", 2, "--sources", "none")
    truncated.write_bytes(Path(good).read_bytes()[:50_000])
    result = services.cli("ingest", str(truncated))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert read_all(services.settings, SEGMENTS_RAW) == []  # nothing partial
    assert "published 2 segment(s)" in ingest(services, good)
    assert "published nothing" in ingest(services, good)
    raw = events(services.settings, SEGMENTS_RAW, SegmentRaw)
    assert len(raw) == 2
    assert {e.subject for e in raw} == {e.data.timing.segment_id for e in raw}


def test_a_segment_flow_is_one_trace_through_every_service(services: Services):
    run_steps(services)
    ingest(services, simulate(services, "t.h5", 1, "--sources", "none", "--seed", "2"))
    wait_until(
        lambda: events(services.settings, SOURCES_ESTIMATES, SourceEstimates), 90, "the estimates"
    )

    def traced_services():
        spans = traceview.read_jsonl(services.spans)
        return [
            {s["service"] for s in trace}
            for trace in traceview.by_trace(spans).values()
            if any(s["name"] == "ingest segment" for s in trace)
        ]

    wait_until(
        lambda: any(t >= {"ingest", *SCIENCE_STEPS} for t in traced_services()),
        30,
        "one trace holding ingest, condition, gb-search and estimate spans",
    )


def test_six_hours_of_instrument_noise_through_condition(services: Services):
    """The realistic path: lisainstrument + pytdi noise (test-mass 3 fm, OMS 15 pm, laser only)
    through ingest and condition. Six hours hold few independent cells per band (32 in
    0.5-2 mHz), so each band must match the model within max(15 %, 3 sigma) of that limit."""
    services.start("condition", LISA_CONDITION_WELCH_SEGMENT_S="3600")
    path = simulate(
        services, "instrument.h5", 0.25, "--noise", "instrument", "--sources", "none", "--seed", "1"
    )
    ingest(services, path, "--segment-s", "21600")
    (seg,) = wait_until(
        lambda: events(services.settings, SEGMENTS_CONDITIONED, SegmentConditioned),
        120,
        "the conditioned segment",
    )
    for r in seg.data.psd_model_ratio:
        if r.channel == "T":
            continue
        sigma = 1.1 / np.sqrt(0.25 * DAY * (r.fmax_hz - r.fmin_hz))
        assert abs(r.ratio - 1) <= max(0.15, 3 * sigma), (r.channel, r.fmin_hz, r.ratio)
