"""``lisa-choreo simulate``: an LDC-format file of TDI noise plus injected Galactic binaries.

Noise ``analytic``: Gaussian, coloured by the SciRD TDI 2.0 PSDs (a year in seconds).
Noise ``instrument``: the LISA Consortium's lisainstrument + pytdi (the ``sim`` extra; slow).
Sources: the verification binaries (Kupfer et al. 2018), a catalogue CSV, or none, injected with
lisagwresponse on lisaorbits Keplerian orbits and pytdi (the ``sim`` extra). The injected truth is
written into the file (``sky/truth``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from lisa_science.binaries import (
    GalacticBinary,
    load_binary_catalogue,
    load_verification_binaries,
)
from lisa_science.ldc import TDIData, write_ldc
from lisa_science.simulate import analytic_tdi_noise

DAY = 86_400.0


class SimulationError(RuntimeError):
    """A one-line explanation (e.g. the ``sim`` extra is not installed)."""


def choose_sources(sources: str) -> list[GalacticBinary]:
    if sources == "none":
        return []
    if sources == "verification":
        return load_verification_binaries()
    return load_binary_catalogue(Path(sources))


def simulate(
    out: Path,
    duration_s: float,
    dt: float = 5.0,
    noise: str = "analytic",
    sources: str = "verification",
    seed: int = 0,
    t0: float = 0.0,
) -> Path:
    n = round(duration_s / dt)
    if noise == "analytic":
        x, y, z = analytic_tdi_noise(n, dt, np.random.default_rng(seed))
    elif noise == "instrument":
        try:
            from lisa_science.instrument import instrument_tdi_noise

            _, x, y, z = instrument_tdi_noise(n * dt, dt, seed, t0=t0)
        except ImportError as exc:
            raise SimulationError(
                f"noise 'instrument' needs the sim extra (pip install 'lisa-choreo[sim]'): {exc}"
            ) from exc
    elif noise == "none":
        x, y, z = (np.zeros(n) for _ in range(3))
    else:
        raise SimulationError(f"unknown noise {noise!r}: analytic, instrument or none")
    binaries = choose_sources(sources)
    if binaries:
        try:
            from lisa_science.injection import inject_binaries

            sx, sy, sz = inject_binaries(binaries, t0, dt, n)
        except ImportError as exc:
            raise SimulationError(
                f"injecting sources needs the sim extra (pip install 'lisa-choreo[sim]'): {exc}"
            ) from exc
        x, y, z = x + sx, y + sy, z + sz
    truth = [dataclasses.asdict(b) for b in binaries]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    write_ldc(str(tmp), TDIData(t0=t0, dt=dt, x=x, y=y, z=z), truth=truth or None)
    tmp.replace(out)  # an inbox watcher never sees a half-written file
    return out
