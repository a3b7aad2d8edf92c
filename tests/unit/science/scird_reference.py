"""The SciRD TDI 2.0 noise PSD written from the science notes (../shared/science/README.md,
section 2) independently of lisa_science.noise, as a reference for the simulator tests."""

import numpy as np

ARM_LENGTH = 2.5e9  # m
LIGHT_SPEED = 299792458.0  # m/s


def scird_tdi2_psd_ae(f: np.ndarray) -> np.ndarray:
    """One-sided SciRD TDI 2.0 PSD of A (= E), fractional frequency (README section 2)."""
    x = 2 * np.pi * f * ARM_LENGTH / LIGHT_SPEED
    s_oms = (15e-12) ** 2 * (2 * np.pi * f / LIGHT_SPEED) ** 2 * (1 + (2e-3 / f) ** 4)
    s_acc = (
        (3e-15) ** 2
        * (1 + (0.4e-3 / f) ** 2)
        * (1 + (f / 8e-3) ** 4)
        / (2 * np.pi * f * LIGHT_SPEED) ** 2
    )
    tdi15 = (
        8
        * np.sin(x) ** 2
        * ((2 + np.cos(x)) * s_oms + 2 * (3 + 2 * np.cos(x) + np.cos(2 * x)) * s_acc)
    )
    return tdi15 * 4 * np.sin(2 * x) ** 2
