"""The sinusoid fit's fast kernels against independent references.

``BandDFT`` (window DTFT from a Chebyshev series of the shift) against the DTFT summed directly,
and the variable-projection fit against a general nonlinear least-squares fit of all five
parameters (``scipy.optimize.least_squares``) whose model bins come from a full FFT of the
windowed cos and sin series, as the fit computed them before the band DFT.
"""

import math

import numpy as np
import pytest
from scipy.optimize import least_squares

from lisa_science.estimate import BandDFT, SinusoidFitter, chebyshev_order, fit_sinusoid
from lisa_science.search import search_window
from lisa_science.whiten import windowed_rfft

DT = 5.0
N = 17280
T = N * DT


def _direct_dtft(window: np.ndarray, m: int, eta: float) -> tuple[complex, complex]:
    """sum_j w_j exp(-2 pi i (m - eta) j / n) and its eta-derivative, summed term by term
    (m first brought into (-n/2, n/2]: e^{-2 pi i n j / n} = 1, and a small argument keeps the
    reference's own rounding below the tolerance)."""
    n = window.size
    m = (m + n // 2) % n - n // 2
    j = np.arange(n)
    terms = window * np.exp(-2j * np.pi * (m - eta) * j / window.size)
    return complex(terms.sum()), complex(np.sum(terms * 2j * np.pi * j / window.size))


def _gappy_window(n: int) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    mask[n // 3 : n // 3 + 700] = False
    mask[n // 2 : n // 2 + 40] = False
    return search_window(mask, DT)


def test_chebyshev_order_reaches_the_truncation() -> None:
    from scipy.special import jv

    p = chebyshev_order(np.pi / 2)
    assert abs(jv(p - 1, np.pi / 2)) < 1e-18
    assert abs(jv(p - 3, np.pi / 2)) > 1e-18  # not more terms than needed


@pytest.mark.parametrize("n", [4096, 3000, 1001])
def test_band_dft_equals_the_direct_dtft(n: int) -> None:
    window = _gappy_window(n)
    dft = BandDFT(window)
    rng = np.random.default_rng(n)
    bins = np.array([0, 1, 5, -7, n // 2, n // 2 + 3, n - 2, 3 * n + 11, -n - 4])
    etas = np.concatenate([rng.uniform(-3.7, 3.7, 6), [0.0, 0.5, -0.5, 1.5]])
    values = dft.values(bins, etas)
    slopes = dft.values(bins, etas, derivative=True)
    scale = window.sum()
    for k, eta in enumerate(etas):
        for i, m in enumerate(bins):
            value, slope = _direct_dtft(window, int(m), float(eta))
            assert abs(values[k, i] - value) < 1e-12 * scale
            assert abs(slopes[k, i] - slope) < 1e-11 * 2 * np.pi * scale


def test_band_dft_negative_sign_group_is_the_shift_reversed() -> None:
    window = _gappy_window(2048)
    dft = BandDFT(window)
    bins = np.arange(-5, 6)
    etas = np.array([-1.3, 0.2, 0.9])
    plus, minus = dft.evaluate([(bins, 1), (bins, -1)], etas, derivative=True)
    assert np.allclose(plus, dft.values(bins, etas, derivative=True), rtol=0, atol=1e-9)
    # d/d eta D(m, -eta) = -D'(m, -eta)
    assert np.allclose(minus, -dft.values(bins, -etas, derivative=True), rtol=0, atol=1e-9)
    # the fit's one-product path: D(m, eta) and D(m', -eta), against the direct DTFT
    cache: dict = {}
    for _ in range(2):  # the second time from the cached columns
        plus, minus = dft.pair_values(bins, bins + 300, etas, cache)
        for k, eta in enumerate(etas):
            for i, m in enumerate(bins):
                assert abs(plus[k, i] - _direct_dtft(window, int(m), eta)[0]) < 1e-11
                assert abs(minus[k, i] - _direct_dtft(window, int(m) + 300, -eta)[0]) < 1e-11


def _reference_fit(a, e, mask, f0, psds, half_band_bins=16, tukey_alpha=0.1):
    """All five parameters by scipy's trust-region least squares, model bins by full FFTs."""
    usable = mask & np.isfinite(a) & np.isfinite(e)
    window = search_window(usable, DT, tukey_alpha)
    sum_w2 = np.sum(window**2)
    k0 = round(f0 * T)
    band = slice(k0 - half_band_bins, k0 + half_band_bins + 1)
    data = [
        np.sqrt(4 * DT / (s * sum_w2)) * windowed_rfft(np.where(usable, x, 0.0), window)[band]
        for x, s in zip((a, e), psds, strict=True)
    ]
    tau = np.arange(N) * DT

    def model(delta):
        phase = 2 * np.pi * (f0 + delta / T) * tau
        return [2.0 / sum_w2 * windowed_rfft(g(phase), window)[band] for g in (np.cos, np.sin)]

    def residuals(p):
        cos_b, sin_b = model(p[0])
        out = []
        for i, d in enumerate(data):
            r = d - (p[1 + 2 * i] * cos_b + p[2 + 2 * i] * sin_b)
            out += [r.real, r.imag]
        return np.concatenate(out)

    # start from the linear solution at the true-ish offset; the optimiser does the rest
    start = np.array([0.0, 1.0, 1.0, 1.0, 1.0])
    fit = least_squares(
        residuals, start, jac="3-point", x_scale="jac", xtol=1e-15, ftol=1e-15, gtol=1e-15
    )
    cov = np.linalg.inv(fit.jac.T @ fit.jac)
    return fit.x, np.sqrt(np.diag(cov)), 2 * fit.cost


@pytest.mark.parametrize(("offset_bins", "snr"), [(0.31, 12.0), (-0.44, 40.0)])
def test_fit_matches_general_least_squares(offset_bins: float, snr: float) -> None:
    rng = np.random.default_rng(7)
    s = 1e-40
    k = 612
    f = (k + offset_bins) / T
    t = np.arange(N) * DT
    sigma = math.sqrt(s / (2 * DT))
    amp = snr * math.sqrt(s / T)
    a = amp * np.cos(2 * np.pi * f * t + 0.4) + sigma * rng.standard_normal(N)
    e = 0.7 * amp * np.cos(2 * np.pi * f * t - 2.2) + sigma * rng.standard_normal(N)
    mask = np.ones(N, dtype=bool)
    mask[4000:4500] = False
    f0 = k / T
    p_ref, sigma_ref, chi2_ref = _reference_fit(a, e, mask, f0, (s, s))
    fit = fit_sinusoid(a, e, DT, f0, s, s, mask=mask)
    # the same optimum, far inside its uncertainty, and the same Fisher errors
    assert abs((fit.frequency - (f0 + p_ref[0] / T)) * T) < 1e-5 * sigma_ref[0]
    # (the reference's Jacobian is by central differences: ~1e-7 relative)
    assert fit.sigma_frequency * T == pytest.approx(sigma_ref[0], rel=1e-5)
    assert fit.chi2 == pytest.approx(chi2_ref, rel=1e-9)
    u = math.sqrt(s / (DT * np.sum(search_window(mask, DT) ** 2)))
    for i, amplitude in enumerate((fit.amplitude_a, fit.amplitude_e)):
        c, s_ = p_ref[1 + 2 * i], p_ref[2 + 2 * i]
        assert amplitude == pytest.approx(u * math.hypot(c, s_), rel=1e-7)
    assert fit.phase_a == pytest.approx(math.atan2(-p_ref[2], p_ref[1]), abs=1e-7)
    assert fit.phase_e == pytest.approx(math.atan2(-p_ref[4], p_ref[3]), abs=1e-7)


def test_one_fitter_serves_every_candidate_of_a_segment() -> None:
    rng = np.random.default_rng(11)
    s = 1e-40
    t = np.arange(N) * DT
    sigma = math.sqrt(s / (2 * DT))
    lines = ((300.2 / T, 15.0), (1700.7 / T, 25.0))
    a = sigma * rng.standard_normal(N)
    e = sigma * rng.standard_normal(N)
    for f, snr in lines:
        a += snr * math.sqrt(s / T) * np.cos(2 * np.pi * f * t + 1.0)
        e += snr * math.sqrt(s / T) * np.cos(2 * np.pi * f * t - 1.0)
    fitter = SinusoidFitter(a, e, DT)
    for f, _ in lines:
        f0 = round(2 * f * T) / 2 / T
        shared = fitter.fit(f0, s, s)
        alone = fit_sinusoid(a, e, DT, f0, s, s)
        assert shared == alone
        assert abs(shared.frequency - f) < 4 * shared.sigma_frequency
