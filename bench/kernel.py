"""Kernel efficiency: ``lisa_science.search.search_statistic`` on one day against numpy's FFT.

The search's irreducible work is one real FFT per channel (A and E) at the zero-padded length
(``pad_factor`` x the day), so the floor is two ``numpy.fft.rfft`` calls of that size on the same
data; one rfft of the unpadded day is reported beside it. Kernel and floor are timed in alternation
(best of ``number`` calls per round, median ratio over rounds), so load on a shared machine hits
both alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from lisa_science.noise import tdi_psd
from lisa_science.psd import welch_psd
from lisa_science.search import search_statistic
from lisa_science.simulate import coloured_noise

PAD = 2  # gb-search's default (LISA_GBSEARCH_PAD_FACTOR)


def _best(fn: Callable[[], object], number: int) -> float:
    best = float("inf")
    for _ in range(number):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def run_kernel(n: int = 17_280, dt: float = 5.0, rounds: int = 15, number: int = 10) -> dict:
    rng = np.random.default_rng(0)
    a = coloured_noise(n, dt, lambda f: tdi_psd(f, "A", "2.0"), rng)
    e = coloured_noise(n, dt, lambda f: tdi_psd(f, "E", "2.0"), rng)
    f_psd, _ = welch_psd(a, dt)
    psd_a, psd_e = tdi_psd(f_psd, "A", "2.0"), tdi_psd(f_psd, "E", "2.0")
    mask = np.ones(n, dtype=bool)

    def kernel() -> object:
        return search_statistic(a, e, dt, f_psd, psd_a, psd_e, mask=mask, pad_factor=PAD)

    def floor() -> object:
        return np.fft.rfft(a, n=PAD * n), np.fft.rfft(e, n=PAD * n)

    def one_fft() -> object:
        return np.fft.rfft(a)

    for fn in (kernel, floor, one_fft):  # warm caches and pocketfft's plan
        fn()
    k_t, f_t, o_t, ratios = [], [], [], []
    for _ in range(rounds):
        k = _best(kernel, number)
        fl = _best(floor, number)
        o = _best(one_fft, number)
        k_t.append(k)
        f_t.append(fl)
        o_t.append(o)
        ratios.append(k / fl)
    return {
        "n_samples": n,
        "pad_factor": PAD,
        "kernel_ms": 1e3 * statistics.median(k_t),
        "floor_two_padded_rfft_ms": 1e3 * statistics.median(f_t),
        "one_rfft_of_the_day_ms": 1e3 * statistics.median(o_t),
        "ratio": statistics.median(ratios),
        "ratio_to_one_rfft": statistics.median(k / o for k, o in zip(k_t, o_t, strict=True)),
        "rounds": rounds,
    }


WELCH_S = 4 * 3600.0  # condition's default Welch segment (LISA_CONDITION_WELCH_SEGMENT_S)


def run_chain_floor(
    n: int = 17_280, dt: float = 5.0, rounds: int = 15, number: int = 10
) -> dict[str, float]:
    """The FFT work the whole chain cannot avoid on one daily segment, in ms, per step:

    - condition: one Welch estimate per TDI channel (A, E, T): an rfft of each of its
      half-overlapping 4-hour segments (11 of 2880 samples in a day);
    - gb-search: the search's two rffts (A, E) at the zero-padded length;
    - estimate: the data's spectrum once per channel (A, E): two rffts of the day (the fit of
      each candidate then works in a band of a few dozen bins).

    Timed as numpy computes them (best of ``number``, median over ``rounds``)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, n))
    per = round(WELCH_S / dt)
    starts = range(0, n - per + 1, per // 2)
    welch = np.stack([x[:, s : s + per] for s in starts], axis=1)  # (3, 11, 2880)
    parts: dict[str, Callable[[], object]] = {
        "condition": lambda: np.fft.rfft(welch, axis=-1),
        "gb-search": lambda: np.fft.rfft(x[:2], n=PAD * n, axis=-1),
        "estimate": lambda: np.fft.rfft(x[:2], axis=-1),
    }
    for fn in parts.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(rounds):
        for k, fn in parts.items():
            times[k].append(_best(fn, number))
    out = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    out["total"] = sum(out.values())
    out["welch_segments"] = len(starts)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run_kernel(), indent=1))
