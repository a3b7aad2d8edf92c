"""The science chain in one process, for acceptance tests and the detection-efficiency curve.

Days of SciRD noise (optionally plus the Galactic foreground, ``lisa_science.foreground``) with
injected monochromatic binaries are written to an LDC file, cut by ingest's ``plan_file``, then
run through the condition, gb-search and estimate HANDLERS themselves and stacked by the
catalogue's broker-free core (``lisa_services.catalog.state.stack_segment``), exactly as
``bench/inprocess.py`` does, without Kafka. Injections are sinusoids in A and E whose optimal SNR
against the TOTAL noise (instrument + foreground) is chosen: per day SNR^2 = h^2 T / S, so over
N days the SNR is sqrt(N) times the daily one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DAY = 86_400.0
DT = 5.0
N_DAY = round(DAY / DT)


@dataclass(frozen=True)
class Injection:
    frequency_hz: float
    snr: float
    """Optimal A+E SNR over the whole data set against the total noise."""
    phase: float = 0.0


def write_dataset(
    path: Path,
    days: int,
    injections: list[Injection],
    foreground_years: float | None,
    seed: int,
) -> Path:
    """LDC file of ``days`` days: Gaussian noise of the total PSD in A, E (instrument in T) and
    the injected sinusoids, split evenly between A and E (each carries SNR / sqrt 2)."""
    from lisa_science.foreground import total_tdi_psd
    from lisa_science.ldc import TDIData, write_ldc
    from lisa_science.noise import tdi_psd
    from lisa_science.segments import aet_to_xyz
    from lisa_science.simulate import coloured_noise

    n = days * N_DAY
    rng = np.random.default_rng(seed)
    a, e = (
        coloured_noise(n, DT, lambda f, c=c: total_tdi_psd(f, c, foreground_years), rng)
        for c in ("A", "E")
    )
    t_ch = coloured_noise(n, DT, lambda f: tdi_psd(f, "T"), rng)
    t = np.arange(n) * DT
    duration = n * DT
    for inj in injections:
        for channel, series, shift in (("A", a, 0.0), ("E", e, math.pi / 2)):
            s = float(total_tdi_psd(inj.frequency_hz, channel, foreground_years))
            h = inj.snr / math.sqrt(2) * math.sqrt(s / duration)
            series += h * np.cos(2 * np.pi * inj.frequency_hz * t + inj.phase + shift)
    x, y, z = aet_to_xyz(a, e, t_ch)
    write_ldc(str(path), TDIData(t0=0.0, dt=DT, x=x, y=y, z=z))
    return path


def run_chain(path: Path, store_uri: str, foreground_years: float | None = 0.5):
    """(catalogue sources, per-segment candidate lists): the chain on every daily segment.

    ``foreground_years`` sets the condition step's foreground component (None: off)."""
    from choreo import Envelope
    from choreo.store import Store
    from lisa_services.catalog.settings import CatalogSettings
    from lisa_services.catalog.state import stack_segment
    from lisa_services.condition import service as condition_step
    from lisa_services.estimate import service as estimate_step
    from lisa_services.gb_search import service as search_step
    from lisa_services.ingest.files import plan_file
    from lisa_services.ingest.publish import _segment_event

    store = Store(store_uri)
    saved = {m: m.STORE for m in (condition_step, search_step, estimate_step)}
    saved_years = condition_step.SETTINGS.foreground_years
    try:
        for module in saved:
            module.STORE = store
        condition_step.SETTINGS.foreground_years = foreground_years or 0.0
        settings = CatalogSettings()
        plan = plan_file(path, DAY, 0.0)
        stack = None
        candidates = []
        for index in range(len(plan.bounds)):
            raw = _segment_event(plan, index, store, 0.0)
            env = Envelope.root(raw, source="ingest", subject=plan.segment_id(index))
            (conditioned,) = condition_step.condition(env)
            (found,) = search_step.search(Envelope.root(conditioned.data, source="condition"))
            candidates.append(found.data.candidates)
            (est,) = estimate_step.estimate(Envelope.root(found.data, source="gb-search"))
            arrays = store.get(est.data.statistic, ["f", "stat"])
            stack = stack_segment(stack, est.data, arrays["f"], arrays["stat"], None, settings)
        assert stack is not None
        return stack.catalogue(settings.association_bins), candidates
    finally:
        for module, old in saved.items():
            module.STORE = old
        condition_step.SETTINGS.foreground_years = saved_years
