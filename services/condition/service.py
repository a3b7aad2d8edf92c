"""Binds the conditioning kernels to ``lisa.segments.raw`` -> ``lisa.segments.conditioned``."""

from __future__ import annotations

import sys

import numpy as np
from opentelemetry import trace
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from choreo import Consumes, Emit, Envelope, PermanentError, Produces, Step
from choreo.control import ControlChannel
from choreo.runner import run_step
from choreo.store import Store
from lisa_pipeline.events import BandRatio, SegmentConditioned, SegmentRaw, StepControl
from lisa_pipeline.topics import CONTROL, SEGMENTS_CONDITIONED, SEGMENTS_RAW
from lisa_science.calibration import calibrated_model_psd
from lisa_science.foreground import fit_noise_model
from lisa_science.noise import tdi_psd
from lisa_science.psd import (
    DEFAULT_BANDS,
    average_periodograms,
    band_ratios,
    welch_periodograms,
)
from lisa_science.quality import fill_masked, gap_mask, quality_mask
from lisa_science.segments import xyz_to_aet
from lisa_science.whiten import whiten

step = Step(
    "condition",
    consumes=[Consumes(SEGMENTS_RAW, SegmentRaw)],
    produces=[Produces(SEGMENTS_CONDITIONED, SegmentConditioned)],
    description="quality mask, PSD per channel, whitening",
)
_tracer = trace.get_tracer("condition")


class ConditionSettings(BaseSettings):
    """``LISA_CONDITION_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="LISA_CONDITION_")

    welch_segment_s: float = Field(4 * 3600.0, gt=0, description="Welch periodogram length (s)")
    glitch_threshold: float = Field(8.0, gt=0, description="robust z-score flagging a glitch")
    min_usable_fraction: float = Field(0.25, ge=0, le=1)
    tdi_generation: str = Field("2.0", description="TDI generation of the data (1.5 or 2.0)")
    whiten_fmax_hz: float = Field(0.025, gt=0, description="whitened band stops below 30 mHz")
    foreground_years: float = Field(
        0.5,
        ge=0,
        description="observation time (years) whose Galactic-foreground shape (Robson, Cornish & "
        "Liu 2019) the A/E noise model fits with a free amplitude; 0: no foreground component",
    )


SETTINGS = ConditionSettings()
STORE = Store()


@step.handler
def condition(event: Envelope[SegmentRaw]) -> list[Emit]:
    raw = event.data
    timing = raw.timing
    span = trace.get_current_span()
    span.set_attributes({"lisa.segment_id": timing.segment_id, "lisa.samples": timing.n_samples})
    with _tracer.start_as_current_span("load segment"):
        arrays = STORE.get(raw.data, ["X", "Y", "Z"])
    x, y, z = (np.asarray(arrays[c], dtype=np.float64) for c in ("X", "Y", "Z"))
    if x.size != timing.n_samples or not (x.shape == y.shape == z.shape):
        raise PermanentError("shape-mismatch", f"stored arrays {x.shape} != {timing.n_samples}")

    with _tracer.start_as_current_span("quality mask") as s:
        gaps = ~(gap_mask(x) & gap_mask(y) & gap_mask(z))
        if gaps.all():
            raise PermanentError("no-data", f"segment {timing.segment_id} is all NaN")
        mask = np.ones(x.size, dtype=bool)
        for channel in (x, y, z):
            mask &= quality_mask(channel, timing.dt, threshold=SETTINGS.glitch_threshold)
        usable = float(mask.mean())
        s.set_attributes(
            {
                "lisa.gap_samples": int(gaps.sum()),
                "lisa.glitch_samples": int((~mask & ~gaps).sum()),
                "lisa.usable_fraction": usable,
            }
        )
        if usable < SETTINGS.min_usable_fraction:
            raise PermanentError(
                "too-little-data",
                f"only {usable:.1%} usable (< {SETTINGS.min_usable_fraction:.0%})",
            )

    with _tracer.start_as_current_span("aet"):
        a, e, t = xyz_to_aet(*(np.where(mask, c, 0.0) for c in (x, y, z)))

    with _tracer.start_as_current_span("psd") as s:
        # One set of Welch periodograms for the three channels (one batched rfft), both
        # averages from it: the median for the PSDs, the mean for the band ratios (glitches
        # are masked already, so its lower variance serves them).
        f, periodograms = welch_periodograms(
            np.stack([a, e, t]), timing.dt, mask, SETTINGS.welch_segment_s
        )
        medians = average_periodograms(periodograms, "median")
        means = average_periodograms(periodograms, "mean")
        psd: dict[str, np.ndarray] = {}
        smooth: dict[str, np.ndarray] = {}
        ratios: list[BandRatio] = []
        # with the foreground component, A's and E's smooth PSDs come from its joint fit below
        fitted = ("A", "E") if SETTINGS.foreground_years > 0 else ()
        for i, name in enumerate(("A", "E", "T")):
            psd[name] = medians[i]
            if name not in fitted:
                smooth[name] = calibrated_model_psd(f, medians[i], name, SETTINGS.tdi_generation)
            model = tdi_psd(f, name, SETTINGS.tdi_generation)
            for (lo, hi), r in zip(DEFAULT_BANDS, band_ratios(f, means[i], model), strict=True):
                ratios.append(BandRatio(channel=name, fmin_hz=lo, fmax_hz=hi, ratio=float(r)))
        s.set_attribute("lisa.psd_ratio_A_2_5mHz", ratios[1].ratio)
        if fitted:
            # A and E: instrument levels and a common foreground amplitude, fitted together
            # (lisa_science.foreground); T carries no foreground and keeps its level fit.
            fit = fit_noise_model(
                f, psd["A"], psd["E"], SETTINGS.foreground_years, SETTINGS.tdi_generation
            )
            smooth["A"] = fit.psd(f, "A", SETTINGS.tdi_generation)
            smooth["E"] = fit.psd(f, "E", SETTINGS.tdi_generation)
            s.set_attributes(
                {"lisa.foreground_amplitude": fit.amplitude, "lisa.noise_level_A": fit.level_a}
            )

    with _tracer.start_as_current_span("whiten"):
        filled = {n: fill_masked(v, mask) for n, v in (("A", a), ("E", e), ("T", t))}
        whitened = {
            n: whiten(filled[n], timing.dt, f, smooth[n], fmin=1e-4, fmax=SETTINGS.whiten_fmax_hz)
            for n in ("A", "E")
        }

    with _tracer.start_as_current_span("store products"):
        data_ref = STORE.put({**filled, "mask": mask.astype(np.uint8)}, {"t0": timing.t0})
        psd_ref = STORE.put(
            {"f": f, **psd, **{f"{n}_smooth": v for n, v in smooth.items()}},
            {"generation": SETTINGS.tdi_generation},
        )
        whitened_ref = STORE.put(whitened)

    return [
        Emit(
            SEGMENTS_CONDITIONED,
            SegmentConditioned(
                timing=timing,
                data=data_ref,
                psd=psd_ref,
                whitened=whitened_ref,
                usable_fraction=usable,
                gap_samples=int(gaps.sum()),
                glitch_samples=int((~mask & ~gaps).sum()),
                psd_model_ratio=ratios,
            ),
        )
    ]


def main() -> int:
    """Run the step until SIGTERM/SIGINT; it pauses and resumes on ``lisa.control``."""
    return run_step(step, control=ControlChannel(CONTROL, StepControl))


if __name__ == "__main__":
    sys.exit(main())
