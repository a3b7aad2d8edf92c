"""Binds the search kernel to ``lisa.segments.conditioned`` -> ``lisa.candidates.gb``."""

from __future__ import annotations

import sys

import numpy as np
from opentelemetry import trace
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from choreo import Consumes, Emit, Envelope, Produces, Step
from choreo.control import ControlChannel
from choreo.runner import run_step
from choreo.store import Store
from lisa_pipeline.events import CandidatesGB, GBCandidate, SegmentConditioned, StepControl
from lisa_pipeline.topics import CANDIDATES_GB, CONTROL, SEGMENTS_CONDITIONED
from lisa_science.search import (
    find_candidates,
    grid_search_threshold,
    independent_bins,
    search_statistic,
    search_window,
)

step = Step(
    "gb-search",
    consumes=[Consumes(SEGMENTS_CONDITIONED, SegmentConditioned)],
    produces=[Produces(CANDIDATES_GB, CandidatesGB)],
    description="whitened A+E periodogram search for Galactic binaries",
)
_tracer = trace.get_tracer("gb-search")


class SearchSettings(BaseSettings):
    """``LISA_GBSEARCH_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="LISA_GBSEARCH_")

    fmin_hz: float = Field(1e-4, gt=0)
    fmax_hz: float = Field(2e-2, gt=0)
    fap: float = Field(0.01, gt=0, lt=1, description="false-alarm probability per segment")
    pad_factor: int = Field(2, ge=1, description="zero padding: less scalloping loss")


SETTINGS = SearchSettings()
STORE = Store()


@step.handler
def search(event: Envelope[SegmentConditioned]) -> list[Emit]:
    seg = event.data
    timing = seg.timing
    with _tracer.start_as_current_span("load conditioned"):
        data = STORE.get(seg.data, ["A", "E", "mask"])
        psd = STORE.get(seg.psd, ["f", "A_smooth", "E_smooth"])
    with _tracer.start_as_current_span("statistic") as s:
        f, stat = search_statistic(
            data["A"],
            data["E"],
            timing.dt,
            psd["f"],
            psd["A_smooth"],
            psd["E_smooth"],
            mask=data["mask"].astype(bool),
            pad_factor=SETTINGS.pad_factor,
        )
        band = (f >= SETTINGS.fmin_hz) & (f <= SETTINGS.fmax_hz)
        f, stat = f[band], stat[band]
        s.set_attributes({"lisa.segment_id": timing.segment_id, "lisa.bins": int(f.size)})
    n_bins = independent_bins(timing.n_samples, timing.dt, SETTINGS.fmin_hz, SETTINGS.fmax_hz)
    # The maximum is taken over every grid bin of the band, neighbours correlated through this
    # segment's window (gaps included): lisa_science.significance makes the FAP exact for it.
    usable = data["mask"].astype(bool) & np.isfinite(data["A"]) & np.isfinite(data["E"])
    threshold, coherence = grid_search_threshold(
        SETTINGS.fap, int(f.size), search_window(usable, timing.dt), SETTINGS.pad_factor
    )
    with _tracer.start_as_current_span("candidates") as s:
        found = find_candidates(
            f, stat, threshold, SETTINGS.fmin_hz, SETTINGS.fmax_hz, int(f.size), coherence=coherence
        )
        s.set_attribute("lisa.candidates", len(found))
        if found:
            s.set_attributes(
                {"lisa.best_frequency_hz": found[0].frequency, "lisa.best_snr": found[0].snr}
            )
    stat_ref = STORE.put(
        {"f": f, "stat": stat.astype(np.float64)}, {"pad_factor": SETTINGS.pad_factor}
    )
    trace.get_current_span().set_attributes(
        {"lisa.segment_id": timing.segment_id, "lisa.candidates": len(found)}
    )
    return [
        Emit(
            CANDIDATES_GB,
            CandidatesGB(
                timing=timing,
                statistic=stat_ref,
                fmin_hz=SETTINGS.fmin_hz,
                fmax_hz=SETTINGS.fmax_hz,
                n_independent_bins=n_bins,
                fap=SETTINGS.fap,
                threshold=threshold,
                candidates=[
                    GBCandidate(
                        frequency_hz=c.frequency,
                        bin=c.bin_index,
                        statistic=c.statistic,
                        snr=c.snr,
                        fap=c.fap,
                    )
                    for c in found
                ],
                conditioned=seg.data,
                psd=seg.psd,
            ),
        )
    ]


def main() -> int:
    """Run the step until SIGTERM/SIGINT; it pauses and resumes on ``lisa.control``."""
    return run_step(step, control=ControlChannel(CONTROL, StepControl))


if __name__ == "__main__":
    sys.exit(main())
