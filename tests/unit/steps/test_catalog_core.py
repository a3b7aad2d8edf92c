"""The catalogue's broker-free core (``stack_segment``): what the faust binding persists.

Statistics are drawn from the distributions the search statistic follows (chi2_4 per bin on
noise, non-central chi2_4 where a source puts SNR^2 per segment), so the promoted source is
checked against the injected bin, not against numbers the code produced.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from choreo.errors import PermanentError
from choreo.store import ArrayRef
from lisa_pipeline.events import SegmentTiming, SourceEstimates
from lisa_services.catalog.settings import CatalogSettings
from lisa_services.catalog.state import GridStack, decode_state, stack_segment

N_BINS, SOURCE_BIN = 2000, 777
F = 1e-4 + np.arange(N_BINS) / (2 * 86_400.0)
SETTINGS = CatalogSettings(fap=1e-3, merge_bins=2, association_bins=1, max_links=4)
REF = ArrayRef(uri="file:///s/x.h5", sha256="0" * 64, size_bytes=1, shapes={"f": [N_BINS]})


def event(index: int, n_bins: int = N_BINS) -> SourceEstimates:
    timing = SegmentTiming(segment_id=f"seg-{index}", t0=index * 86_400.0, dt=5.0, n_samples=17280)
    return SourceEstimates(timing=timing, statistic=REF, n_independent_bins=n_bins, estimates=[])


def test_segments_add_bin_by_bin_and_a_steady_source_is_promoted_in_its_bin() -> None:
    rng = np.random.default_rng(3)
    stack: GridStack | None = None
    rows = []
    for i in range(12):
        stat = rng.chisquare(4, N_BINS)
        stat[SOURCE_BIN] = stats.ncx2.rvs(4, 25.0, random_state=rng)  # SNR 5 per segment
        rows.append(stat)
        stack = stack_segment(stack, event(i), F, stat, f"00-{i:032x}-{i:016x}-01", SETTINGS)
    assert stack is not None
    np.testing.assert_array_equal(stack.count, np.full(N_BINS, 12))
    np.testing.assert_allclose(stack.total, np.sum(rows, axis=0), rtol=1e-12)
    [source] = stack.catalogue(SETTINGS.association_bins)
    assert abs(source.frequency_bin - SOURCE_BIN) <= 1
    assert source.n_segments == 12
    assert len(stack.traceparents) == SETTINGS.max_links  # the newest links only
    again = decode_state(stack.to_json())  # what the table's changelog carries
    assert again is not None
    np.testing.assert_array_equal(again.total, stack.total)
    assert again.segments == stack.segments


def test_nan_bins_are_not_counted_and_another_grid_is_refused() -> None:
    stat = np.full(N_BINS, 4.0)
    stat[:10] = np.nan  # where the PSD was unknown
    stack = stack_segment(None, event(0), F, stat, None, SETTINGS)
    assert stack.count[:10].sum() == 0
    assert stack.count[10:].min() == 1
    with pytest.raises(PermanentError, match="differs") as err:
        stack_segment(stack, event(1), F * 1.01, stat, None, SETTINGS)
    assert err.value.reason == "grid-mismatch"
    with pytest.raises(PermanentError) as err:
        stack_segment(stack, event(2, n_bins=N_BINS - 1), F, stat, None, SETTINGS)
    assert err.value.reason == "grid-mismatch"
    with pytest.raises(PermanentError) as err:
        stack_segment(None, event(3), F[:1], stat[:1], None, SETTINGS)
    assert err.value.reason == "bad-statistic"
