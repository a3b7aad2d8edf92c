"""A Galactic binary seen through LISA's TDI: a fast model of the signal in the A and E channels.

Why our own model: the refinement step fits a source coherently over all its segments, which
takes thousands of model evaluations; the Consortium's chain (``lisagwresponse`` link
responses + ``pytdi``, see :mod:`lisa_science.injection`) costs seconds per source and day, and
it needs Python 3.12 while the services also run on 3.11. The model here follows the same
physics and conventions, written from the published equations, and is tested against that
chain (``tests/unit/science/test_gbresponse.py``: match > 0.999 over 10 days).

Physics, in the same conventions as :mod:`lisa_science.binaries` and ``lisagwresponse``:

- Orbits: Keplerian orbits that minimise flexing to second order in eccentricity (Nayak,
  Koshti, Dhurandhar & Vinet 2006, CQG 23 1763; the default of ``lisaorbits.KeplerianOrbits``:
  L = 2.5 Gm, a = 1 au, spacecraft 1 at mean anomaly 0 and longitude of periastron 0 at t = 0),
  in the barycentric mean ecliptic, rotated to ICRS by the J2000 obliquity.
- Link response of link ij (received on spacecraft i from j), e.g. Vallisneri 2005 PRD 71
  022001 or the ``lisagwresponse`` documentation:
  ``y_ij(t) = [H_ij(t - L_ij - k.x_j/c) - H_ij(t - k.x_i/c)] / (2 (1 - k.n_ij))`` with
  ``H_ij = xi+ h+ + xix hx``, ``xi+ = (n.u)^2 - (n.v)^2``, ``xix = 2 (n.u)(n.v)``, n the unit
  vector from emitter to receiver, k the propagation direction.
- Slowly varying source (Cornish & Larson 2007 PRD 76 083006, the "FastGB" idea): the strain is
  ``h = Re[H e^{i Phi(t)}]`` with constant complex polarisation amplitudes, and every delay
  ``tau`` (light travel, Roemer delay up to 500 s, TDI delays up to ~67 s) acts on the carrier
  only, ``Phi(t - tau) ~ Phi(t) - 2 pi f(t) tau``: what is neglected is fdot tau^2 and the
  change of the slow amplitude over tau (< 1e-4 rad for these sources).
- TDI 2.0 Michelson X2 (pytdi's ``X2_ETA`` paths ``131212131 -121313121``) for equal
  arms (their mean light time L at each sample):
  ``X2 = (1 - D^2)(1 - D^4)[(y13 + D y31) - (y12 + D y21)]``, Y2 and Z2 by cyclic
  permutation, D a delay by L (TDI 1.5: without the ``(1 - D^4)``). The
  arms of these orbits flex by +-0.2 %, i.e. < 1e-3 rad of carrier phase below 10 mHz.
  A = (Z - X) / sqrt 2, E = (X - 2 Y + Z) / sqrt 6 (:mod:`lisa_science.segments`).
- Times: data are on the spacecraft proper time (TPS); the source phase is referenced to TCB
  t = 0. For these orbits TPS - TCB = -1.5 (n a / c)^2 t (+ a 1e-4 s periodic term, neglected).

Units: fractional frequency, like the data. Pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .binaries import OBLIQUITY_J2000_RAD, GalacticBinary, ecliptic_to_icrs

C_LIGHT = 299792458.0
ASTRONOMICAL_UNIT = 149597870700.0
GM_SUN = 1.3271244e20  # IAU 2015 nominal solar mass parameter [m^3 s^-2]
ARM_M = 2.5e9
ARM_S = ARM_M / C_LIGHT

#: Links (receiver, emitter) in the order of the arrays below.
LINKS = ((1, 2), (2, 3), (3, 1), (1, 3), (3, 2), (2, 1))
_LINK_INDEX = {link: i for i, link in enumerate(LINKS)}


class KeplerianConstellation:
    """Spacecraft positions of the minimum-flexing Keplerian orbits (see module docstring)."""

    def __init__(self, arm: float = ARM_M, a: float = ASTRONOMICAL_UNIT) -> None:
        alpha = arm / (2 * a)
        nu = math.pi / 3 + 5.0 / 8.0 * alpha
        self.e = math.sqrt(1 + 4 * alpha * math.cos(nu) / math.sqrt(3) + 4 * alpha**2 / 3) - 1
        tan_i = alpha * math.sin(nu) / (math.sqrt(3) / 2 + alpha * math.cos(nu))
        self.cos_i = 1 / math.sqrt(1 + tan_i**2)
        self.sin_i = tan_i * self.cos_i
        self.a = a
        self.n = math.sqrt(GM_SUN / a**3)
        self.theta = np.arange(3) * 2 * math.pi / 3
        #: TCB = TPS (1 + tps_rate): the secular proper-time drift of these orbits
        self.tps_rate = 1.5 * (self.n * a / C_LIGHT) ** 2
        ce, se = math.cos(OBLIQUITY_J2000_RAD), math.sin(OBLIQUITY_J2000_RAD)
        self._to_icrs = np.array([[1.0, 0.0, 0.0], [0.0, ce, -se], [0.0, se, ce]])

    def positions(self, t_tcb: ArrayLike) -> NDArray[np.float64]:
        """ICRS positions [m] of spacecraft 1, 2, 3 at TCB times t: shape (N, 3, 3)."""
        t = np.asarray(t_tcb, dtype=np.float64)[:, None]
        m = -self.theta[None, :] + self.n * t  # mean anomaly
        e = self.e
        psi = m + (e - e**3 / 8) * np.sin(m) + 0.5 * e**2 * np.sin(2 * m)
        for _ in range(3):  # Newton on Kepler's equation (converges at once for e ~ 0.005)
            psi -= (psi - e * np.sin(psi) - m) / (1 - e * np.cos(psi))
        rx = self.a * self.cos_i * (np.cos(psi) - e)
        ry = self.a * math.sqrt(1 - e**2) * np.sin(psi)
        rz = -self.a * self.sin_i * (np.cos(psi) - e)
        cl, sl = np.cos(self.theta)[None, :], np.sin(self.theta)[None, :]
        ecl = np.stack([cl * rx - sl * ry, sl * rx + cl * ry, rz], axis=-1)  # (N, 3, 3)
        return ecl @ self._to_icrs.T


@dataclass(frozen=True)
class Geometry:
    """Everything about the constellation at a set of times that no source parameter changes:
    computed once per segment and reused by every model evaluation."""

    t: NDArray[np.float64]
    """data (TPS) times [s]"""
    t_tcb: NDArray[np.float64]
    x_rec: NDArray[np.float64]
    """(N, 6, 3) receiver positions per link [m]"""
    x_emi: NDArray[np.float64]
    """(N, 6, 3) emitter positions at emission per link [m]"""
    n: NDArray[np.float64]
    """(N, 6, 3) unit vectors emitter -> receiver"""
    ltt: NDArray[np.float64]
    """(N, 6) light travel times [s]"""


def geometry(t_tps: ArrayLike, constellation: KeplerianConstellation | None = None) -> Geometry:
    """The links' geometry at data times ``t_tps`` (s since the LISA epoch, TPS)."""
    orbits = constellation or KeplerianConstellation()
    t = np.asarray(t_tps, dtype=np.float64)
    t_tcb = t * (1 + orbits.tps_rate)
    pos = orbits.positions(t_tcb)
    rec = np.array([i - 1 for i, _ in LINKS])
    emi = np.array([j - 1 for _, j in LINKS])
    x_rec = pos[:, rec, :]
    ltt = np.linalg.norm(x_rec - pos[:, emi, :], axis=-1) / C_LIGHT
    # one fixed-point step: emitter position at the emission time (error ~ (v/c)^2 L)
    x_emi = np.empty_like(x_rec)
    for k, j in enumerate(emi):
        x_emi[:, k, :] = orbits.positions(t_tcb - ltt[:, k])[:, j, :]
    sep = x_rec - x_emi
    ltt = np.linalg.norm(sep, axis=-1) / C_LIGHT
    return Geometry(t, t_tcb, x_rec, x_emi, sep / (ltt[..., None] * C_LIGHT), ltt)


def sky_basis(
    ecliptic_latitude: float, ecliptic_longitude: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(k, u, v) in ICRS for a source at the given ecliptic position: lisagwresponse's basis
    (polarisation angle in ICRS), as :mod:`lisa_science.binaries` documents."""
    ra, dec = ecliptic_to_icrs(ecliptic_longitude, ecliptic_latitude)
    cd, sd, ca, sa = math.cos(dec), math.sin(dec), math.cos(ra), math.sin(ra)
    k = -np.array([cd * ca, cd * sa, sd])
    u = np.array([sa, -ca, 0.0])
    v = np.array([-sd * ca, -sd * sa, cd])
    return k, u, v


def polarisation_amplitudes(
    amplitude: float, inclination: float, polarization: float, initial_phase: float
) -> tuple[complex, complex]:
    """Complex (P, C) with h+ = Re[P e^{i Phi'}], hx = Re[C e^{i Phi'}],
    Phi' = 2 pi f t + pi fdot t^2 (the initial phase is inside P and C)."""
    a_plus = amplitude * (1 + math.cos(inclination) ** 2)
    a_cross = 2 * amplitude * math.cos(inclination)
    c2, s2 = math.cos(2 * polarization), math.sin(2 * polarization)
    rot = -complex(math.cos(initial_phase), -math.sin(initial_phase))
    return rot * complex(a_plus * c2, a_cross * s2), rot * complex(a_plus * s2, -a_cross * c2)


def physical_from_polarisation(p: complex, c: complex) -> tuple[float, float, float, float]:
    """Inverse of :func:`polarisation_amplitudes`: (amplitude, inclination, psi, phi0), with
    psi in [0, pi/2) and phi0 in [0, 2 pi) (the waveform is unchanged by psi -> psi + pi/2 with
    phi0 -> phi0 + pi, so that is the whole range).

    P + iC = -A (1 + cos i)^2 e^{i(2 psi - phi0)}, P - iC = -A (1 - cos i)^2 e^{-i(2 psi + phi0)}.
    """
    q_plus, q_minus = -(p + 1j * c), -(p - 1j * c)
    r_plus, r_minus = math.sqrt(abs(q_plus)), math.sqrt(abs(q_minus))
    if r_plus + r_minus == 0.0:
        return 0.0, math.pi / 2, 0.0, 0.0
    amplitude = ((r_plus + r_minus) / 2) ** 2
    cos_i = (r_plus - r_minus) / (r_plus + r_minus)
    psi = ((np.angle(q_plus) - np.angle(q_minus)) / 4) % (math.pi / 2)
    phi0 = (2 * psi - np.angle(q_plus)) % (2 * math.pi)
    return amplitude, math.acos(max(-1.0, min(1.0, cos_i))), float(psi), float(phi0)


def tdi_bases(
    geo: Geometry,
    f: float,
    fdot: float,
    ecliptic_latitude: float,
    ecliptic_longitude: float,
    carrier_hz: float | NDArray[np.float64] = 0.0,
    generation: str = "2.0",
) -> NDArray[np.complex128]:
    """Complex slow amplitudes of A and E per unit polarisation amplitude.

    Returns ``b`` of shape (2, 2, N): channel (A, E) x polarisation (+, x), such that the
    channel's signal is ``Re[(P b[c, 0] + C b[c, 1]) exp(2 pi i carrier_hz t)]`` at the data
    times of ``geo`` (``P, C`` from :func:`polarisation_amplitudes`). With ``carrier_hz`` near
    f the amplitudes vary slowly (Doppler, antenna pattern, f - carrier), which is what lets the
    fit sample them coarsely.
    """
    if generation not in ("1.5", "2.0"):
        raise ValueError(f"unknown TDI generation {generation!r}")
    k, u, v = sky_basis(ecliptic_latitude, ecliptic_longitude)
    t_tcb = geo.t_tcb
    f_inst = f + fdot * t_tcb  # instantaneous frequency at reception
    omega = 2 * math.pi * f_inst[:, None]
    nu, nv = geo.n @ u, geo.n @ v
    xi_plus, xi_cross = nu**2 - nv**2, 2 * nu * nv
    delay_emi = geo.ltt + (geo.x_emi @ k) / C_LIGHT
    delay_rec = (geo.x_rec @ k) / C_LIGHT
    transfer = (np.exp(-1j * omega * delay_emi) - np.exp(-1j * omega * delay_rec)) / (
        2 * (1 - geo.n @ k)
    )
    slow = np.exp(
        1j * (2 * math.pi * (f * t_tcb + 0.5 * fdot * t_tcb**2) - 2 * math.pi * carrier_hz * geo.t)
    )
    y = {  # link -> (N, 2): responses to unit P and unit C
        link: np.stack([xi_plus[:, i], xi_cross[:, i]], axis=-1) * (transfer[:, i] * slow)[:, None]
        for link, i in _LINK_INDEX.items()
    }
    # the arms' mean light time at each sample: the flexing (+-0.2 %) averaged out (the fixed
    # 2.5 Gm / c would overstate the low-frequency TDI 2.0 response, ~ L^3, by 0.5 %)
    d = np.exp(-1j * omega[:, 0] * geo.ltt.mean(axis=1))[:, None]
    factor = (1 - d**2) * (1 - d**4) if generation == "2.0" else (1 - d**2)

    def michelson(i: int, j: int, m: int) -> NDArray[np.complex128]:
        # X for (i, j, m) = (1, 2, 3): (y_im + D y_mi) - (y_ij + D y_ji)
        return factor * ((y[(i, m)] + d * y[(m, i)]) - (y[(i, j)] + d * y[(j, i)]))

    x, yy, z = michelson(1, 2, 3), michelson(2, 3, 1), michelson(3, 1, 2)
    a = (z - x) / math.sqrt(2)
    e = (x - 2 * yy + z) / math.sqrt(6)
    return np.stack([a.T, e.T])  # (2 channels, 2 polarisations, N)


def binary_tdi_ae(
    binary: GalacticBinary, t_tps: ArrayLike, generation: str = "2.0"
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A and E time series (fractional frequency) of one binary at TPS times ``t_tps``: the
    model evaluated at every sample (for validation and simulation; the fit samples coarsely).
    """
    geo = geometry(t_tps)
    b = tdi_bases(
        geo,
        binary.f,
        binary.fdot,
        binary.ecliptic_latitude,
        binary.ecliptic_longitude,
        0.0,
        generation,
    )
    p, c = polarisation_amplitudes(
        binary.amplitude, binary.inclination, binary.polarization, binary.initial_phase
    )
    signal = (p * b[:, 0] + c * b[:, 1]).real
    return signal[0], signal[1]
