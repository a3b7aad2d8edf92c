"""Signal-only TDI 2.0 X, Y, Z of Galactic binaries with the LISA Consortium simulators.

Chain (science notes, ``../shared/science/README.md`` section 5): Keplerian orbits from
``lisaorbits``
(``KeplerianOrbits`` with default parameters, written to a temporary orbit file: no ESA orbit
file is needed) -> link responses of every source with ``lisagwresponse.GalacticBinary.write``
(summed in one GW file, TPS time frame) -> ``pytdi.Data.from_gws`` -> TDI 2.0 Michelson
``X2, Y2, Z2``. Outputs are fractional-frequency (Doppler) TDI, sampled on the spacecraft
proper-time grid ``t0 + k dt`` (seconds since the LISA epoch; TPS and TCB differ by ~1e-8 t).
Orbit phase 0 (``KeplerianOrbits`` ``t_init = 0``, ``m_init1 = lambda1 = 0``) is at t = 0, and
source frequencies and phases are referenced to TCB t = 0.

Edges: TDI 2.0 combines eight ~8.3 s delays (~67 s) and pytdi's order-31 Lagrange interpolation
reaches 16 samples either side, so the first ~120 s + 16 samples and the last 16 samples of a TDI
series are wrong (pytdi zero-pads). We simulate a margin before and after the requested span and
cut it.

Cost and memory: the span is processed in chunks of at most ``chunk_size`` samples (each with its
own margins, written to its own GW file), so memory stays bounded whatever the duration. Measured
on one core for the 16 verification binaries at dt = 5 s: 1 day 3.5 s (peak RSS 0.18 GB), 30 days
69 s (0.48 GB). Time is linear in sources x samples, so a year (6.3e6 samples) takes ~15 min at
the same bounded memory (plus 150 MB of output). For long or many-source runs prefer a fast
frequency-domain model; this is the realistic reference.

The simulators (``lisaorbits``, ``lisagwresponse``, ``pytdi``; Python >= 3.12) are imported lazily
inside the functions, so this module imports without them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from .binaries import GalacticBinary

#: Length of the TDI 2.0 start-up transient cut from every simulated span [s] (README: ~120 s).
TDI_WARMUP_S = 120.0
#: Half-width of pytdi's default order-31 Lagrange interpolation kernel [samples].
LAGRANGE_HALF_WIDTH = 16
#: Extra samples of safety on each side.
EDGE_GUARD = 2
#: Default maximum number of output samples per processing chunk.
DEFAULT_CHUNK_SIZE = 2**18
#: Orbit-file sampling [s]; Keplerian orbits are smooth, 1e4 s keeps spline errors < 1 km.
ORBIT_DT_S = 1.0e4
#: Minimum number of orbit samples (pytdi interpolates delays with order-5 splines).
ORBIT_MIN_SIZE = 16


#: Loggers that warn on every read of a lisaorbits 3.1 orbit file or lisagwresponse 3.0 GW file
#: ("version that might not be fully supported"): benign for the pinned versions.
_FILE_VERSION_LOGGERS = ("lisagwresponse.response", "pytdi.interface")


class _DropFileVersionWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "might not be fully supported" not in record.getMessage()


@contextlib.contextmanager
def quiet_file_version_warnings() -> Iterator[None]:
    """Silence the simulators' benign file-version warnings (only those) inside the block."""
    drop = _DropFileVersionWarnings()
    loggers = [logging.getLogger(name) for name in _FILE_VERSION_LOGGERS]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


def tdi_margins(dt: float) -> tuple[int, int]:
    """Number of samples simulated before and after a span to cover TDI 2.0 edge effects."""
    before = math.ceil(TDI_WARMUP_S / dt) + LAGRANGE_HALF_WIDTH + EDGE_GUARD
    after = LAGRANGE_HALF_WIDTH + EDGE_GUARD
    return before, after


def write_keplerian_orbits(path: Path, t_start: float, t_stop: float) -> Path:
    """Write default ``lisaorbits.KeplerianOrbits`` covering [t_start, t_stop] (with padding)."""
    import lisaorbits

    first = math.floor(t_start / ORBIT_DT_S) - 3
    size = max(ORBIT_MIN_SIZE, math.ceil(t_stop / ORBIT_DT_S) + 3 - first + 1)
    lisaorbits.KeplerianOrbits().write(str(path), t0=first * ORBIT_DT_S, dt=ORBIT_DT_S, size=size)
    return path


def tdi2_xyz(
    measurements: Mapping[str, np.ndarray | float],
    delays: Mapping[str, np.ndarray | float],
    fs: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TDI 2.0 Michelson X2, Y2, Z2 of pytdi measurements (``sci_ij``, ``tmi_ij``, ``ref_ij``)."""
    import pytdi
    from pytdi.michelson import X2, Y2, Z2

    data = pytdi.Data(dict(measurements), dict(delays), fs)
    data.compute_delay_derivatives()
    x, y, z = (comb.build(**data.args)(data.measurements) for comb in (X2, Y2, Z2))
    return np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)


def _chunks(n: int, chunk_size: int) -> Iterable[tuple[int, int]]:
    for start in range(0, n, chunk_size):
        yield start, min(n, start + chunk_size)


def _responses(binaries: Sequence[GalacticBinary], orbits: Path) -> list:
    import lisagwresponse

    responses = []
    for binary in binaries:
        ra, dec = binary.icrs()
        responses.append(
            lisagwresponse.GalacticBinary(
                A=binary.amplitude,
                f=binary.f,
                df=binary.fdot,
                phi0=binary.initial_phase,
                iota=binary.inclination,
                psi=binary.polarization,
                t_init=0.0,
                ra=ra,
                dec=dec,
                orbits=str(orbits),
            )
        )
    return responses


def inject_binaries(
    binaries: Sequence[GalacticBinary],
    t0: float,
    dt: float,
    n: int,
    workdir: Path | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signal-only TDI 2.0 X, Y, Z (fractional frequency) of ``binaries``.

    Args:
        binaries: sources (see :mod:`lisa_science.binaries`).
        t0: time of the first sample [s since the LISA epoch; 0 = orbit phase 0].
        dt: sampling period [s].
        n: number of samples.
        workdir: parent directory for the temporary orbit and GW files (default: the system temp
            dir); the files are deleted on return (~13 MB of disk per 2^18-sample chunk).
        chunk_size: maximum output samples simulated at once (bounds memory).

    Returns:
        ``(x, y, z)``, float64 arrays of length ``n`` at times ``t0 + dt * arange(n)``.
    """
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n}")
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    binaries = list(binaries)
    out = tuple(np.zeros(n) for _ in range(3))
    if not binaries:
        return out

    import pytdi

    before, after = tdi_margins(dt)
    with (
        quiet_file_version_warnings(),
        tempfile.TemporaryDirectory(prefix="lisa-inject-", dir=workdir) as tmp,
    ):
        orbits = write_keplerian_orbits(
            Path(tmp) / "orbits.h5", t0 - before * dt, t0 + (n + after) * dt
        )
        responses = _responses(binaries, orbits)
        for index, (start, stop) in enumerate(_chunks(n, chunk_size)):
            size = before + (stop - start) + after
            gw_path = Path(tmp) / f"gws-{index}.h5"
            for response in responses:
                response.write(
                    str(gw_path),
                    dt=dt,
                    size=size,
                    t0=t0 + (start - before) * dt,
                    timeframe="tps",
                    chunks=min(size, 2**16),
                )
            data = pytdi.Data.from_gws(str(gw_path), str(orbits))
            gw_path.unlink()
            for target, series in zip(
                out, tdi2_xyz(data.measurements, data.delays, data.fs), strict=True
            ):
                target[start:stop] = series[before : before + (stop - start)]
    return out
