"""Binds the sinusoid fit to ``lisa.candidates.gb`` -> ``lisa.sources.estimates``."""

from __future__ import annotations

import sys

import numpy as np
import structlog
from opentelemetry import trace

from choreo import Consumes, Emit, Envelope, Produces, Step
from choreo.control import ControlChannel
from choreo.runner import run_step
from choreo.store import Store
from lisa_pipeline.events import CandidatesGB, SourceEstimate, SourceEstimates, StepControl
from lisa_pipeline.topics import CANDIDATES_GB, CONTROL, SOURCES_ESTIMATES
from lisa_science.estimate import SinusoidFitter

step = Step(
    "estimate",
    consumes=[Consumes(CANDIDATES_GB, CandidatesGB)],
    produces=[Produces(SOURCES_ESTIMATES, SourceEstimates)],
    description="least-squares sinusoid fit with Fisher-matrix uncertainties",
)
_tracer = trace.get_tracer("estimate")
log = structlog.get_logger(__name__)
STORE = Store()


@step.handler
def estimate(event: Envelope[CandidatesGB]) -> list[Emit]:
    cands = event.data
    timing = cands.timing
    estimates: list[SourceEstimate] = []
    if cands.candidates:
        data = STORE.get(cands.conditioned, ["A", "E", "mask"])
        psd = STORE.get(cands.psd, ["f", "A_smooth", "E_smooth"])
        # the window, the data's spectra and the band DFT's rffts, shared by every candidate
        fitter = SinusoidFitter(
            data["A"], data["E"], timing.dt, mask=data["mask"].astype(bool), t0=timing.t0
        )
    for cand in cands.candidates:
        with _tracer.start_as_current_span(
            "fit sinusoid",
            attributes={"lisa.frequency_hz": cand.frequency_hz, "lisa.search_snr": cand.snr},
        ) as span:
            s_a = float(np.interp(cand.frequency_hz, psd["f"], psd["A_smooth"]))
            s_e = float(np.interp(cand.frequency_hz, psd["f"], psd["E_smooth"]))
            try:
                fit = fitter.fit(cand.frequency_hz, s_a, s_e)
            except (ValueError, np.linalg.LinAlgError) as exc:
                # One failed fit must not lose the segment: the catalogue still stacks it.
                span.record_exception(exc)
                log.warning("fit failed", frequency_hz=cand.frequency_hz, error=str(exc))
                continue
            span.set_attributes({"lisa.fit_frequency_hz": fit.frequency, "lisa.snr": fit.snr})
            estimates.append(
                SourceEstimate(
                    candidate=cand,
                    frequency_hz=fit.frequency,
                    sigma_frequency_hz=fit.sigma_frequency,
                    amplitude_a=fit.amplitude_a,
                    amplitude_e=fit.amplitude_e,
                    sigma_amplitude_a=fit.sigma_amplitude_a,
                    sigma_amplitude_e=fit.sigma_amplitude_e,
                    phase_a=fit.phase_a,
                    phase_e=fit.phase_e,
                    sigma_phase_a=fit.sigma_phase_a,
                    sigma_phase_e=fit.sigma_phase_e,
                    snr=fit.snr,
                    reduced_chi2=fit.reduced_chi2,
                )
            )
    trace.get_current_span().set_attributes(
        {"lisa.segment_id": timing.segment_id, "lisa.estimates": len(estimates)}
    )
    return [
        Emit(
            SOURCES_ESTIMATES,
            SourceEstimates(
                timing=timing,
                statistic=cands.statistic,
                n_independent_bins=cands.n_independent_bins,
                estimates=estimates,
            ),
        )
    ]


def main() -> int:
    """Run the step until SIGTERM/SIGINT; it pauses and resumes on ``lisa.control``."""
    return run_step(step, control=ControlChannel(CONTROL, StepControl))


if __name__ == "__main__":
    sys.exit(main())
