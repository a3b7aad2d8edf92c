"""Retraction in the catalogue's broker-free state (``lisa_services.catalog.state``): subtract,
demote, remember, idempotence, a retraction before its segment, and the migration from state
version 1. The reference is always the same segments stacked without the retracted one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from aiokafka.partitioner import DefaultPartitioner
from scipy import stats

from choreo.errors import PermanentError
from choreo.store import ArrayRef
from lisa_choreo.catalogue import format_catalogue, split_by_status
from lisa_pipeline.events import (
    GBCandidate,
    SegmentTiming,
    SourceEstimate,
    SourceEstimates,
)
from lisa_services.catalog.settings import CatalogSettings
from lisa_services.catalog.state import (
    DEMOTED,
    HEAD_VERSION,
    LEDGER_PREFIX,
    PROMOTED,
    RETRACTED,
    STATE_VERSION,
    GridStack,
    RetractionLedger,
    decode_ledger,
    decode_state,
    grid_partition,
    is_grid_key,
    ledger_key,
    retract_segment,
    stack_segment,
)

N_BINS, LINE, FLASH = 2000, 777, 1500
F = 1e-4 + np.arange(N_BINS) / (2 * 86_400.0)
SETTINGS = CatalogSettings(fap=1e-3, merge_bins=2, association_bins=1, max_links=64)


def ref(index: int) -> ArrayRef:
    return ArrayRef(
        uri=f"file:///s/{index:064x}.h5",
        sha256=f"{index:064x}",
        size_bytes=1,
        shapes={"f": [N_BINS], "stat": [N_BINS]},
    )


def estimate(frequency: float) -> SourceEstimate:
    cand = GBCandidate(frequency_hz=frequency, bin=LINE, statistic=30.0, snr=5.0, fap=0.5)
    return SourceEstimate(
        candidate=cand,
        frequency_hz=frequency,
        sigma_frequency_hz=2e-7,
        amplitude_a=1e-21,
        amplitude_e=1e-21,
        sigma_amplitude_a=1e-22,
        sigma_amplitude_e=1e-22,
        phase_a=0.0,
        phase_e=0.0,
        sigma_phase_a=0.1,
        sigma_phase_e=0.1,
        snr=5.0,
        reduced_chi2=1.0,
    )


def event(index: int, with_estimate: bool = True) -> SourceEstimates:
    timing = SegmentTiming(segment_id=f"seg-{index}", t0=index * 86_400.0, dt=5.0, n_samples=17280)
    estimates = [estimate(F[LINE] + (index % 3 - 1) * 1e-7)] if with_estimate else []
    return SourceEstimates(
        timing=timing, statistic=ref(index), n_independent_bins=1000, estimates=estimates
    )


def tp(index: int) -> str:
    return f"00-{index + 1:032x}-{index + 1:016x}-01"


def spectra(n: int, seed: int = 7, flash_in: int | None = None) -> list[np.ndarray]:
    """chi2_4 noise, a steady line (SNR^2 25 per segment) at LINE and, in one segment, a flash
    so loud that it alone promotes a source at FLASH."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        stat = rng.chisquare(4, N_BINS)
        stat[LINE] = stats.ncx2.rvs(4, 25.0, random_state=rng)
        if i == flash_in:
            stat[FLASH] = 400.0
        stat[10 + i] = np.nan  # a bin this segment did not cover (unknown PSD)
        out.append(stat)
    return out


def stacked(rows: list[np.ndarray], indices: list[int]) -> GridStack:
    stack = None
    for i in indices:
        stack = stack_segment(stack, event(i), F, rows[i], tp(i), SETTINGS)
    assert stack is not None
    return stack


def by_bin(stack: GridStack) -> dict[int, dict]:
    """The catalogue as the comparison needs it (ids may differ with the promotion history)."""
    keep = (
        "frequency_hz",
        "sigma_frequency_hz",
        "stacked_statistic",
        "stacked_snr",
        "fap",
        "n_segments",
        "n_estimates",
        "mean_amplitude",
        "contributing_segments",
    )
    return {
        s.frequency_bin: {k: getattr(s, k) for k in keep}
        for s in stack.catalogue(SETTINGS.association_bins)
        if s.status == PROMOTED
    }


def assert_same_catalogue(got: GridStack, want: GridStack) -> None:
    g, w = by_bin(got), by_bin(want)
    assert sorted(g) == sorted(w)
    for b in w:
        for name, value in w[b].items():
            if isinstance(value, float):
                assert g[b][name] == pytest.approx(value, rel=1e-9), name
            else:
                assert g[b][name] == value, name


def test_retraction_subtracts_the_segment_as_if_it_had_never_been_counted() -> None:
    rows = spectra(12)
    every = stacked(rows, list(range(12)))
    retracted = retract_segment(every, "seg-5", rows[5], SETTINGS)
    never = stacked(rows, [i for i in range(12) if i != 5])
    np.testing.assert_allclose(retracted.total, never.total, rtol=1e-12)
    np.testing.assert_array_equal(retracted.count, never.count)
    assert retracted.total[15] == never.total[15]  # seg-5's NaN bin: untouched by either
    assert "seg-5" not in retracted.segments
    assert "seg-5" not in retracted.origins
    assert tp(5) not in retracted.traceparents
    assert all(e.segment_id != "seg-5" for e in retracted.estimates)
    assert retracted.retracted == ("seg-5",)
    assert_same_catalogue(retracted, never)
    [body] = retracted.catalogue(SETTINGS.association_bins)
    assert body.status == PROMOTED
    assert body.retracted_segments == ["seg-5"]
    assert body.n_segments == 11
    # its update gets a new id: the set of segments is named with the retraction
    assert retracted.version() != never.version()
    assert retracted.version().startswith("11-")


def test_a_bin_no_segment_covers_any_more_is_exactly_zero() -> None:
    rows = spectra(1)
    one = stacked(rows, [0])
    empty = retract_segment(one, "seg-0", rows[0], SETTINGS)
    assert not empty.total.any()
    assert not empty.count.any()
    assert empty.segments == ()
    # the line's source, promoted by one segment, has nothing left at its bin: retracted
    assert set(empty.status.values()) <= {RETRACTED}
    assert {b.status for b in empty.catalogue(SETTINGS.association_bins)} <= {RETRACTED}


def test_a_source_that_falls_below_the_threshold_is_demoted_and_can_come_back() -> None:
    rows = spectra(12, flash_in=3)
    every = stacked(rows, list(range(12)))
    flash = [s for s, k in every.sources.items() if abs(k - FLASH) <= 2]
    assert flash, "the flash promotes a source"
    (flash_id,) = flash
    assert every.status_of(flash_id) == PROMOTED
    retracted = retract_segment(every, "seg-3", rows[3], SETTINGS)
    assert retracted.status_of(flash_id) == DEMOTED  # 11 segments remain at its bin
    assert flash_id in retracted.sources  # kept, with its identity
    bodies = {b.source_id: b for b in retracted.catalogue(SETTINGS.association_bins)}
    assert bodies[flash_id].status == DEMOTED
    assert bodies[flash_id].retracted_segments == ["seg-3"]
    assert {b.status for sid, b in bodies.items() if sid != flash_id} == {PROMOTED}
    assert flash_id in {b.source_id for b in retracted.changed(SETTINGS.association_bins)}
    # the line is untouched by the demotion; the catalogue equals the one without seg-3
    never = stacked(rows, [i for i in range(12) if i != 3])
    assert_same_catalogue(retracted, never)
    # Adding segments keeps a demoted source demoted until the stack says it again ...
    rows2 = spectra(14, seed=8)
    more = stack_segment(retracted, event(12), F, rows2[12], tp(12), SETTINGS)
    assert more.status_of(flash_id) == DEMOTED
    # ... and a segment that makes it significant again promotes it again, same id
    loud = rows2[13].copy()
    loud[FLASH] = 600.0
    back = stack_segment(more, event(13), F, loud, tp(13), SETTINGS)
    assert back.status_of(flash_id) == PROMOTED
    assert back.sources[flash_id] == every.sources[flash_id]


def test_adding_segments_re_evaluates_and_demotes_without_retraction() -> None:
    """The catalogue is decided again on the whole stack after every segment: the steady line
    stays promoted; a flash of statistic 80 in one segment is promoted while it dominates and
    demoted once 40 noise segments drown it (chi2_160 at 240 is ~ 3 sigma, not significant)."""
    rows = spectra(40, flash_in=None)
    rows[0][FLASH] = 80.0
    first = stacked(rows, [0])
    flash = [s for s, k in first.sources.items() if abs(k - FLASH) <= 2]
    assert flash, "the flash alone promotes a source"
    assert first.status_of(flash[0]) == PROMOTED
    every = stacked(rows, list(range(40)))
    assert every.status_of(flash[0]) == DEMOTED
    line = [s for s, k in every.sources.items() if abs(k - LINE) <= 2]
    assert [every.status_of(s) for s in line] == [PROMOTED]


def test_retracting_twice_or_an_unknown_segment_changes_nothing() -> None:
    rows = spectra(6)
    every = stacked(rows, list(range(6)))
    once = retract_segment(every, "seg-2", rows[2], SETTINGS)
    once = once.mark_published(once.changed(SETTINGS.association_bins))  # as the service does
    twice = retract_segment(once, "seg-2", rows[2], SETTINGS)
    assert twice is once
    assert twice.changed(SETTINGS.association_bins) == []
    assert retract_segment(once, "seg-never-seen", rows[2], SETTINGS) is once
    with pytest.raises(PermanentError) as err:
        retract_segment(every, "seg-1", rows[1][:-1], SETTINGS)
    assert err.value.reason == "retraction-mismatch"


def test_a_retraction_before_its_segment_is_remembered_and_the_segment_never_counted() -> None:
    ledger = RetractionLedger()
    assert "seg-4" not in ledger
    ledger = ledger.remember("seg-4", tp(99), "bad calibration")
    assert "seg-4" in ledger
    assert ledger.remember("seg-4", tp(100), "again") is ledger  # the first one is kept
    assert ledger.get("seg-4").traceparent == tp(99)
    again = decode_ledger(json.loads(json.dumps(ledger.to_json())))  # the table's round trip
    assert again == ledger
    assert decode_ledger(None) == RetractionLedger()
    # seg-4 arrives before any segment of its grid: the ledger notes the grid, which lists it
    # once created
    seen = ledger.seen_in("seg-4", "dt5.0-n17280-f2000")
    assert seen.seen_in("seg-4", "dt5.0-n17280-f2000") is seen
    assert ledger.seen_in("seg-unknown", "g") is ledger
    assert seen.of_grid("dt5.0-n17280-f2000") == ["seg-4"]
    assert seen.of_grid("another") == []
    assert decode_ledger(json.loads(json.dumps(seen.to_json()))) == seen

    rows = spectra(6)
    before = stacked(rows, [0, 1, 2, 3, 5])
    refused = before.refuse("seg-4")  # what the catalogue does when seg-4 arrives
    assert refused.segments == before.segments
    np.testing.assert_array_equal(refused.total, before.total)
    assert refused.retracted == ("seg-4",)
    assert refused.refuse("seg-4") is refused
    [body] = refused.catalogue(SETTINGS.association_bins)
    assert body.retracted_segments == ["seg-4"]
    assert body.contributing_segments == ["seg-0", "seg-1", "seg-2", "seg-3", "seg-5"]
    assert refused.version() != before.version()  # an update that says so gets its own id


def test_state_version_2_round_trips_and_version_1_is_migrated() -> None:
    rows = spectra(4, flash_in=1)
    stack = retract_segment(stacked(rows, [0, 1, 2, 3]), "seg-1", rows[1], SETTINGS)
    value = json.loads(json.dumps(stack.to_json()))
    assert value["version"] == STATE_VERSION == 2
    again = decode_state(value)
    assert again is not None
    np.testing.assert_array_equal(again.total, stack.total)
    assert again.origins == stack.origins
    assert again.retracted == stack.retracted == ("seg-1",)
    assert again.status == stack.status

    # A value written before retraction existed (version 1): no origins, retracted, status.
    v1 = stacked(rows, [0, 1]).to_json()
    for name in ("origins", "retracted", "status"):
        del v1[name]
    v1["version"] = 1
    old = decode_state(v1)
    assert old is not None
    assert old.segments == ("seg-0", "seg-1")
    assert old.origins == {}
    with pytest.raises(PermanentError) as err:  # its statistic reference was never kept
        old.statistic_of("seg-0")
    assert err.value.reason == "retraction-unsupported"
    # new segments are stacked, kept with their origin, and can be retracted
    newer = stack_segment(old, event(2), F, rows[2], tp(2), SETTINGS)
    assert newer.statistic_of("seg-2") == ref(2)
    assert newer.to_json()["version"] == 2
    back = retract_segment(newer, "seg-2", rows[2], SETTINGS)
    np.testing.assert_allclose(back.total, old.total, rtol=1e-12)

    future = {**value, "version": 4}
    with pytest.raises(ValueError, match="version 4 unsupported"):
        decode_state(future)


def test_state_version_3_head_and_entries_round_trip_and_a_missing_entry_is_refused() -> None:
    """The service's table: a head (sums in base64, exact) and one entry per counted segment,
    each written as the changelog carries it (JSON); the state read back is the same."""
    rows = spectra(4, flash_in=1)
    stack = None
    entries = {}
    for i in range(4):  # as the service writes them: the new segment's entry, then the head
        stack = stack_segment(stack, event(i), F, rows[i], tp(i), SETTINGS)
        entries[f"seg-{i}"] = json.loads(json.dumps(stack.segment_entry(f"seg-{i}")))
    stack = retract_segment(stack, "seg-1", rows[1], SETTINGS)  # its entry stays behind
    head = json.loads(json.dumps(stack.head_json()))
    assert head["version"] == HEAD_VERSION == 3
    assert "estimates" not in head
    assert "origins" not in head
    assert head["segments"][-1] == "seg-3"  # what `lisa-choreo process` reads of a record
    again = decode_state(head, entries)
    assert again is not None
    np.testing.assert_array_equal(again.total, stack.total)
    np.testing.assert_array_equal(again.count, stack.count)
    np.testing.assert_array_equal(again.f, stack.f)
    assert again.estimates == stack.estimates
    assert again.origins == stack.origins
    assert (again.segments, again.retracted, again.status, again.sources) == (
        stack.segments,
        stack.retracted,
        stack.status,
        stack.sources,
    )
    assert again.catalogue(1) == stack.catalogue(1)
    assert again.version() == stack.version()
    del entries["seg-2"]  # a head whose counted segment has no entry is not a state
    with pytest.raises(ValueError, match="no entry"):
        decode_state(head, entries)


def test_ledger_keys_never_collide_with_grids_and_partitions_match_the_producer() -> None:
    assert ledger_key(2) == f"{LEDGER_PREFIX}2"
    assert not is_grid_key(ledger_key(0))
    assert is_grid_key("dt5.0-n17280-f600")
    for key in ("dt5.0-n17280-f600", "dt10.0-n8640-f3437", "x"):
        for n in (1, 2, 3, 6):
            want = DefaultPartitioner()(key.encode(), list(range(n)), list(range(n)))
            assert grid_partition(key, n) == want


def test_the_catalogue_table_lists_withdrawn_sources_apart() -> None:
    rows = spectra(12, flash_in=3)
    retracted = retract_segment(stacked(rows, list(range(12))), "seg-3", rows[3], SETTINGS)
    bodies = retracted.catalogue(SETTINGS.association_bins)
    split = split_by_status(bodies)
    assert [s.status for s in split] == [PROMOTED]
    assert [s.status for s in split.withdrawn] == [DEMOTED]
    text = format_catalogue(split)
    lines = text.splitlines()
    assert lines[-1] == "1 source(s)"  # the catalogue: promoted sources only
    assert "1 withdrawn after a retraction" in text
    assert lines[-2].endswith("demoted; retracted: seg-3")
    assert lines[1].split()[0] == split[0].source_id
    assert format_catalogue(bodies) == text  # a plain list is split the same way
