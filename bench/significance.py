"""The README's significance numbers, reproducible: ``python -m bench.significance``.

- ``search``: false alarms of the one-day search over many noise days (coloured SciRD noise, true
  PSD), at nominal FAPs, with the zero-padded-grid threshold and with the former Bonferroni over
  the independent bins (4000 days: ~30 s);
- ``foreground``: the same with the condition step's noise model fitted per day, with and without
  the Galactic foreground (1500 days each: ~2 min);
- ``promotion``: runs of 30 noise segments decided after every segment as the catalogue does
  (re-evaluation), the fraction of runs whose catalogue holds a noise source at looks 1, 10 and
  30, against a catalogue that never demotes (2000 runs: ~3 min per FAP).

Each rate is printed with its 95 % Clopper-Pearson interval.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats
from scipy.signal import windows

DT = 5.0
N_DAY = 17280
LEVELS = (0.01, 0.05, 0.2)


def _rate(count: int, trials: int) -> str:
    ci = stats.binomtest(count, trials).proportion_ci(0.95, method="exact")
    return f"{count / trials:.4f} [{ci.low:.4f}, {ci.high:.4f}] ({count}/{trials})"


def search(days: int, seed: int = 7) -> None:
    from lisa_science.noise import tdi_psd
    from lisa_science.search import (
        false_alarm_threshold,
        grid_search_threshold,
        independent_bins,
        search_statistic,
    )
    from lisa_science.simulate import coloured_noise

    rng = np.random.default_rng(seed)
    f_psd = np.fft.rfftfreq(2 * N_DAY, DT)
    s_a, s_e = tdi_psd(f_psd, "A"), tdi_psd(f_psd, "E")
    maxima = []
    for start in range(0, days, 500):  # chunks of 500 days bound the memory
        n = min(500, days - start)
        a, e = (
            coloured_noise(N_DAY * n, DT, lambda f, c=c: tdi_psd(f, c), rng).reshape(n, N_DAY)
            for c in ("A", "E")
        )
        for d in range(n):
            f, stat = search_statistic(a[d], e[d], DT, f_psd, s_a, s_e)
            band = (f >= 1e-4) & (f <= 2e-2)
            maxima.append(np.max(stat[band]))
    maxima = np.array(maxima)
    n_grid, n_indep = int(band.sum()), independent_bins(N_DAY, DT, 1e-4, 2e-2)
    for fap in LEVELS:
        grid, _ = grid_search_threshold(fap, n_grid)
        former = false_alarm_threshold(fap, n_indep)
        print(
            f"search FAP {fap}: grid {_rate(int(np.sum(maxima > grid)), days)}; "
            f"former {_rate(int(np.sum(maxima > former)), days)}"
        )


def foreground(days: int, seed: int = 3) -> None:
    from lisa_science.foreground import fit_noise_model, total_tdi_psd
    from lisa_science.psd import welch_psd
    from lisa_science.search import grid_search_threshold, search_statistic
    from lisa_science.simulate import coloured_noise

    for years in (0.5, None):
        rng = np.random.default_rng(seed)
        maxima, amplitudes = [], []
        for start in range(0, days, 500):
            n = min(500, days - start)
            a, e = (
                coloured_noise(
                    N_DAY * n, DT, lambda f, c=c, y=years: total_tdi_psd(f, c, y), rng
                ).reshape(n, N_DAY)
                for c in ("A", "E")
            )
            for d in range(n):
                f, p_a = welch_psd(a[d], DT)
                _, p_e = welch_psd(e[d], DT)
                fit = fit_noise_model(f, p_a, p_e, 0.5)
                amplitudes.append(fit.amplitude)
                fs, stat = search_statistic(a[d], e[d], DT, f, fit.psd(f, "A"), fit.psd(f, "E"))
                band = (fs >= 1e-4) & (fs <= 2e-2)
                maxima.append(np.nanmax(stat[band]))
        maxima = np.array(maxima)
        label = "with foreground" if years else "without foreground"
        print(f"{label}: amplitude {np.mean(amplitudes):.4f} +- {np.std(amplitudes):.4f}")
        for fap in LEVELS:
            threshold, _ = grid_search_threshold(fap, int(band.sum()))
            print(f"  FAP {fap}: {_rate(int(np.sum(maxima > threshold)), days)}")


def promotion(runs: int, fap: float, seed: int = 99, looks: int = 30) -> None:
    from lisa_science.cataloguing import (
        grid_trials,
        promote,
        significant_bins,
        supported_sources,
    )

    n_samples, n_grid = 3520, 3440  # 1720 independent bins in the band, padded by 2
    w = windows.tukey(n_samples, 0.1)
    f = np.arange(n_grid) / (2 * 86_400.0)
    n_trials, coherence = grid_trials(n_grid, n_grid // 2)
    rng = np.random.default_rng(seed)
    held = dict.fromkeys((1, 10, looks), 0)
    sticky = 0
    for _ in range(runs):
        x = rng.standard_normal((looks, 2, n_samples))
        power = 2 * np.abs(np.fft.rfft(x * w, n=2 * n_samples, axis=-1)) ** 2 / np.sum(w**2)
        rows = power.sum(axis=1)[:, 40 : 40 + n_grid]
        total = np.zeros(n_grid)
        sources: dict[str, int] = {}
        ever = False
        for i, row in enumerate(rows, start=1):
            total = total + row
            count = np.full(n_grid, i)
            sources = promote(f, total, count, n_trials, fap, sources, coherence=coherence)
            significant = significant_bins(total, count, n_trials, fap, coherence=coherence)
            now = bool(supported_sources(sources, significant))
            ever |= now
            if i in held:
                held[i] += now
        sticky += ever
    for look, count in held.items():
        print(f"promotion FAP {fap}, look {look}: {_rate(count, runs)}")
    print(f"promotion FAP {fap}, never demoting: {_rate(sticky, runs)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="*", default=["search", "foreground", "promotion"])
    parser.add_argument("--days", type=int, default=4000, help="noise days of `search`")
    parser.add_argument("--fg-days", type=int, default=1500, help="noise days of `foreground`")
    parser.add_argument("--runs", type=int, default=2000, help="runs of `promotion`")
    args = parser.parse_args(argv)
    if "search" in args.what:
        search(args.days)
    if "foreground" in args.what:
        foreground(args.fg_days)
    if "promotion" in args.what:
        for fap in (0.01, 0.05):
            promotion(args.runs, fap)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
