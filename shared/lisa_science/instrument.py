"""Realistic instrumental noise in TDI 2.0 X, Y, Z from lisainstrument + pytdi.

Configuration (science notes, ``../shared/science/README.md`` sections 2 and 5, "test-mass
3 fm, OMS 15 pm,
laser only"): ``lisainstrument.Instrument`` at 4 Hz with laser noise (default 30 Hz/sqrt(Hz),
locking N1-12), test-mass acceleration noise 3e-15 m/s^2/sqrt(Hz) (knee 0.4 mHz, break 8 mHz) and
OMS noise 15 pm/sqrt(Hz) (knee 2 mHz) in the science interferometers only; every other noise,
clock noise and clock offsets/drifts off (we do not implement clock correction). Orbits are
Keplerian (``lisaorbits.KeplerianOrbits`` written to a temporary file; orbit phase 0 at t = 0;
needs lisaorbits, Python >= 3.12) or lisainstrument's built-in ``"static"`` arms (Python 3.11 too;
same noise PSD). Its one-sided TDI PSD is the SciRD / Robson,
Cornish & Liu (2019) model of ``noise.py`` / the README.

Processing:

* pytdi 2.2.1 refuses lisainstrument 2.3.0's core results for "fluctuations", so the pytdi
  ``Data`` is built here from the carrier-fluctuation datasets (``sci``, ``tmi``, ``ref``, Hz) and
  the measured pseudo-ranges; only those datasets are kept in memory, the simulation itself runs
  on lisainstrument's chunked serial scheduler (bounded memory).
* Delays: the measured pseudo-ranges are smoothed with a least-squares cubic spline (one knot
  interval per day), because raw MPRs as TDI delays inflate the noise.
* TDI 2.0 ``X2, Y2, Z2`` are divided by the laser central frequency (-> fractional frequency).
* Decimation 4 Hz -> 1/dt with a linear-phase Kaiser FIR (passband to 0.8 x the output Nyquist
  flat to 2e-8, >= 157 dB stop band from the output Nyquist): Y and Z carry a laser-noise residual
  at 1-2 Hz ~1e9 above the noise, which a weak filter would alias into the band.
* A warm-up (``INSTRUMENT_WARMUP_S``, more than the README's ~120 s of TDI transient) plus half the
  FIR is simulated before the returned span and cut, and half the FIR plus a guard after it.
* TDI and FIR run in chunks of ``chunk_samples`` 4 Hz samples with overlapping margins, so their
  memory is bounded too; the held 4 Hz inputs cost ~66 MB per simulated day.

Cost on one core (measured): 6 h of output ~20 s and 0.38 GB peak RSS; 1 day ~80 s and 0.57 GB
(the README measured 1.5-2.5 min and 1.5-7 GB per day when keeping all of lisainstrument's
datasets). Use fast Gaussian noise coloured by the analytic PSD for long runs; this is the
realistic reference for hours to days.

lisainstrument's own anti-alias filter delays every measurement by ~4.5 s; for noise this is
irrelevant, but it means noise time stamps are not aligned to sub-5 s precision with anything else.
The simulators are imported lazily: this module imports on Python 3.11 without them.
"""

from __future__ import annotations

import functools
import math
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np

from .injection import LAGRANGE_HALF_WIDTH, tdi2_xyz, write_keplerian_orbits

#: lisainstrument measurement sampling frequency [Hz].
INSTRUMENT_FS = 4.0
#: Simulated time discarded at the start (TDI 2.0 and simulator start-up transients) [s].
INSTRUMENT_WARMUP_S = 300.0
#: Time simulated after the end of the span, on top of half the FIR [s].
INSTRUMENT_TAIL_S = 30.0
#: Stop-band attenuation requested from the decimation FIR [dB].
FIR_ATTENUATION_DB = 160.0
#: Passband edge of the decimation FIR as a fraction of the output Nyquist frequency.
FIR_PASSBAND_FRACTION = 0.8
#: Knot spacing of the least-squares cubic spline that smooths the pseudo-ranges [s].
DELAY_SMOOTHING_KNOT_S = 86400.0
#: 4 Hz samples of TDI processed at once (plus margins): ~1 day.
DEFAULT_CHUNK_SAMPLES = 345600

#: Noise configuration passed to ``lisainstrument.Instrument`` (README "test-mass 3 fm, OMS 15 pm").
NOISE_CONFIG = {
    "testmass_asds": 3e-15,
    "testmass_fknees": 0.4e-3,
    "testmass_fbreak": 8e-3,
    "testmass_shape": "original-stationary",
    "oms_asds": (15e-12, 0.0, 0.0, 0.0, 0.0, 0.0),
    "oms_fknees": 2e-3,
}
KEPT_NOISES = ("laser", "test-mass", "oms")

_MOSAS = ("12", "23", "31", "13", "32", "21")
_BEATNOTES = {
    "sci": "sci_carrier_fluctuations",
    "tmi": "tmi_carrier_fluctuations",
    "ref": "ref_carrier_fluctuations",
}
_MPRS = "mprs"


@functools.lru_cache(maxsize=8)
def decimation_filter(decimation: int, fs: float = INSTRUMENT_FS) -> np.ndarray:
    """Linear-phase Kaiser low-pass FIR for decimating by ``decimation`` at ``fs``.

    The length is odd with a half-length that is a multiple of ``decimation``, so that filtered
    samples fall exactly on the decimated grid.
    """
    from scipy import signal

    f_stop = fs / (2 * decimation)
    f_pass = FIR_PASSBAND_FRACTION * f_stop
    numtaps, beta = signal.kaiserord(FIR_ATTENUATION_DB, (f_stop - f_pass) / (fs / 2))
    half = decimation * math.ceil((numtaps - 1) / (2 * decimation))
    return signal.firwin(2 * half + 1, (f_pass + f_stop) / 2, window=("kaiser", beta), fs=fs)


def smooth_delays(delay: np.ndarray, fs: float, knot_spacing: float = DELAY_SMOOTHING_KNOT_S):
    """Least-squares cubic spline fit of a delay time series (one knot per ``knot_spacing``)."""
    from scipy.interpolate import make_lsq_spline

    delay = np.asarray(delay, float)
    if delay.ndim == 0 or np.ptp(delay) == 0:
        return delay
    t = np.arange(delay.size) / fs
    n_intervals = max(1, math.ceil(t[-1] / knot_spacing))
    breaks = np.linspace(t[0], t[-1], n_intervals + 1)
    knots = np.concatenate([[t[0]] * 3, breaks, [t[-1]] * 3])
    offset = float(np.mean(delay))
    return make_lsq_spline(t, delay - offset, knots, k=3)(t) + offset


def _simulate_measurements(
    size: int,
    t_start: float,
    seed: int,
    orbits: str,
    scheduler_chunk: int,
) -> tuple[dict[str, np.ndarray | float], dict[str, np.ndarray], float]:
    """Run lisainstrument; return pytdi measurements [Hz], raw MPRs [s] and central frequency."""
    from lisainstrument import Instrument, SchedulerConfigSerial
    from lisainstrument.streams import store_bundle_numpy

    instrument = Instrument(
        size=size,
        dt=1.0 / INSTRUMENT_FS,
        t0=float(t_start),
        seed=seed,
        orbits=orbits,
        **NOISE_CONFIG,
    )
    instrument.disable_all_noises(excluding=list(KEPT_NOISES))
    bundle = instrument.stream_bundle()
    wanted = {*_BEATNOTES.values(), _MPRS}
    identifiers = {ident for ident in bundle.output_ids if tuple(ident)[-2] in wanted}
    store = store_bundle_numpy(
        bundle, identifiers, cfgscheduler=SchedulerConfigSerial(chunk_size=scheduler_chunk)
    )
    by_name = {tuple(ident)[-2:]: array for ident, array in store.as_dict().items()}
    del store
    measurements: dict[str, np.ndarray | float] = {}
    for short, name in _BEATNOTES.items():
        for mosa in _MOSAS:
            series = by_name[(name, mosa)]
            # lisainstrument stores constant series as constant arrays; scalars save memory.
            measurements[f"{short}_{mosa}"] = float(series[0]) if np.ptp(series) == 0 else series
    mprs = {f"d_{mosa}": by_name[(_MPRS, mosa)] for mosa in _MOSAS}
    return measurements, mprs, float(instrument.central_freq)


def instrument_tdi_noise(
    duration: float,
    dt: float = 5.0,
    seed: int | None = None,
    *,
    t0: float = 0.0,
    orbits: Literal["keplerian", "static"] = "keplerian",
    workdir: Path | None = None,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """TDI 2.0 X, Y, Z instrumental noise (fractional frequency) simulated with lisainstrument.

    Args:
        duration: length of the returned series [s] (``round(duration / dt)`` samples).
        dt: output sampling period [s]; ``dt * 4 Hz`` must be an integer.
        seed: lisainstrument random seed (None: random).
        t0: time of the first returned sample [s since the LISA epoch].
        orbits: ``"keplerian"`` (default; temporary ``lisaorbits`` file) or ``"static"``.
        workdir: parent directory for the temporary orbit file (default: system temp dir).
        chunk_samples: 4 Hz samples per TDI/FIR chunk (bounds memory).

    Returns:
        ``(t0, x, y, z)``: start time and float64 arrays sampled at ``t0 + dt * arange(n)``.
    """
    decimation = round(dt * INSTRUMENT_FS)
    if decimation < 1 or not math.isclose(decimation, dt * INSTRUMENT_FS, abs_tol=1e-9):
        raise ValueError(f"dt * {INSTRUMENT_FS} Hz must be a positive integer, got dt={dt}")
    n_out = round(duration / dt)
    if n_out <= 0:
        raise ValueError(f"duration must cover at least one sample, got {duration}")
    if orbits not in ("keplerian", "static"):
        raise ValueError(f"orbits must be 'keplerian' or 'static', got {orbits!r}")
    if seed is None:
        seed = int(np.random.default_rng().integers(0, 2**31 - 1))

    fir = decimation_filter(decimation) if decimation > 1 else np.ones(1)
    half = (fir.size - 1) // 2
    warmup = decimation * math.ceil(INSTRUMENT_WARMUP_S * INSTRUMENT_FS / decimation)
    pre = warmup + half  # 4 Hz samples before the first output sample
    post = half + math.ceil(INSTRUMENT_TAIL_S * INSTRUMENT_FS)
    n_in = pre + (n_out - 1) * decimation + 1 + post
    t_start = t0 - pre / INSTRUMENT_FS

    with tempfile.TemporaryDirectory(prefix="lisa-instrument-", dir=workdir) as tmp:
        if orbits == "keplerian":
            orbit_source = str(
                write_keplerian_orbits(
                    Path(tmp) / "orbits.h5", t_start - 100.0, t_start + n_in / INSTRUMENT_FS + 100
                )
            )
        else:
            orbit_source = "static"
        measurements, mprs, central_freq = _simulate_measurements(
            n_in, t_start, seed, orbit_source, scheduler_chunk=min(n_in, 2**16)
        )
    delays = {key: smooth_delays(value, INSTRUMENT_FS) for key, value in mprs.items()}
    del mprs

    # TDI 2.0 needs ~67 s of past data plus the Lagrange kernel; keep well inside the warm-up.
    tdi_pre = math.ceil(100.0 * INSTRUMENT_FS) + LAGRANGE_HALF_WIDTH + 2
    tdi_post = LAGRANGE_HALF_WIDTH + 2
    if warmup < tdi_pre or post - half < tdi_post:
        raise AssertionError("instrument margins do not cover the TDI margins")
    out = tuple(np.empty(n_out) for _ in range(3))
    outputs_per_chunk = max(1, chunk_samples // decimation)
    for first in range(0, n_out, outputs_per_chunk):
        last = min(n_out, first + outputs_per_chunk)  # output samples [first, last)
        centre0 = pre + first * decimation  # 4 Hz index of output sample `first`
        lo = centre0 - half - tdi_pre
        hi = pre + (last - 1) * decimation + half + tdi_post + 1
        chunk = {
            key: value[lo:hi] if isinstance(value, np.ndarray) else value
            for key, value in measurements.items()
        }
        tdi = tdi2_xyz(chunk, {k: v[lo:hi] for k, v in delays.items()}, INSTRUMENT_FS)
        for target, series in zip(out, tdi, strict=True):
            valid = series[tdi_pre : series.size - tdi_post] / central_freq
            filtered = _fir_valid(valid, fir)  # index j <-> 4 Hz index lo + tdi_pre + half + j
            target[first:last] = filtered[: (last - first - 1) * decimation + 1 : decimation]
    return float(t0), out[0], out[1], out[2]


def _fir_valid(x: np.ndarray, fir: np.ndarray) -> np.ndarray:
    if fir.size == 1:
        return x * fir[0]
    from scipy import signal

    return signal.oaconvolve(x, fir, mode="valid")
