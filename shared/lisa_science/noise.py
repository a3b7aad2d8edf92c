"""Analytic LISA instrument noise (SciRD) in TDI channels.

The model is the one of Robson, Cornish & Liu 2019, CQG 36 105011 (SciRD allocation: 15 pm
optical metrology, 3 fm/s^2 test-mass acceleration), expressed as one-sided PSDs of
fractional frequency, as used by the LISA Data Challenges (LDC ``SciRDv1`` model). It is the
noise truth against which measured spectra are compared and with which data are whitened.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

L_ARM = 2.5e9
"""LISA arm length in metres."""
C_LIGHT = 299792458.0
"""Speed of light in m/s."""

OMS_ASD = 15e-12
"""Optical metrology system noise, m/sqrt(Hz)."""
ACC_ASD = 3e-15
"""Test-mass acceleration noise, m/s^2/sqrt(Hz)."""

CHANNELS = ("X", "A", "E", "T")
GENERATIONS = ("1.5", "2.0")


def _positive(f: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Frequencies as float array, and where they are > 0 (the model diverges at f = 0)."""
    f_arr = np.asarray(f, dtype=np.float64)
    return np.where(f_arr > 0, f_arr, 1.0), f_arr > 0


def s_oms(f: ArrayLike) -> NDArray[np.float64]:
    """Single-link optical metrology noise in fractional frequency (Robson+ 2019, eq. 10).

    S_oms = (15 pm)^2 (2 pi f / c)^2 [1 + (2 mHz / f)^4]; 0 where f <= 0.
    """
    fp, ok = _positive(f)
    val = OMS_ASD**2 * (2 * np.pi * fp / C_LIGHT) ** 2 * (1 + (2e-3 / fp) ** 4)
    return np.where(ok, val, 0.0)


def s_acc(f: ArrayLike) -> NDArray[np.float64]:
    """Single test-mass acceleration noise in fractional frequency (Robson+ 2019, eq. 11).

    S_acc = (3 fm/s^2)^2 [1 + (0.4 mHz / f)^2][1 + (f / 8 mHz)^4] / (2 pi f c)^2; 0 where f <= 0.
    """
    fp, ok = _positive(f)
    val = (
        ACC_ASD**2
        * (1 + (0.4e-3 / fp) ** 2)
        * (1 + (fp / 8e-3) ** 4)
        / (2 * np.pi * fp * C_LIGHT) ** 2
    )
    return np.where(ok, val, 0.0)


def tdi_psd(f: ArrayLike, channel: str, generation: str = "2.0") -> NDArray[np.float64]:
    """One-sided noise PSD of TDI channel X, A, E or T (fractional frequency, 1/Hz).

    TDI 1.5 transfer functions of the SciRD model (LDC ``ldc.lisa.noise``); TDI 2.0 multiplies
    them by 4 sin^2(2x), x = 2 pi f L / c, because second-generation TDI applies the first-
    generation combination twice with a delay of two round trips. Returns 0 at f <= 0 (the
    model does not describe DC); the PSD also vanishes at the TDI nulls f = k c / (4 L) in 2.0.
    """
    if channel not in CHANNELS:
        raise ValueError(f"unknown TDI channel {channel!r}; expected one of {CHANNELS}")
    if generation not in GENERATIONS:
        raise ValueError(f"unknown TDI generation {generation!r}; expected one of {GENERATIONS}")
    fp, ok = _positive(f)
    oms, acc = s_oms(fp), s_acc(fp)
    x = 2 * np.pi * fp * L_ARM / C_LIGHT
    sin2 = np.sin(x) ** 2
    if channel == "X":
        psd = 16 * sin2 * (oms + (3 + np.cos(2 * x)) * acc)
    elif channel in ("A", "E"):
        psd = 8 * sin2 * ((2 + np.cos(x)) * oms + 2 * (3 + 2 * np.cos(x) + np.cos(2 * x)) * acc)
    else:
        psd = 16 * sin2 * ((1 - np.cos(x)) * oms + 8 * np.sin(x / 2) ** 4 * acc)
    if generation == "2.0":
        psd = psd * 4 * np.sin(2 * x) ** 2
    return np.where(ok, psd, 0.0)
