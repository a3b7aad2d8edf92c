"""False-alarm probability of the maximum of a chi-square statistic over a zero-padded grid.

The search takes the maximum of the A+E statistic over a grid zero-padded by ``pad`` (2 by
default), so it looks at ``pad`` times more bins than there are independent Fourier frequencies,
and neighbouring grid bins are correlated. Neither count is right: Bonferroni over the unpadded
bins misses the extra chances between them (measured: 1.77 % false alarms at a nominal 1 %),
Bonferroni over every grid bin counts each excursion about twice. What is exact is the expected
number of excursions (runs of bins above a level ``u``, which is what a candidate is): along a
stationary grid it is the number of bins times the probability that a bin is above ``u`` while
its lower neighbour is not,

    E[runs] = n_grid * (P(X_k > u) - P(X_{k-1} > u, X_k > u)),

and for rare excursions the number of runs is Poisson (Aldous 1989, "Probability Approximations
via the Poisson Clumping Heuristic"), so FAP = 1 - exp(-E[runs]).

The pair (X_{k-1}, X_k) is known in closed form. Each channel's windowed DFT at two frequencies
a 1/pad bin apart are circular complex Gaussians with correlation
rho = sum w^2 exp(-2 pi i n / (pad N)) / sum w^2 (the window's own spectrum), so their powers
are Kibble's bivariate gamma with correlation r = |rho|^2 (Kibble 1941; Krishnamoorthy &
Parthasarathy 1951): shape 1 per channel, 2 for A+E, 2N for a stack of N segments (a sum of
independent Kibble pairs with one r is Kibble again). Its joint survival is the negative-binomial
mixture

    P(X > u, Y > u) = sum_j NB(j; a, r) Q(a + j, u / (2 (1 - r)))^2,  a = dof / 2,

with Q the regularised upper incomplete gamma function (in chi-square units, X = 2 Gamma(a)). A
Tukey(0.1) window padded by 2 gives r = 0.456; with r = 0 everything reduces to independent
bins. The unit tests check the formula against simulated windowed white noise and the whole
per-segment search against coloured TDI noise with binomial bounds.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special, stats
from scipy.signal import windows

BONFERRONI_CUTOFF = 10.0
"""Where n_trials * P(X > u) exceeds this, the FAP is reported as 1 (the true value is then above
1 - exp(-10 (1 - r)) > 0.99 for any r below 0.5), which saves computing the mixture on noise."""


def adjacent_coherence(window: ArrayLike, pad_factor: int) -> float:
    """r = |rho|^2 between the powers of two grid bins 1/pad of a Fourier bin apart."""
    w2 = np.asarray(window, dtype=np.float64) ** 2
    n = w2.size
    if n < 2 or not np.any(w2 > 0):
        raise ValueError("the window needs at least two samples and one non-zero weight")
    if int(pad_factor) < 1:
        raise ValueError(f"pad_factor must be >= 1, got {pad_factor}")
    cos, sin = _half_bin_phase(n, int(pad_factor))
    # einsum, not np.dot: a BLAS dot this long wakes OpenBLAS's thread pool, whose spinning
    # threads then doubled the CPU time of every step of the process (bench in_process)
    re, im = np.einsum("i,i->", w2, cos), np.einsum("i,i->", w2, sin)
    return float((re**2 + im**2) / np.sum(w2) ** 2)


@functools.lru_cache(maxsize=8)
def _half_bin_phase(n: int, pad_factor: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """cos and sin of 2 pi k / (pad N), k < N: the same for every segment of a length, so made
    once (the search asks for the coherence of every segment's window)."""
    angle = 2 * np.pi * np.arange(n) / (pad_factor * n)
    cos, sin = np.cos(angle), np.sin(angle)
    cos.flags.writeable = sin.flags.writeable = False
    return cos, sin


@functools.lru_cache(maxsize=32)
def nominal_coherence(pad_factor: int, tukey_alpha: float = 0.1) -> float:
    """:func:`adjacent_coherence` of the gap-free Tukey search window (2^17 samples: the value
    converges as 1/N as the window grows; a one-day segment at 5 s differs by 4e-5)."""
    return adjacent_coherence(windows.tukey(2**17, tukey_alpha), pad_factor)


def joint_sf(u: ArrayLike, dof: ArrayLike, coherence: float) -> NDArray[np.float64]:
    """P(X > u, Y > u) for two chi-square(dof) variables of Kibble's bivariate law with
    correlation ``coherence`` (see the module docstring); vectorised over u and dof."""
    u, dof = np.broadcast_arrays(np.asarray(u, np.float64), np.asarray(dof, np.float64))
    r = float(coherence)
    if not 0.0 <= r < 1.0:
        raise ValueError(f"coherence must be in [0, 1), got {r}")
    if r == 0.0:
        return special.chdtrc(dof, u) ** 2
    a = dof / 2.0
    mean = a * r / (1 - r)
    sd = np.sqrt(a * r) / (1 - r)
    # the negative binomial's mass lies within 12 sd of its mean (the rest is < 1e-30)
    first = max(int(np.min(mean - 12 * sd)) - 40, 0) if a.size else 0
    last = int(np.max(mean + 12 * sd)) + 40 if a.size else 1
    j = np.arange(first, last, dtype=np.float64)
    shape = a[..., None] + j
    log_gamma_shape = special.gammaln(shape)
    log_nb = (
        log_gamma_shape
        - special.gammaln(a[..., None])
        - special.gammaln(j + 1.0)
        + a[..., None] * math.log1p(-r)
        + j * math.log(r)
    )
    q = _upper_gamma_ladder(shape, log_gamma_shape, (u / (2 * (1 - r)))[..., None])
    return np.sum(np.exp(log_nb) * q**2, axis=-1)


def _upper_gamma_ladder(
    shape: NDArray[np.float64], log_gamma_shape: NDArray[np.float64], x: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Q(shape, x) along the last axis, whose shapes step by 1: one incomplete gamma at the
    first, then Q(s + 1, x) = Q(s, x) + x^s e^-x / Gamma(s + 1) (positive terms added: stable).
    One special-function call per row instead of one per term: the catalogue's FAP sums
    ~24 sqrt(2N r) / (1 - r) terms per bin, N the stacked segments, at every segment."""
    with np.errstate(divide="ignore"):  # x = 0: log 0 = -inf, every term 0, Q = 1 throughout
        log_x = np.log(x)
    first = special.gammaincc(shape[..., :1], x)
    # x^s e^-x / Gamma(s + 1), with log Gamma(s + 1) = log Gamma(s) + log s
    log_terms = shape[..., :-1] * log_x - x - (log_gamma_shape[..., :-1] + np.log(shape[..., :-1]))
    steps = np.cumsum(np.exp(log_terms), axis=-1)
    return np.minimum(np.concatenate([first, first + steps], axis=-1), 1.0)


def grid_fap(
    u: ArrayLike, dof: ArrayLike, n_trials: int, coherence: float = 0.0
) -> NDArray[np.float64]:
    """FAP of a maximum >= u over ``n_trials`` grid bins whose neighbours have ``coherence``:
    1 - exp(-n_trials (P(X > u) - P(X_{k-1} > u, X_k > u))), vectorised; NaN stays NaN."""
    u, dof = np.broadcast_arrays(np.asarray(u, np.float64), np.asarray(dof, np.float64))
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    out = np.where(np.isnan(u), np.nan, 1.0)
    finite = np.isfinite(u)
    # n_trials chi2.sf(u) < cutoff  <=>  u > chi2.isf(cutoff / n_trials): one isf per distinct
    # dof (a stack has few) instead of a tail probability per bin, most of which are noise
    levels, where = np.unique(dof[finite], return_inverse=True)
    cutoff = special.chdtri(levels, min(BONFERRONI_CUTOFF / n_trials, 1.0))
    exact = np.zeros(u.shape, dtype=bool)
    exact[finite] = u[finite] > cutoff[where]
    if exact.any():
        rate = special.chdtrc(dof[exact], u[exact]) - joint_sf(u[exact], dof[exact], coherence)
        out[exact] = -np.expm1(-n_trials * np.maximum(rate, 0.0))
    return out


@functools.lru_cache(maxsize=256)
def grid_threshold(fap: float, dof: float, n_trials: int, coherence: float = 0.0) -> float:
    """The level u with :func:`grid_fap` (u) = ``fap``: the search threshold. Cached: a pure
    function of its arguments, and segments without gaps share one window, so one coherence
    (the root search costs ~13 mixture evaluations)."""
    if not 0 < fap < 1:
        raise ValueError(f"fap must be in (0, 1), got {fap}")
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    # Bonferroni over the grid bins is a conservative (high) level; a tenth of them, a low one
    # (runs start at a tenth of the exceedances only if neighbours were 90 % coherent).
    hi = float(stats.chi2.isf(-math.log1p(-fap) / n_trials / 2, dof)) + 1.0
    lo = float(stats.chi2.isf(min(-10 * math.log1p(-fap) / n_trials, 0.5), dof))

    def excess(u: float) -> float:
        return math.log(float(grid_fap(u, dof, n_trials, coherence)) / fap)

    return float(optimize.brentq(excess, lo, hi, xtol=1e-10))
