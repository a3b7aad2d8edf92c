"""Segmentation bounds and the XYZ <-> AET rotation."""

import numpy as np
import pytest

from lisa_science.segments import aet_to_xyz, segment_bounds, xyz_to_aet

DAY = 86400.0


def test_contiguous_days() -> None:
    assert segment_bounds(3 * 17280, 5.0, DAY, 0.0) == [(0, 17280), (17280, 34560), (34560, 51840)]


def test_half_overlap_and_incomplete_tail_dropped() -> None:
    bounds = segment_bounds(3 * 17280 + 100, 5.0, DAY, DAY / 2)
    assert bounds[0] == (0, 17280)
    assert bounds[1] == (8640, 25920)
    assert len(bounds) == 5
    assert bounds[-1] == (34560, 51840)
    assert all(b - a == 17280 for a, b in bounds)


def test_exact_fit_and_too_short() -> None:
    assert segment_bounds(17280, 5.0, DAY, 0.0) == [(0, 17280)]
    assert segment_bounds(17279, 5.0, DAY, 0.0) == []
    assert segment_bounds(0, 5.0, DAY, 0.0) == []


@pytest.mark.parametrize(
    ("n", "dt", "duration", "overlap", "message"),
    [
        (100, 5.0, DAY, DAY, "overlap"),
        (100, 5.0, DAY, 2 * DAY, "overlap"),
        (100, 5.0, DAY, -1.0, "overlap"),
        (100, 5.0, 1.0, 0.0, "at least one sample"),
        (100, 0.0, DAY, 0.0, "dt must be positive"),
        (-1, 5.0, DAY, 0.0, "n must be"),
        (100, 5.0, 10.0, 9.0, "less than one sample"),
    ],
)
def test_refusals(n: int, dt: float, duration: float, overlap: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        segment_bounds(n, dt, duration, overlap)


def test_aet_definition_and_round_trip() -> None:
    rng = np.random.default_rng(11)
    x, y, z = rng.standard_normal((3, 1000))
    a, e, t = xyz_to_aet(x, y, z)
    np.testing.assert_allclose(a, (z - x) / np.sqrt(2))
    np.testing.assert_allclose(e, (x - 2 * y + z) / np.sqrt(6))
    np.testing.assert_allclose(t, (x + y + z) / np.sqrt(3))
    for got, want in zip(aet_to_xyz(a, e, t), (x, y, z), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-14)


def test_rotation_is_orthonormal() -> None:
    # columns of the XYZ -> AET matrix, obtained by rotating unit vectors
    m = np.array([xyz_to_aet(*v) for v in np.eye(3)]).T
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-15)
