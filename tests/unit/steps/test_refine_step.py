"""The refine step's handler through ``StepHarness``: conditioned segments in a real store, the
segment index and the latest-update ledger filled as the Kafka lookups would fill them (their
reading of the topics is exercised by the demo's integration test)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from choreo import Envelope
from choreo.store import ArrayRef, Store
from choreo.testing import StepHarness
from lisa_pipeline.events import CatalogSource, SegmentTiming, SourceRefined
from lisa_pipeline.topics import CATALOG, SOURCES_REFINED
from lisa_science.binaries import GalacticBinary, load_verification_binaries
from lisa_science.gbresponse import binary_tdi_ae
from lisa_science.noise import tdi_psd
from lisa_science.simulate import coloured_noise
from lisa_services.refine import service as refine

DT = 10.0
N_DAY = 8640
DAYS = 6
SOURCE = "GB3219.907"


def bright_es_cet() -> GalacticBinary:
    es_cet = {b.name: b for b in load_verification_binaries()}["ES Cet"]
    return GalacticBinary(**{**es_cet.__dict__, "amplitude": 5 * es_cet.amplitude})


@pytest.fixture
def segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    store = Store((tmp_path / "store").as_uri())
    monkeypatch.setattr(refine, "STORE", store)
    monkeypatch.setattr(refine, "INDEX", refine.SegmentIndex())
    monkeypatch.setattr(refine, "LATEST", refine.LatestUpdates())
    monkeypatch.setattr(refine, "SETTINGS", refine.RefineSettings(sky_points=32))
    monkeypatch.setattr(refine, "_SEGMENTS", type(refine._SEGMENTS)())
    monkeypatch.setattr(refine, "_LAST_FIT", {})
    binary = bright_es_cet()
    rng = np.random.default_rng(7)
    t = DT * np.arange(DAYS * N_DAY)
    a, e = binary_tdi_ae(binary, t)
    a = a + coloured_noise(t.size, DT, lambda f: tdi_psd(f, "A"), rng)
    e = e + coloured_noise(t.size, DT, lambda f: tdi_psd(f, "E"), rng)
    f_psd = np.linspace(0, 0.05, 2001)
    psd = store.put(
        {"f": f_psd, "A_smooth": tdi_psd(f_psd, "A"), "E_smooth": tdi_psd(f_psd, "E")},
        {"generation": "2.0"},
    )
    ids = []
    for i in range(DAYS):
        part = slice(i * N_DAY, (i + 1) * N_DAY)
        data = store.put(
            {
                "A": a[part],
                "E": e[part],
                "T": np.zeros(N_DAY),
                "mask": np.ones(N_DAY, dtype=np.uint8),
            }
        )
        segment_id = f"{'a' * 16}-{i:05d}"
        timing = SegmentTiming(segment_id=segment_id, t0=i * N_DAY * DT, dt=DT, n_samples=N_DAY)
        refine.INDEX.known[segment_id] = refine.SegmentRefs(timing, data, psd)
        ids.append(segment_id)
    return ids


def update(ids: list[str], status: str = "promoted") -> Envelope[CatalogSource]:
    body = CatalogSource(
        source_id=SOURCE,
        frequency_hz=3.22e-3 + 2e-7,
        frequency_bin=278,
        sigma_frequency_hz=3e-7,
        stacked_statistic=900.0,
        stacked_snr=29.0,
        fap=1e-100,
        n_segments=len(ids),
        n_estimates=len(ids),
        contributing_segments=ids,
        status=status,  # type: ignore[arg-type]
    )
    return Envelope.root(body, source="catalog", subject=SOURCE, key=SOURCE)


def latest_is(envelope: Envelope, *older: str) -> None:
    refine.LATEST.seen[SOURCE] = {envelope.id, *older}
    refine.LATEST.latest[SOURCE] = envelope.id


def test_a_promoted_source_is_refined_over_all_its_segments(segments: list[str]) -> None:
    envelope = update(segments)
    latest_is(envelope)
    result = StepHarness(refine.step).deliver(CATALOG, envelope)
    assert result.dead_letters == []
    [out] = result.events(SOURCES_REFINED)
    body: SourceRefined = out.data
    assert out.key == SOURCE
    assert body.source_id == SOURCE
    assert body.catalog_event_id == envelope.id
    assert body.segments == sorted(segments)
    truth = bright_es_cet()
    assert body.snr == pytest.approx(
        math.sqrt(DAYS / 7) * 5 * 12.1, rel=0.25
    )  # the reference table's week
    assert body.sigma_frequency_hz is not None
    assert abs(body.frequency_hz - truth.f) < 4 * body.sigma_frequency_hz
    assert body.sigma_amplitude is not None
    assert abs(body.amplitude - truth.amplitude) < 4 * body.sigma_amplitude
    assert body.sigma_ecliptic_latitude_rad is not None
    assert body.sigma_ecliptic_latitude_rad > 0
    assert 0.5 < body.reduced_chi2 < 1.5
    assert body.tdi_generation == "2.0"


def test_a_superseded_update_is_skipped(segments: list[str]) -> None:
    older = update(segments[:-1])
    newer = update(segments)
    latest_is(newer, older.id)
    result = StepHarness(refine.step).deliver(CATALOG, older)
    assert result.dead_letters == []
    assert result.events(SOURCES_REFINED) == []


def test_a_demoted_source_gets_no_refinement(segments: list[str]) -> None:
    envelope = update(segments, status="demoted")
    latest_is(envelope)
    result = StepHarness(refine.step).deliver(CATALOG, envelope)
    assert result.dead_letters == []
    assert result.events(SOURCES_REFINED) == []


def test_unknown_claim_checks_dead_letter_after_retries(
    segments: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def nothing(kafka) -> None:  # the lookup finds no record of these segments
        return None

    refine.INDEX.known.clear()
    monkeypatch.setattr(refine.INDEX, "_read", nothing)
    envelope = update(segments)
    latest_is(envelope)
    result = StepHarness(refine.step).deliver(CATALOG, envelope)
    assert result.events(SOURCES_REFINED) == []
    assert len(result.dead_letters) == 1


def test_ref_of_a_missing_file_is_refused(segments: list[str]) -> None:
    """A claim check naming nothing in the store: classified, not a crash."""
    bogus = ArrayRef(uri="file:///nowhere/x.h5", sha256="0" * 64, size_bytes=0, shapes={})
    first = segments[0]
    refs = refine.INDEX.known[first]
    refine.INDEX.known[first] = refine.SegmentRefs(refs.timing, bogus, refs.psd)
    envelope = update(segments)
    latest_is(envelope)
    result = StepHarness(refine.step).deliver(CATALOG, envelope)
    assert result.events(SOURCES_REFINED) == []
    assert len(result.dead_letters) == 1
