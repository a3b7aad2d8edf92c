"""``lisa-choreo simulate``: an LDC-format file of TDI noise plus injected Galactic binaries.

Noise ``analytic``: Gaussian, coloured by the SciRD TDI 2.0 PSDs (a year in seconds).
Noise ``instrument``: the LISA Consortium's lisainstrument + pytdi (slow).
Foreground (``foreground``): the Galactic confusion noise of Robson, Cornish & Liu 2019 (eq. 14)
at the level for the simulated duration (or ``foreground_years``), stationary Gaussian, added
to either noise (``lisa_science.simulate.foreground_tdi_noise``).
Sources: the verification binaries (Kupfer et al. 2018), a catalogue CSV, or none, injected with
lisagwresponse on lisaorbits Keplerian orbits and pytdi. The injected truth is
written into the file (``sky/truth``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lisa_science.binaries import (
    GalacticBinary,
    load_binary_catalogue,
    load_verification_binaries,
)
from lisa_science.ldc import TDIData, write_ldc
from lisa_science.simulate import analytic_tdi_noise, foreground_tdi_noise

DAY = 86_400.0
YEAR = 365.25 * DAY


class SimulationError(RuntimeError):
    """A one-line explanation (e.g. the ``sim`` extra is not installed)."""


def choose_sources(sources: str) -> list[GalacticBinary]:
    if sources == "none":
        return []
    if sources == "verification":
        return load_verification_binaries()
    return load_binary_catalogue(Path(sources))


Progress = Callable[[str, int, int | None], None]
"""``progress(stage, done, total)``: what a caller shows (``total`` None: no measure yet)."""
MIN_SPAN = 4096
"""Samples per injected span at least (below, the per-call set-up would dominate)."""
SIM_EXTRA = "the LISA simulators, installed with lisa-choreo on Python >= 3.12"


def _noise(n: int, dt: float, noise: str, seed: int, t0: float) -> tuple[np.ndarray, ...]:
    if noise == "analytic":
        return analytic_tdi_noise(n, dt, np.random.default_rng(seed))
    if noise == "instrument":
        try:
            from lisa_science.instrument import instrument_tdi_noise
        except ImportError as exc:
            why = f"noise 'instrument' needs {SIM_EXTRA}: {exc}"
            raise SimulationError(why) from exc
        _, x, y, z = instrument_tdi_noise(n * dt, dt, seed, t0=t0)
        return x, y, z
    if noise == "none":
        return tuple(np.zeros(n) for _ in range(3))
    raise SimulationError(f"unknown noise {noise!r}: analytic, instrument or none")


def simulate(
    out: Path,
    duration_s: float,
    dt: float = 5.0,
    noise: str = "analytic",
    sources: str = "verification",
    seed: int = 0,
    t0: float = 0.0,
    progress: Progress | None = None,
    foreground: bool = False,
    foreground_years: float | None = None,
) -> Path:
    """Write the file (atomically: a temp name, then a rename). With ``progress`` the sources
    are injected day by day so that it can be reported; each span is one call of
    ``inject_binaries``, which simulates every span with its own TDI margins, so the spans join
    seamlessly (to ~1e-10 of the signal: only the sampling of the orbit file differs)."""
    report = progress or (lambda *_: None)
    n = round(duration_s / dt)
    report(f"noise ({noise})", 0, None)
    x, y, z = (np.array(c, dtype=np.float64) for c in _noise(n, dt, noise, seed, t0))
    report(f"noise ({noise})", 1, 1)
    if foreground:
        years = foreground_years if foreground_years is not None else n * dt / YEAR
        # its own stream, so that the instrument noise of a seed is the same with or without it
        rng = np.random.default_rng([seed, 1])
        for total, part in zip((x, y, z), foreground_tdi_noise(n, dt, rng, years), strict=True):
            total += part
    binaries = choose_sources(sources)
    if binaries:
        try:
            from lisa_science.injection import DEFAULT_CHUNK_SIZE, inject_binaries
        except ImportError as exc:
            why = f"injecting sources needs {SIM_EXTRA}: {exc}"
            raise SimulationError(why) from exc
        span = n
        if progress is not None:
            span = max(MIN_SPAN, min(DEFAULT_CHUNK_SIZE, math.ceil(n / 50), round(DAY / dt)))
        stage = f"injecting {len(binaries)} source(s)"
        for start in range(0, n, span):
            stop = min(n, start + span)
            sx, sy, sz = inject_binaries(binaries, t0 + start * dt, dt, stop - start)
            x[start:stop] += sx
            y[start:stop] += sy
            z[start:stop] += sz
            report(stage, stop, n)
    report(f"writing {out.name}", 0, None)
    truth = [dataclasses.asdict(b) for b in binaries]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    write_ldc(str(tmp), TDIData(t0=t0, dt=dt, x=x, y=y, z=z), truth=truth or None)
    tmp.replace(out)  # an inbox watcher never sees a half-written file
    report(f"writing {out.name}", 1, 1)
    return out
