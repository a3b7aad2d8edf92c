"""SciRD noise model against the README / Robson, Cornish & Liu 2019 formulas, re-typed here
with scalar math so that the vectorised implementation is checked independently."""

import math

import numpy as np
import pytest

from lisa_science.noise import s_acc, s_oms, tdi_psd

L = 2.5e9
C = 299792458.0
FREQS = (1e-4, 7.3e-4, 2e-3, 1e-2, 2.7e-2, 0.07)


def ref_oms(f: float) -> float:
    # (15 pm)^2 (2 pi f / c)^2 [1 + (2 mHz / f)^4]
    return 2.25e-22 * (2 * math.pi * f / C) ** 2 * (1 + 1.6e-11 / f**4)


def ref_acc(f: float) -> float:
    # (3 fm/s^2)^2 [1 + (0.4 mHz / f)^2][1 + (f / 8 mHz)^4] / (2 pi f c)^2
    return 9e-30 * (1 + 1.6e-7 / f**2) * (1 + f**4 / 4.096e-9) / (2 * math.pi * f * C) ** 2


def ref_tdi15(f: float, channel: str) -> float:
    x = 2 * math.pi * f * L / C
    oms, acc = ref_oms(f), ref_acc(f)
    s2 = math.sin(x) ** 2
    if channel == "X":
        return 16 * s2 * (oms + (3 + math.cos(2 * x)) * acc)
    if channel in "AE":
        return (
            8 * s2 * ((2 + math.cos(x)) * oms + 2 * (3 + 2 * math.cos(x) + math.cos(2 * x)) * acc)
        )
    return 16 * s2 * ((1 - math.cos(x)) * oms + 8 * math.sin(x / 2) ** 4 * acc)


@pytest.mark.parametrize("f", FREQS)
def test_single_link_noises_match_formula(f: float) -> None:
    assert s_oms(f) == pytest.approx(ref_oms(f), rel=1e-12)
    assert s_acc(f) == pytest.approx(ref_acc(f), rel=1e-12)


def test_oms_hand_value_at_2mhz() -> None:
    # by hand: (15e-12)^2 * (2 pi 2e-3 / c)^2 * (1 + 1) = 2.25e-22 * (4.19169e-11)^2 * 2
    assert s_oms(2e-3) == pytest.approx(2.25e-22 * 4.191690e-11**2 * 2, rel=1e-6)


@pytest.mark.parametrize("channel", ["X", "A", "E", "T"])
@pytest.mark.parametrize("f", FREQS)
def test_tdi15_matches_formula(channel: str, f: float) -> None:
    assert tdi_psd(f, channel, "1.5") == pytest.approx(ref_tdi15(f, channel), rel=1e-12)


@pytest.mark.parametrize("channel", ["X", "A", "E", "T"])
def test_tdi2_is_tdi15_times_4_sin2_2x(channel: str) -> None:
    f = np.array(FREQS)
    x = 2 * np.pi * f * L / C
    expected = tdi_psd(f, channel, "1.5") * 4 * np.sin(2 * x) ** 2
    np.testing.assert_allclose(tdi_psd(f, channel, "2.0"), expected, rtol=1e-12)
    assert tdi_psd(f, channel).tolist() == tdi_psd(f, channel, "2.0").tolist()  # default is 2.0


@pytest.mark.parametrize("generation", ["1.5", "2.0"])
def test_michelson_psd_consistent_with_aet_rotation(generation: str) -> None:
    # X = -A/sqrt2 + E/sqrt6 + T/sqrt3 with independent A, E, T => S_X = S_A/2 + S_E/6 + S_T/3
    f = np.geomspace(1e-4, 0.1, 50)
    s_a, s_e, s_t = (tdi_psd(f, ch, generation) for ch in "AET")
    np.testing.assert_allclose(tdi_psd(f, "X", generation), s_a / 2 + s_e / 6 + s_t / 3, rtol=1e-10)


def test_zero_and_negative_frequency_give_zero() -> None:
    assert tdi_psd(np.array([0.0, -1e-3]), "A").tolist() == [0.0, 0.0]
    assert s_oms(0.0) == 0.0
    assert s_acc(0.0) == 0.0


def test_tdi2_null_at_c_over_4l() -> None:
    f_null = C / (4 * L)  # sin(2x) = 0
    assert tdi_psd(f_null, "A") < 1e-20 * tdi_psd(0.02, "A")


def test_bad_channel_or_generation() -> None:
    with pytest.raises(ValueError, match="unknown TDI channel"):
        tdi_psd(1e-3, "Q")
    with pytest.raises(ValueError, match="unknown TDI generation"):
        tdi_psd(1e-3, "A", "3.0")
