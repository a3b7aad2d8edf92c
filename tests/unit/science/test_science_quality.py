"""Gap and glitch masks, and gap filling."""

import numpy as np
import pytest

from lisa_science.quality import (
    fill_masked,
    gap_mask,
    gap_weights,
    glitch_mask,
    median_of_finite,
    quality_mask,
)
from lisa_science.segments import xyz_to_aet
from lisa_science.simulate import analytic_tdi_noise

DT = 5.0
N_DAY = 17280


def _coloured_day(seed: int) -> np.ndarray:
    x, y, z = analytic_tdi_noise(2 * N_DAY, DT, np.random.default_rng(seed))
    return xyz_to_aet(x, y, z)[0][N_DAY // 2 : N_DAY // 2 + N_DAY]


def test_gap_mask_marks_nan() -> None:
    x = np.array([0.0, np.nan, 1.0, np.inf])
    assert gap_mask(x).tolist() == [True, False, True, False]


def test_short_glitch_in_coloured_noise_is_flagged() -> None:
    a = _coloured_day(1)
    glitch = slice(9000, 9003)
    a[glitch] += 30 * np.std(a) * np.array([0.5, 1.0, 0.5])
    mask = glitch_mask(a, DT)
    assert not mask[glitch].any()
    pad = int(120 / DT)
    assert not mask[9000 - pad : 9003 + pad].any()  # padded by pad_seconds each side
    # nothing else flagged: one padded interval (a jump also implicates the sample before it)
    flagged = np.flatnonzero(~mask)
    assert np.all(np.diff(flagged) == 1)
    assert flagged.size <= 3 + 2 + 2 * pad


def test_clean_noise_almost_never_flagged() -> None:
    white = np.random.default_rng(2).standard_normal(10 * N_DAY)
    assert (~glitch_mask(white, DT)).mean() < 1e-3
    coloured = _coloured_day(3)
    assert (~glitch_mask(coloured, DT)).mean() < 1e-3


def test_glitch_mask_ignores_gaps_and_quality_mask_combines() -> None:
    a = _coloured_day(4)
    a[100:200] = np.nan
    a[5000] += 50 * np.nanstd(a)
    glitches = glitch_mask(a, DT)
    assert glitches[100:200].all()  # gaps are not glitches
    assert not glitches[5000]
    both = quality_mask(a, DT)
    assert not both[100:200].any()
    assert not both[5000]
    assert both[3000]


def test_fill_masked_zeros_and_tapers() -> None:
    x = np.ones(200)
    mask = np.ones(200, dtype=bool)
    mask[80:120] = False
    filled = fill_masked(x, mask, taper_samples=10)
    assert (filled[80:120] == 0).all()
    np.testing.assert_array_equal(filled[:69], 1.0)  # further than the taper from the gap
    np.testing.assert_array_equal(filled[131:], 1.0)
    ramp_down = filled[69:80]
    assert np.all(np.diff(ramp_down) < 0)
    assert 0 < ramp_down[-1] < 0.05
    np.testing.assert_allclose(filled[120:131], filled[69:80][::-1])  # symmetric ramps


def test_fill_masked_handles_nan_and_no_gap() -> None:
    x = np.array([1.0, np.nan, 2.0, 3.0])
    out = fill_masked(x, gap_mask(x), taper_samples=0)
    assert out.tolist() == [1.0, 0.0, 2.0, 3.0]
    assert gap_weights(np.ones(5, dtype=bool)).tolist() == [1.0] * 5


def test_median_of_finite_equals_numpy_median() -> None:
    rng = np.random.default_rng(12)
    for n in (1, 2, 3, 10, 17279, 17280):
        for values in (rng.standard_normal(n), rng.integers(0, 5, n).astype(float)):
            assert median_of_finite(values) == np.median(values)
    with pytest.raises(ValueError, match="no values"):
        median_of_finite(np.zeros(0))
