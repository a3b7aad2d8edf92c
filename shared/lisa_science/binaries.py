"""Galactic binary source parameters and catalogues.

The bundled catalogue ``data/verification_binaries_kupfer2018.csv`` holds the 16 LISA
verification binaries of Kupfer et al. 2018 (MNRAS 480, 302, Tables 1-2) as shipped by the LEGWORK
package. Its amplitude column uses the LDC convention ``A = 2 (G Mc)^(5/3) (pi f)^(2/3) / (c^4 d)``
(the same ``A`` as ``lisagwresponse.GalacticBinary``), so that

    h+ = -A (1 + cos^2 i) cos(Phi),   hx = -2 A cos(i) sin(Phi),
    Phi(t) = 2 pi f t + pi fdot t^2 - phi0    (t in TCB seconds since the LISA epoch).

Catalogue CSV format (header line required; extra columns are ignored)::

    name            free text
    f_gw_Hz         gravitational-wave frequency at t = 0 [Hz]
    fdot_gr_Hz_s    frequency derivative [Hz/s]
    amplitude       strain amplitude A (LDC convention above)
    ecl_lon_rad     ecliptic longitude (barycentric mean ecliptic J2000) [rad]
    ecl_lat_rad     ecliptic latitude [rad]
    incl_deg        inclination [deg]
    polarization_rad   optional, polarization angle psi in the ICRS frame [rad], default 0
    polarization_ecl_rad  optional alternative: psi in the ecliptic frame [rad] (converted)
    initial_phase_rad  optional, initial phase phi0 at t = 0 [rad], default 0

The Kupfer table gives neither polarization nor initial phase; both default to 0 (a deterministic,
documented choice). With psi = 0 (ICRS) and phi0 = 0 the README's optimal-SNR table (lisagwresponse
3.0.2, Keplerian orbits, start at orbit phase 0) is reproduced: over 1 day the SNR of the
nearly circularly polarized sources (AM CVn, ES Cet, HM Cnc) barely depends on psi, but that of
edge-on SDSS J0651 changes by ~15% between psi conventions.

Polarization convention: ``polarization`` is lisagwresponse's psi, defined in the ICRS frame with
the polarization basis ``u = (sin ra, -cos ra, 0)``, ``v = (-sin dec cos ra, -sin dec sin ra,
cos dec)`` (lisagwresponse.VerificationBinary likewise takes its sky position in another frame
but psi in ICRS). Catalogues whose psi is measured in the ecliptic frame, with the same basis
built from ecliptic coordinates, can use ``polarization_ecl_rad`` or
:func:`ecliptic_polarization_to_icrs`, which rotates psi by the angle between the two bases so that
the strain tensor is unchanged. LDC/FastGB catalogues give psi in the ecliptic frame but may use a
different sign or origin for it; this module does not convert between those conventions.

Pure numpy: importable without the simulation packages.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

# IAU 2006 mean obliquity of the ecliptic at J2000 (84381.406 arcsec). The frame bias between
# this rotation and astropy's BarycentricMeanEcliptic -> ICRS (used by lisaorbits) is ~1e-7 rad.
OBLIQUITY_J2000_RAD = math.radians(84381.406 / 3600.0)

VERIFICATION_BINARIES_CSV = "verification_binaries_kupfer2018.csv"

REQUIRED_COLUMNS = (
    "name",
    "f_gw_Hz",
    "fdot_gr_Hz_s",
    "amplitude",
    "ecl_lon_rad",
    "ecl_lat_rad",
    "incl_deg",
)
OPTIONAL_COLUMNS = ("polarization_rad", "polarization_ecl_rad", "initial_phase_rad")


def _sky_basis(lon: float, lat: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors (k, u, v) of lisagwresponse's source basis for a (lon, lat) direction."""
    k = -np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])
    u = np.array([math.sin(lon), -math.cos(lon), 0.0])
    v = np.array([-math.sin(lat) * math.cos(lon), -math.sin(lat) * math.sin(lon), math.cos(lat)])
    return k, u, v


def _ecliptic_to_icrs_matrix() -> np.ndarray:
    ce, se = math.cos(OBLIQUITY_J2000_RAD), math.sin(OBLIQUITY_J2000_RAD)
    return np.array([[1.0, 0.0, 0.0], [0.0, ce, -se], [0.0, se, ce]])


def ecliptic_to_icrs(lon: float, lat: float) -> tuple[float, float]:
    """Convert ecliptic (J2000 mean ecliptic) longitude/latitude to ICRS (ra, dec) [rad]."""
    direction = _ecliptic_to_icrs_matrix() @ np.array(
        [math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)]
    )
    ra = math.atan2(direction[1], direction[0]) % (2.0 * math.pi)
    dec = math.asin(max(-1.0, min(1.0, float(direction[2]))))
    return ra, dec


def ecliptic_polarization_to_icrs(lon: float, lat: float, psi_ecl: float) -> float:
    """Convert a polarization angle from the ecliptic to the ICRS polarization basis [rad].

    Both bases are built like lisagwresponse's (see module docstring) from the source's ecliptic
    and ICRS coordinates; the result differs from ``psi_ecl`` by the angle between them, so that
    the GW strain tensor is unchanged. Returned modulo pi.
    """
    ra, dec = ecliptic_to_icrs(lon, lat)
    _, u_ecl, _ = _sky_basis(lon, lat)
    _, u_icrs, v_icrs = _sky_basis(ra, dec)
    u_ecl_in_icrs = _ecliptic_to_icrs_matrix() @ u_ecl
    gamma = math.atan2(float(u_ecl_in_icrs @ v_icrs), float(u_ecl_in_icrs @ u_icrs))
    return (psi_ecl + gamma) % math.pi


@dataclass(frozen=True)
class GalacticBinary:
    """A quasi-monochromatic Galactic binary (parameters at TCB t = 0, the LISA epoch).

    Attributes:
        name: source name.
        f: gravitational-wave frequency [Hz].
        fdot: frequency derivative [Hz/s].
        amplitude: strain amplitude A (LDC convention, see module docstring).
        ecliptic_longitude: [rad].
        ecliptic_latitude: [rad].
        inclination: [rad].
        polarization: polarization angle psi in the ICRS frame (lisagwresponse convention) [rad].
        initial_phase: phi0 [rad].
    """

    name: str
    f: float
    fdot: float
    amplitude: float
    ecliptic_longitude: float
    ecliptic_latitude: float
    inclination: float
    polarization: float = 0.0
    initial_phase: float = 0.0

    def __post_init__(self) -> None:
        values = (
            self.f,
            self.fdot,
            self.amplitude,
            self.ecliptic_longitude,
            self.ecliptic_latitude,
            self.inclination,
            self.polarization,
            self.initial_phase,
        )
        if not all(math.isfinite(float(v)) for v in values):
            raise ValueError(f"{self.name}: non-finite parameter")
        if self.f <= 0.0:
            raise ValueError(f"{self.name}: frequency must be > 0, got {self.f}")
        if self.amplitude < 0.0:
            raise ValueError(f"{self.name}: amplitude must be >= 0, got {self.amplitude}")
        if abs(self.ecliptic_latitude) > math.pi / 2 + 1e-12:
            raise ValueError(f"{self.name}: |ecliptic latitude| > pi/2")

    def icrs(self) -> tuple[float, float]:
        """(ra, dec) in ICRS [rad], as used by lisagwresponse."""
        return ecliptic_to_icrs(self.ecliptic_longitude, self.ecliptic_latitude)


def _row_to_binary(row: dict[str, str], where: str) -> GalacticBinary:
    missing = [c for c in REQUIRED_COLUMNS if c not in row or row[c] in (None, "")]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}")
    try:
        lon, lat = float(row["ecl_lon_rad"]), float(row["ecl_lat_rad"])
        psi = float(row.get("polarization_rad") or 0.0)
        psi_ecl = row.get("polarization_ecl_rad")
        if psi_ecl not in (None, ""):
            if row.get("polarization_rad") not in (None, ""):
                raise ValueError("give polarization_rad or polarization_ecl_rad, not both")
            psi = ecliptic_polarization_to_icrs(lon, lat, float(psi_ecl))
        return GalacticBinary(
            name=row["name"].strip(),
            f=float(row["f_gw_Hz"]),
            fdot=float(row["fdot_gr_Hz_s"]),
            amplitude=float(row["amplitude"]),
            ecliptic_longitude=lon,
            ecliptic_latitude=lat,
            inclination=math.radians(float(row["incl_deg"])),
            polarization=psi,
            initial_phase=float(row.get("initial_phase_rad") or 0.0),
        )
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error


def _read_catalogue(lines, source: str) -> list[GalacticBinary]:
    reader = csv.DictReader(lines)
    if reader.fieldnames is None:
        raise ValueError(f"{source}: empty catalogue")
    absent = [c for c in REQUIRED_COLUMNS if c not in reader.fieldnames]
    if absent:
        raise ValueError(f"{source}: header lacks column(s) {absent}")
    return [_row_to_binary(row, f"{source} line {reader.line_num}") for row in reader]


def load_binary_catalogue(path: str | Path) -> list[GalacticBinary]:
    """Read a CSV catalogue of Galactic binaries (format in the module docstring)."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        return _read_catalogue(handle, str(path))


def load_verification_binaries() -> list[GalacticBinary]:
    """The 16 verification binaries of Kupfer et al. 2018 (polarization = phase = 0)."""
    package = __package__ or "lisa_science"
    resource = resources.files(package).joinpath("data").joinpath(VERIFICATION_BINARIES_CSV)
    with resource.open("r", newline="", encoding="utf-8") as handle:
        return _read_catalogue(handle, VERIFICATION_BINARIES_CSV)
