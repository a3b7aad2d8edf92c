"""The fast Galactic-binary TDI model (lisa_science.gbresponse) against independent references:
the LISA Consortium's own chain (lisagwresponse 3.0.2 link responses on lisaorbits 3.1.0
Keplerian orbits, pytdi 2.2.1 TDI 2.0, via lisa_science.injection) and the optimal-SNR table of
the science notes (shared/science/README.md section 3, computed with those simulators; gbgpu and
LDC FastGB agree within 1 % at 1 year)."""

from __future__ import annotations

import csv
import math
from importlib import resources

import numpy as np
import pytest

from lisa_science.binaries import GalacticBinary, load_verification_binaries
from lisa_science.gbresponse import (
    ARM_M,
    KeplerianConstellation,
    binary_tdi_ae,
    geometry,
    physical_from_polarisation,
    polarisation_amplitudes,
    tdi_bases,
)
from lisa_science.noise import tdi_psd
from lisa_science.segments import xyz_to_aet


def by_name() -> dict[str, GalacticBinary]:
    return {b.name: b for b in load_verification_binaries()}


def reference_snr() -> dict[float, dict[str, float]]:
    text = resources.files("lisa_science.data").joinpath("verification_snr_scird.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {float(r["f_mHz"]): {k: float(v) for k, v in r.items() if k != "name"} for r in rows}


def test_orbits_keep_the_constellation_at_one_au_with_2_5_gm_arms() -> None:
    t = np.linspace(0, 3.15e7, 400)
    pos = KeplerianConstellation().positions(t)
    radius = np.linalg.norm(pos, axis=-1) / 1.495978707e11
    assert np.all(np.abs(radius - 1) < 0.012)  # eccentricity ~ L / (2 sqrt 3 au) ~ 0.005
    arms = np.linalg.norm(pos[:, [0, 1, 2]] - pos[:, [1, 2, 0]], axis=-1)
    assert np.all(np.abs(arms / ARM_M - 1) < 0.01)  # "minimum flexing": < 1 %
    centre = pos.mean(axis=1)
    angle = np.unwrap(np.arctan2(centre[:, 1], centre[:, 0]))  # ICRS, but one turn a year
    assert (angle[-1] - angle[0]) / (2 * math.pi) == pytest.approx(3.15e7 / 3.15581e7, rel=0.01)


def test_light_travel_times_are_the_arm_lengths() -> None:
    geo = geometry(np.array([0.0, 1e6]))
    assert np.allclose(geo.ltt * 299792458.0 / ARM_M, 1, atol=0.01)
    assert np.allclose(np.linalg.norm(geo.n, axis=-1), 1)


@pytest.mark.parametrize("inclination", [0.3, 1.0, math.pi / 2 - 0.2, 2.5])
@pytest.mark.parametrize("psi", [0.1, 0.9, 1.4])
def test_polarisation_amplitudes_invert(inclination: float, psi: float) -> None:
    p, c = polarisation_amplitudes(2e-22, inclination, psi, 2.0)
    amplitude, incl, psi_back, phi0 = physical_from_polarisation(p, c)
    assert amplitude == pytest.approx(2e-22, rel=1e-12)
    assert incl == pytest.approx(inclination, abs=1e-9)
    # psi is returned in [0, pi/2); (psi + pi/2, phi0 + pi) is the same wave
    p2, c2 = polarisation_amplitudes(amplitude, incl, psi_back, phi0)
    assert abs(p2 - p) < 1e-30
    assert abs(c2 - c) < 1e-30


@pytest.fixture(scope="module")
def simulators() -> None:
    for module in ("lisaorbits", "lisagwresponse", "pytdi"):
        pytest.importorskip(module)


@pytest.mark.parametrize("name", ["AM CVn", "HM Cnc", "SDSS J065133.34+284423.4"])
def test_model_matches_lisagwresponse_and_pytdi(simulators: None, name: str) -> None:
    from lisa_science.injection import inject_binaries

    binary = by_name()[name]
    # a non-zero phase and polarisation, and a start away from orbit phase 0
    binary = GalacticBinary(**{**binary.__dict__, "polarization": 0.7, "initial_phase": 1.3})
    t0, dt, n = 40 * 86400.0, 5.0, 17280
    x, y, z = inject_binaries([binary], t0, dt, n)
    a_ref, e_ref, _ = xyz_to_aet(x, y, z)
    a, e = binary_tdi_ae(binary, t0 + dt * np.arange(n))
    for ref, model in ((a_ref, a), (e_ref, e)):
        match = np.dot(ref, model) / np.sqrt(np.dot(ref, ref) * np.dot(model, model))
        assert match > 0.9999
        assert np.linalg.norm(model) / np.linalg.norm(ref) == pytest.approx(1, abs=0.005)


@pytest.mark.parametrize(
    ("name", "column", "days"),
    [
        ("AM CVn", "snr_30d", 30),
        ("ES Cet", "snr_30d", 30),
        ("AM CVn", "snr_1yr", 365),
        ("HM Cnc", "snr_1yr", 365),
        ("SDSS J065133.34+284423.4", "snr_1yr", 365),
    ],
)
def test_optimal_snr_matches_the_reference_table(name: str, column: str, days: int) -> None:
    """SNR^2 = sum over A, E of (2 / S(f)) int s^2 dt for a narrow-band signal (Parseval), and
    with s = Re[M e^{2 pi i f t}] the carrier averages out: int s^2 = (1/2) int |M|^2, M the
    model's slow amplitude, which 600 s nodes sample finely."""
    binary = by_name()[name]
    step = 600.0
    geo = geometry(step * np.arange(round(days * 86400 / step)))
    b = tdi_bases(
        geo, binary.f, binary.fdot, binary.ecliptic_latitude, binary.ecliptic_longitude, binary.f
    )
    p, c = polarisation_amplitudes(
        binary.amplitude, binary.inclination, binary.polarization, binary.initial_phase
    )
    snr2 = 0.0
    for index, channel in enumerate("AE"):
        psd = float(tdi_psd(np.array([binary.f]), channel, "2.0")[0])
        slow = p * b[index, 0] + c * b[index, 1]
        snr2 += (2 / psd) * 0.5 * float(np.sum(np.abs(slow) ** 2)) * step
    want = reference_snr()[round(binary.f * 1e3, 2)][column]
    assert math.sqrt(snr2) == pytest.approx(want, rel=0.02)
