"""Acceptance (issue 14): 30 days of SciRD noise + Galactic foreground + injected binaries through
the condition, gb-search and estimate handlers and the catalogue's core, in one process.

Every injected source above SNR 15 is catalogued (promoted) within one daily bin of its
frequency with a stacked SNR within 25 % of its optimal SNR against the total noise, and nothing
that was not injected is catalogued; the same without foreground. The truth is the injection
(frequency, and SNR by construction: h^2 T / S with S the total PSD), not the code's output.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.science import DAY, Injection, run_chain, write_dataset

DAYS = 30
INJECTIONS = [
    # in the foreground band (0.5-3 mHz), where it is 8-25x the instrument noise
    Injection(0.7311e-3, 18.0, 0.3),
    Injection(1.2047e-3, 30.0, 1.1),
    Injection(1.9402e-3, 45.0, 2.0),  # ~AM CVn
    Injection(2.6133e-3, 16.0, 0.7),
    # above it
    Injection(3.2207e-3, 25.0, 0.1),  # ~ES Cet
    Injection(6.2213e-3, 60.0, 2.5),  # ~HM Cnc
    Injection(11.3379e-3, 20.0, 1.7),
    # below the acceptance SNR: may be catalogued (they are injected) or not
    Injection(4.4441e-3, 9.0, 0.9),
    Injection(1.6109e-3, 7.0, 0.4),
]


@pytest.mark.parametrize("years", [0.5, None], ids=["foreground", "no-foreground"])
def test_thirty_days_catalogue_every_source_above_snr_15_and_nothing_else(
    tmp_path: Path, years: float | None
) -> None:
    path = write_dataset(tmp_path / "acceptance.h5", DAYS, INJECTIONS, years, seed=14)
    sources, _ = run_chain(path, (tmp_path / "store").as_uri(), foreground_years=0.5)
    promoted = [s for s in sources if s.status == "promoted"]
    bin_width = 1 / DAY
    report = []
    for inj in INJECTIONS:
        near = [s for s in promoted if abs(s.frequency_hz - inj.frequency_hz) <= bin_width]
        report.append((inj.frequency_hz, inj.snr, [(s.frequency_hz, s.stacked_snr) for s in near]))
        if inj.snr < 15:
            continue
        assert len(near) == 1, report[-1]
        (found,) = near
        assert found.stacked_snr == pytest.approx(inj.snr, rel=0.25), report[-1]
    for s in promoted:  # nothing that was not injected
        assert any(abs(s.frequency_hz - i.frequency_hz) <= bin_width for i in INJECTIONS), (
            s.frequency_hz,
            s.stacked_snr,
            report,
        )
