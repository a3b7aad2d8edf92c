"""Promotion and association on stacked chi-square spectra (no broker, no files).

Spectra are drawn directly from the distributions the search statistic follows: chi2_4 per bin on
noise, non-central chi2_4(lambda) where a source puts SNR^2 = lambda per segment.
"""

import math

import numpy as np
import pytest
from scipy import stats

from lisa_science.cataloguing import (
    Cluster,
    Estimate,
    associate,
    nearest_bin,
    promote,
    significant_clusters,
    source_id_for,
    summarise,
)

N_BINS = 3500
DF = 1 / (2 * 86400.0)  # a one-day segment zero-padded by 2
F = 1e-4 + DF * np.arange(N_BINS)
FAP = 1e-3


def _segments(rng, n_segments, lam=None):
    """(n_segments, N_BINS) statistics; ``lam`` maps bin -> non-centrality per segment."""
    out = rng.chisquare(4, size=(n_segments, N_BINS))
    for k, value in (lam or {}).items():
        out[:, k] = stats.ncx2.rvs(4, value, size=n_segments, random_state=rng)
    return out


def _catalogue(stat_rows, fap=FAP, existing=None):
    total = stat_rows.sum(axis=0)
    count = np.full(N_BINS, stat_rows.shape[0])
    return promote(F, total, count, N_BINS, fap, existing or {}), total, count


def test_noise_alone_promotes_nothing_and_false_promotions_follow_the_fap():
    rng = np.random.default_rng(1)
    trials, n = 300, 10
    strict = loose = 0
    for _ in range(trials):
        rows = _segments(rng, n)
        strict += bool(_catalogue(rows, FAP)[0])
        loose += bool(_catalogue(rows, 0.2)[0])
    # Bonferroni: P(any bin of N_BINS below fap / N_BINS) = 1 - (1 - fap / N_BINS)^N_BINS
    p_strict = 1 - (1 - FAP / N_BINS) ** N_BINS
    assert strict <= stats.poisson.isf(1e-4, trials * p_strict)  # expected 0.3 of 300
    p_loose = 1 - (1 - 0.2 / N_BINS) ** N_BINS
    mean, sd = trials * p_loose, math.sqrt(trials * p_loose * (1 - p_loose))
    assert abs(loose - mean) < 4 * sd, (loose, mean)


def test_source_names_are_sticky_over_looks_but_bounded_by_the_union_bound():
    """``promote`` keeps every name it ever gave (identity; whether a name is promoted now is
    ``supported_sources``, tested in test_false_promotion): over N looks the names given to noise
    lie between one look's FAP and N times it."""
    rng = np.random.default_rng(2)
    trials, n, fap = 200, 10, 0.02
    ever = 0
    for _ in range(trials):
        total = np.zeros(N_BINS)
        sources: dict[str, int] = {}
        for i, row in enumerate(_segments(rng, n), start=1):
            total += row
            sources = promote(F, total, np.full(N_BINS, i), N_BINS, fap, sources)
        ever += bool(sources)
    assert ever <= stats.binom.isf(1e-4, trials, n * fap)
    assert ever >= stats.binom.ppf(1e-4, trials, fap)


@pytest.mark.parametrize("seed", range(5))
def test_a_weak_line_is_promoted_once_with_the_stacked_snr_of_its_segments(seed):
    rng = np.random.default_rng(100 + seed)
    n, lam, k = 10, 12.0, 1234  # per segment SNR^2 = 12: below a single segment's threshold
    assert 4 + lam < stats.chi2.isf(FAP / N_BINS, 4)
    sources, total, count = _catalogue(_segments(rng, n, {k: lam}))
    assert list(sources.values()) == [k]
    (summary,) = summarise(F, total, count, N_BINS, sources, [])
    expected, sd = 4 * n + n * lam, math.sqrt(2 * 4 * n + 4 * n * lam)  # ncx2 mean, variance
    assert abs(summary.stacked_statistic - expected) < 4 * sd
    assert summary.stacked_snr == pytest.approx(math.sqrt(n * lam), abs=4 * sd / (2 * 11))
    assert summary.fap < FAP
    assert summary.n_segments == n
    assert summary.source_id == source_id_for(F[k]) == f"GB{F[k] * 1e6:.3f}"


@pytest.mark.parametrize(
    "profile",
    [
        [0.1, 0.45, 1.0, 0.45, 0.1],  # zero-padded main lobe
        [0.002, 0.01, 0.05, 0.4, 1.0, 0.4, 0.05, 0.01, 0.002],  # bright: leaks over +-4 bins
    ],
)
def test_leakage_into_neighbour_bins_gives_one_source(profile):
    rng = np.random.default_rng(7)
    k, lam = 2000, 400.0
    half = len(profile) // 2
    lam_by_bin = {k + i - half: lam * w for i, w in enumerate(profile)}
    sources, total, count = _catalogue(_segments(rng, 8, lam_by_bin))
    assert len(significant_clusters(total, count, N_BINS, FAP)) == 1
    assert list(sources.values()) == [k]


def test_separate_sources_stay_separate_and_close_ones_merge():
    rng = np.random.default_rng(8)
    rows = _segments(rng, 10, {500: 30.0, 510: 30.0, 900: 30.0, 902: 20.0})
    sources, total, count = _catalogue(rows)
    assert sorted(sources.values()) == [500, 510, 900]  # 902 is within +-2 of the 900 peak
    assert significant_clusters(total, count, N_BINS, FAP)[-1] == Cluster(900, 900, 902)


def test_ids_are_stable_as_segments_arrive_even_when_the_peak_hops():
    k, hopped = 3000, 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        total = np.zeros(N_BINS)
        sources: dict[str, int] = {}
        ids, peaks = set(), set()
        for i, row in enumerate(_segments(rng, 40, {k: 6.0, k + 1: 6.0}), start=1):
            total += row
            sources = promote(F, total, np.full(N_BINS, i), N_BINS, FAP, sources)
            ids |= set(sources)
            peaks |= set(sources.values())
        assert len(ids) == 1, ids
        assert peaks <= {k, k + 1}
        hopped += len(peaks) > 1
    assert hopped, "no seed made the peak hop between the two bins: the test would be moot"


def test_a_moved_source_keeps_its_id_and_a_new_one_at_its_old_bin_gets_a_suffix():
    total = np.full(N_BINS, 40.0)
    count = np.full(N_BINS, 10)
    sources: dict[str, int] = {}
    for k in (100, 102, 103):  # the peak wanders by up to 2 bins at a time
        total[:] = 40.0
        total[k] = 400.0
        sources = promote(F, total, count, N_BINS, FAP, sources)
        assert sources == {source_id_for(F[100]): k}
    total[101] = 300.0  # a weaker bin next to the peak joins its cluster, no new source
    assert promote(F, total, count, N_BINS, FAP, sources) == sources
    total[101] = 40.0
    total[100] = 400.0  # a new cluster at the old bin, 3 bins away: a new source, a new name
    assert promote(F, total, count, N_BINS, FAP, sources) == {
        source_id_for(F[100]): 103,
        source_id_for(F[100]) + "-2": 100,
    }


def test_association_within_one_bin_gives_frequency_sigma_and_amplitude():
    sources = {"GBa": 1000, "GBb": 1010}

    def est(dk, sigma=2e-7, amplitude=1e-21, segment="s"):
        return Estimate(segment, float(F[1000] + dk * DF), sigma, amplitude, 8.0)

    near = [est(-0.9, amplitude=1e-21), est(0.3, amplitude=3e-21), est(1.0, sigma=float("nan"))]
    far = [est(2.0), est(-1.6)]
    attached = associate(F, sources, near + far)
    assert attached == {"GBa": near, "GBb": []}
    total, count = np.full(N_BINS, 200.0), np.full(N_BINS, 10)
    a, b = summarise(F, total, count, N_BINS, sources, near + far)
    assert (a.n_estimates, b.n_estimates) == (3, 0)
    assert a.mean_amplitude == pytest.approx(np.mean([1e-21, 3e-21, 1e-21]))
    assert b.mean_amplitude is None
    # the two valid sigmas weigh equally; the spread of three frequencies dominates 2e-7/sqrt(2)
    assert a.frequency_hz == pytest.approx(F[1000] - 0.3 * DF)
    spread = np.std([F[1000] - 0.9 * DF, F[1000] + 0.3 * DF, F[1000] + DF], ddof=1) / math.sqrt(3)
    assert a.sigma_frequency_hz == pytest.approx(max(2e-7 / math.sqrt(2), spread))
    assert (b.frequency_hz, b.sigma_frequency_hz) == (F[1010], pytest.approx(DF / math.sqrt(12)))
    assert b.stacked_snr == pytest.approx(math.sqrt(160.0))


def test_association_of_many_estimates_is_the_nearest_source_one_by_one():
    """The catalogue associates every estimate so far at every segment, in one numpy pass; it
    must attach each estimate as the definition does, one at a time: its nearest grid bin
    (halves to even), then the nearest source bin within the radius (the first of equals in
    source-id order), including estimates off the grid's ends and equidistant ones."""
    rng = np.random.default_rng(3)
    sources = {"GBc": 40, "GBa": 1000, "GBb": 1004, "GBd": N_BINS - 3}
    dk = np.concatenate(
        [rng.uniform(-60, N_BINS + 60, 4000), [1002.0, 1001.5, 1002.5, -0.5, 0.5, 38.0]]
    )
    ests = [Estimate(f"s{i}", float(F[0] + k * DF), 1e-7, 1e-21, 8.0) for i, k in enumerate(dk)]
    ests.append(Estimate("nan", float("nan"), 1e-7, 1e-21, 8.0))
    ids = sorted(sources)
    expected: dict[str, list[Estimate]] = {sid: [] for sid in sources}
    for e in ests:
        if not math.isfinite(e.frequency_hz):
            continue
        k = nearest_bin(F, e.frequency_hz)
        distance = [abs(sources[sid] - k) for sid in ids]
        best = distance.index(min(distance))
        if distance[best] <= 2:
            expected[ids[best]].append(e)
    attached = associate(F, sources, ests, radius=2)
    assert attached == expected
    assert sum(map(len, attached.values())) > 20  # the case is not vacuous
