"""The estimate step's handler through ``StepHarness`` on search results written by hand, and the
whole science chain (condition -> gb-search -> estimate) through three harnesses, no broker."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from choreo import Envelope
from choreo.store import ArrayRef, Store
from choreo.testing import StepHarness
from lisa_pipeline.events import (
    CandidatesGB,
    GBCandidate,
    SegmentConditioned,
    SourceEstimates,
)
from lisa_pipeline.topics import (
    CANDIDATES_GB,
    SEGMENTS_CONDITIONED,
    SEGMENTS_RAW,
    SOURCES_ESTIMATES,
)
from lisa_services.condition import service as condition
from lisa_services.estimate import service as estimate
from lisa_services.gb_search import service as gb_search

from .test_condition_step import DAY, SEGMENT_ID, noise_xyz, raw_segment, sinusoid_xyz
from .test_gb_search_step import (
    F_SOURCE,
    RHO,
    SNR_A,
    SNR_E,
    conditioned_segment,
    noise_aet,
    with_source,
)

PHASES = (0.4, -1.9)
T0 = 3 * DAY  # phases refer to absolute time: a segment that does not start at 0 checks it
NOWHERE = ArrayRef(uri="file:///nowhere/x.h5", sha256="0" * 64, size_bytes=0, shapes={})


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """One store for the three steps, as in a deployment."""
    s = Store((tmp_path / "store").as_uri())
    for module in (condition, gb_search, estimate):
        monkeypatch.setattr(module, "STORE", s)
    return s


def candidate(frequency_hz: float) -> GBCandidate:
    return GBCandidate(frequency_hz=frequency_hz, bin=0, statistic=300.0, snr=17.2, fap=1e-60)


def search_result(seg: SegmentConditioned, candidates: list[GBCandidate]) -> CandidatesGB:
    return CandidatesGB(
        timing=seg.timing,
        statistic=NOWHERE,
        fmin_hz=1e-4,
        fmax_hz=2e-2,
        n_independent_bins=1720,
        fap=0.01,
        threshold=29.6,
        candidates=candidates,
        conditioned=seg.data,
        psd=seg.psd,
    )


def run_estimate(cands: CandidatesGB | Envelope) -> Envelope:
    result = StepHarness(estimate.step).deliver(CANDIDATES_GB, cands, key=SEGMENT_ID)
    assert result.dead_letters == []
    [out] = result.events(SOURCES_ESTIMATES)
    return out


def _wrap(phase: float) -> float:
    return math.remainder(phase, 2 * math.pi)


def check_fit(est, amps: tuple[float, float]) -> None:
    """A fit agrees with the injected source within 4 of its own Fisher sigmas (a pull beyond
    4 has probability 6e-5 per parameter), and localises far better than a Fourier bin."""
    assert abs(est.frequency_hz - F_SOURCE) < 4 * est.sigma_frequency_hz
    # Cramer-Rao for SNR 18 over a day: sqrt(3) / (pi T rho) = 0.03 / T
    assert est.sigma_frequency_hz < 0.1 / DAY
    assert abs(est.amplitude_a - amps[0]) < 4 * est.sigma_amplitude_a
    assert abs(est.amplitude_e - amps[1]) < 4 * est.sigma_amplitude_e
    assert abs(_wrap(est.phase_a - PHASES[0])) < 4 * est.sigma_phase_a
    assert abs(_wrap(est.phase_e - PHASES[1])) < 4 * est.sigma_phase_e
    # the fitted SNR is the optimal one (18.0) less the Tukey window's ~2 %, +-1 of noise
    assert abs(est.snr - RHO) < 3.5, est.snr
    # chi2 / dof over 2 x 2 x 33 - 5 = 127 unit-variance residuals: 1 +- 0.13; 3 sigma
    assert abs(est.reduced_chi2 - 1) < 0.4, est.reduced_chi2


def test_a_candidate_is_fitted_within_its_uncertainties(store: Store):
    aet, amps = with_source(noise_aet(seed=41), t0=T0, phases=PHASES)
    seg = conditioned_segment(store, aet, t0=T0)
    searched = round(2 * F_SOURCE * DAY) / (2 * DAY)  # the zero-padded search bin
    cands = search_result(seg, [candidate(searched)])
    out = run_estimate(cands)
    assert (out.subject, out.key) == (SEGMENT_ID, SEGMENT_ID)
    result = out.data
    assert isinstance(result, SourceEstimates)
    assert result.timing == seg.timing
    assert (result.statistic, result.n_independent_bins) == (NOWHERE, 1720)  # for the catalogue
    [est] = result.estimates
    assert est.candidate == cands.candidates[0]
    check_fit(est, amps)


def test_no_candidate_gives_an_empty_estimate_without_reading_the_store(store: Store):
    seg = conditioned_segment(store, noise_aet(seed=42))
    blank = search_result(seg, []).model_copy(update={"conditioned": NOWHERE, "psd": NOWHERE})
    result = run_estimate(blank).data
    assert result.estimates == []  # published anyway: the catalogue stacks every segment


def test_a_failed_fit_is_skipped_and_the_other_candidates_kept(store: Store):
    aet, amps = with_source(noise_aet(seed=43), phases=PHASES)
    seg = conditioned_segment(store, aet)
    beyond_nyquist = candidate(0.2)  # leaves no DFT bin to fit: the kernel raises ValueError
    good = candidate(round(2 * F_SOURCE * DAY) / (2 * DAY))
    result = run_estimate(search_result(seg, [beyond_nyquist, good])).data
    [est] = result.estimates
    assert est.candidate == good
    check_fit(est, amps)


def test_a_missing_conditioned_file_is_dead_lettered(store: Store):
    seg = conditioned_segment(store, noise_aet(seed=44))
    Path(seg.data.uri.removeprefix("file://")).unlink()
    result = StepHarness(estimate.step).deliver(
        CANDIDATES_GB, search_result(seg, [candidate(3e-3)])
    )
    assert result.outputs == []
    [dead] = result.dead_letters
    assert dead.reason == "store-missing"
    assert dead.topic == f"{CANDIDATES_GB}.dlq"


def test_the_science_chain_runs_without_kafka_and_keeps_one_correlation(store: Store):
    """Raw X, Y, Z with a line -> condition -> gb-search -> estimate: each harness's output is
    the next one's input, lineage and all, as on the broker."""
    x, y, z = noise_xyz(seed=45)
    (sx, sy, sz), amps = sinusoid_xyz(F_SOURCE, SNR_A, SNR_E, PHASES, T0)
    raw = raw_segment(store, (x + sx, y + sy, z + sz), t0=T0)
    root = Envelope.root(raw, source="ingest", subject=SEGMENT_ID)

    [conditioned] = (
        StepHarness(condition.step).deliver(SEGMENTS_RAW, root).events(SEGMENTS_CONDITIONED)
    )
    [found] = (
        StepHarness(gb_search.step).deliver(SEGMENTS_CONDITIONED, conditioned).events(CANDIDATES_GB)
    )
    [estimated] = StepHarness(estimate.step).deliver(CANDIDATES_GB, found).events(SOURCES_ESTIMATES)

    chain = [root, conditioned, found, estimated]
    assert [e.source for e in chain] == ["ingest", "condition", "gb-search", "estimate"]
    assert {e.correlation_id for e in chain} == {root.id}
    assert [e.causation_id for e in chain[1:]] == [e.id for e in chain[:-1]]
    assert {e.key for e in chain} == {SEGMENT_ID}  # one segment, one partition, all the way

    # the line survives conditioning with the calibrated (not the true) PSD: same bounds as
    # the single-step tests (the level is calibrated to a few %, so SNRs move by ~1-2 %)
    best = found.data.candidates[0]
    assert abs(best.frequency_hz - F_SOURCE) <= 0.5 / DAY
    assert math.sqrt(0.78) * RHO - 3 <= best.snr <= RHO + 3, best.snr
    [est, *_] = estimated.data.estimates
    assert est.candidate == best
    check_fit(est, amps)
    assert estimated.data.statistic == found.data.statistic
