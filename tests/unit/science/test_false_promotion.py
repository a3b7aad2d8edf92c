"""The catalogue's false promotion over a run stays nominal although it decides after every
segment (re-evaluation with demotion), and the promoted set does not depend on segment order.

Statistics are the A+E powers of windowed, zero-padded white noise (what the search gives on a
whitened segment, neighbouring grid bins correlated as in the pipeline), stacked and decided by
the catalogue's broker-free core exactly as ``GridStack.promote`` does, look after look.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.signal import windows

from lisa_science.cataloguing import (
    grid_trials,
    promote,
    significant_bins,
    supported_sources,
)

N_SAMPLES = 3520  # per toy segment: 1760 Fourier bins, 1720 of them in the band
N_GRID = 3440  # padded by 2
W = windows.tukey(N_SAMPLES, 0.1)
BAND = slice(40, 40 + N_GRID)  # grid bins away from DC and Nyquist
F = np.arange(N_GRID) / (2 * 86_400.0)
N_TRIALS, COHERENCE = grid_trials(N_GRID, N_GRID // 2)
CONFIDENCE = 0.999


def segments(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, N_GRID) A+E statistics, chi2_4 per grid bin, Kibble-correlated neighbours."""
    x = rng.standard_normal((n, 2, N_SAMPLES))
    power = 2 * np.abs(np.fft.rfft(x * W, n=2 * N_SAMPLES, axis=-1)) ** 2 / np.sum(W**2)
    return power.sum(axis=1)[:, BAND]


def decide(total, count, fap, sources):
    """One look: what GridStack.promote computes (names, then promoted ones)."""
    sources = promote(F, total, count, N_TRIALS, fap, sources, coherence=COHERENCE)
    significant = significant_bins(total, count, N_TRIALS, fap, coherence=COHERENCE)
    return sources, supported_sources(sources, significant)


def run(rows: np.ndarray, fap: float) -> tuple[list[set[int]], bool]:
    """Promoted bins after each look, and whether a sticky catalogue (never demoting, the former
    behaviour) would have promoted anything."""
    total = np.zeros(N_GRID)
    sources: dict[str, int] = {}
    promoted_bins, ever = [], False
    for i, row in enumerate(rows, start=1):
        total = total + row
        sources, promoted = decide(total, np.full(N_GRID, i), fap, sources)
        promoted_bins.append({sources[s] for s in promoted})
        ever |= bool(promoted)
    return promoted_bins, ever


def _contains(count: int, trials: int, p: float) -> bool:
    ci = stats.binomtest(count, trials, p).proportion_ci(CONFIDENCE, method="exact")
    return ci.low <= p <= ci.high


def test_false_promotion_over_a_run_is_nominal_at_every_look_and_at_the_end():
    """300 runs of 30 noise segments, deciding after each at FAP 5 %: the catalogue holds a
    noise source at look 1, 10 and 30 (the end of the run) in 5 % of the runs. A catalogue that
    never demotes would hold one at the end of ~30 % of them (it keeps every early fluke)."""
    rng = np.random.default_rng(14)
    runs, looks, fap = 300, 30, 0.05
    held = {1: 0, 10: 0, 30: 0}
    sticky = 0
    for _ in range(runs):
        promoted, ever = run(segments(rng, looks), fap)
        for look in held:
            held[look] += bool(promoted[look - 1])
        sticky += ever
    for look, count in held.items():
        assert _contains(count, runs, fap), (look, count / runs)
    assert not _contains(sticky, runs, fap), sticky / runs  # the former rate is caught


def test_promotion_does_not_depend_on_the_order_of_segments():
    """A flash (one loud segment) is promoted while it dominates the stack and demoted once the
    noise of later segments drowns it, without any retraction; the catalogue after all segments
    is the same whatever order they came in."""
    rng = np.random.default_rng(5)
    rows = segments(rng, 40)
    flash, line = 1000, 2500
    rows[0, flash] += 80.0  # alone: FAP ~ 1e-13; after 40 segments: ~ 3 sigma of chi2_160
    rows[:, line] += stats.ncx2.rvs(4, 16.0, size=40, random_state=rng) - 4  # steady SNR 4
    promoted, _ = run(rows, 1e-3)
    assert any(abs(k - flash) <= 2 for k in promoted[0])
    assert not any(abs(k - flash) <= 2 for k in promoted[-1])  # demoted by more data
    assert any(abs(k - line) <= 2 for k in promoted[-1])
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(40)
        again, _ = run(rows[order], 1e-3)
        assert again[-1] == promoted[-1]
