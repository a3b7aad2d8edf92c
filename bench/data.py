"""Simulated datasets: analytic SciRD TDI noise, optionally with loud monochromatic binaries.

The LISA Consortium's injection (``lisa_choreo.simfile`` with verification binaries) costs over a
minute per simulated month, too slow for a benchmark run; a few constant-frequency sinusoids added
to the A and E channels cost nothing and make every later step do its real work: the search finds
candidates, ``estimate`` fits them, the catalogue promotes sources and republishes them for every
segment. Noise is drawn exactly as ``lisa_science.simulate.analytic_tdi_noise`` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lisa_science.ldc import TDIData, read_ldc_slice, write_ldc
from lisa_science.noise import tdi_psd
from lisa_science.segments import aet_to_xyz
from lisa_science.simulate import coloured_noise

DAY = 86_400.0
DT = 5.0
SAMPLES_PER_DAY = round(DAY / DT)

# (frequency Hz, per-day optimal SNR in each of A and E): well above the 1 % FAP threshold of one
# day, so every segment yields candidates and fits, and the catalogue updates each source.
LINES: tuple[tuple[float, float], ...] = ((2.1e-3, 10.0), (4.3e-3, 12.0), (7.7e-3, 9.0))


@dataclass(frozen=True)
class Dataset:
    path: Path
    days: int
    dt: float
    sources: str

    @property
    def samples_per_segment(self) -> int:
        return round(DAY / self.dt)


def _sinusoid(n: int, dt: float, f: float, snr: float, channel: str, phase: float) -> np.ndarray:
    """h cos(2 pi f t + phase) whose optimal SNR over one day is ``snr`` (h^2 T / S = SNR^2)."""
    psd = float(tdi_psd(np.array([f]), channel, "2.0")[0])
    h = snr * np.sqrt(psd / DAY)
    return h * np.cos(2 * np.pi * f * np.arange(n) * dt + phase)


def make_dataset(path: Path, days: int, sources: str = "lines", seed: int = 0) -> Dataset:
    """Write ``days`` days at dt = 5 s to an LDC file (cached: an existing file is reused)."""
    if sources not in ("none", "lines"):
        raise ValueError(f"sources must be 'none' or 'lines', got {sources!r}")
    if not path.exists():
        n = days * SAMPLES_PER_DAY
        rng = np.random.default_rng(seed)
        a, e, t = (
            coloured_noise(n, DT, lambda f, ch=ch: tdi_psd(f, ch, "2.0"), rng)
            for ch in ("A", "E", "T")
        )
        if sources == "lines":
            for k, (f, snr) in enumerate(LINES):
                a += _sinusoid(n, DT, f, snr, "A", 0.3 + k)
                e += _sinusoid(n, DT, f, snr, "E", 1.1 + k)
        x, y, z = aet_to_xyz(a, e, t)
        del a, e, t
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        write_ldc(str(tmp), TDIData(t0=0.0, dt=DT, x=x, y=y, z=z))
        tmp.replace(path)
    return Dataset(path, days, DT, sources)


def split_days(data: Dataset, out_dir: Path) -> list[Path]:
    """One LDC file per day (for feeding a pipeline one segment at a time)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    n = data.samples_per_segment
    for d in range(data.days):
        target = out_dir / f"day-{d:04d}.h5"
        if not target.exists():
            part = read_ldc_slice(str(data.path), d * n, (d + 1) * n)
            write_ldc(str(target), TDIData(t0=part.t0, dt=part.dt, x=part.x, y=part.y, z=part.z))
        files.append(target)
    return files
