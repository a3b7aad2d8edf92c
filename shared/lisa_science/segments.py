"""Cutting a long TDI series into analysis segments, and the X, Y, Z <-> A, E, T rotation."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

_SQRT2, _SQRT3, _SQRT6 = np.sqrt(2.0), np.sqrt(3.0), np.sqrt(6.0)


def segment_bounds(n: int, dt: float, duration: float, overlap: float) -> list[tuple[int, int]]:
    """[start, stop) sample indices of consecutive segments of ``duration`` s overlapping by
    ``overlap`` s.

    Durations are rounded to whole samples. A trailing incomplete segment is dropped (rather
    than padded) so that every segment has the same frequency grid, which per-bin stacking needs.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt}")
    if not duration >= dt:
        raise ValueError(f"duration ({duration} s) must be at least one sample (dt={dt} s)")
    if not 0 <= overlap < duration:
        raise ValueError(
            f"overlap ({overlap} s) must satisfy 0 <= overlap < duration ({duration} s)"
        )
    length = round(duration / dt)
    step = length - round(overlap / dt)
    if step < 1:
        raise ValueError(f"overlap ({overlap} s) leaves less than one sample between segments")
    return [(start, start + length) for start in range(0, n - length + 1, step)]


def xyz_to_aet(
    x: ArrayLike, y: ArrayLike, z: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Quasi-orthogonal TDI channels: A = (Z-X)/sqrt2, E = (X-2Y+Z)/sqrt6, T = (X+Y+Z)/sqrt3.

    With equal arms A, E, T have uncorrelated noise, so they can be searched independently
    (Prince et al. 2002, PRD 66 122002; LDC conventions).
    """
    x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    return (z - x) / _SQRT2, (x - 2 * y + z) / _SQRT6, (x + y + z) / _SQRT3


def aet_to_xyz(
    a: ArrayLike, e: ArrayLike, t: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Inverse of :func:`xyz_to_aet` (the rotation is orthonormal, so it is the transpose)."""
    a, e, t = (np.asarray(v, dtype=np.float64) for v in (a, e, t))
    x = -a / _SQRT2 + e / _SQRT6 + t / _SQRT3
    y = -2 * e / _SQRT6 + t / _SQRT3
    z = a / _SQRT2 + e / _SQRT6 + t / _SQRT3
    return x, y, z
