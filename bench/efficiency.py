"""Detection efficiency against SNR, with and without the Galactic foreground: the README's plot.

``python -m bench.efficiency --out docs/img/detection_efficiency.png`` (about 10 minutes on one
core). Two panels:

- one-day search: days of noise (SciRD, or SciRD + the half-year RCL foreground) each with one
  sinusoid of optimal A+E SNR rho against the TOTAL noise, at a log-uniform random frequency in
  0.5-15 mHz (a third of them in the foreground band) and random phase; the condition step's
  noise model (``lisa_science.foreground.fit_noise_model``), the search statistic and the
  per-segment threshold at FAP 1 % (``grid_search_threshold``), as the services call them. A
  detection is a candidate within one Fourier bin of the injection. Expected: the non-central
  chi2_4 tail above the threshold with non-centrality rho^2 times the window's efficiency
  (0.963 for Tukey 0.1) and the scalloping of a line uniformly placed between grid bins;
- 30-day catalogue: 30-day data sets with 24 injections each (SNRs over 30 days on a grid),
  run through the handlers and the catalogue core (``bench.science.run_chain``); a detection is
  a promoted source within one daily bin.

If the noise model follows the foreground, the curves with and without it coincide: SNR against
the total noise is all that matters.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats
from scipy.signal import windows

from bench.science import DAY, DT, N_DAY, Injection, run_chain, write_dataset

DAILY_SNRS = np.arange(3.0, 11.5, 1.0)
CATALOGUE_SNRS = np.arange(7.0, 19.0, 1.0)
FAP = 0.01


def expected_daily(snrs: np.ndarray, threshold: float, dof: int = 4) -> np.ndarray:
    """P(ncx2_dof(rho^2 L) > threshold) averaged over a line's offset from the nearest grid bin
    (uniform in +-0.25 Fourier bins at pad 2); L = (sum w)^2 / (N sum w^2) |W(d)|^2/|W(0)|^2."""
    w = windows.tukey(4096, 0.1)
    efficiency = np.sum(w) ** 2 / (w.size * np.sum(w**2))
    d = np.linspace(0.0, 0.25, 26)
    spec = np.abs(np.exp(-2j * np.pi * np.outer(d, np.arange(w.size)) / w.size) @ w) ** 2
    loss = efficiency * spec / spec[0]
    return np.array(
        [np.mean(stats.ncx2.sf(threshold, dof, rho**2 * loss)) for rho in snrs], dtype=float
    )


def daily_efficiency(
    years: float | None, trials: int, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    from lisa_science.foreground import fit_noise_model, total_tdi_psd
    from lisa_science.psd import welch_psd
    from lisa_science.search import find_candidates, grid_search_threshold, search_statistic
    from lisa_science.simulate import coloured_noise

    rng = np.random.default_rng(seed)
    t = np.arange(N_DAY) * DT
    found = np.zeros(DAILY_SNRS.size)
    threshold = math.nan
    for i, rho in enumerate(DAILY_SNRS):
        for _ in range(trials):
            a, e = (
                coloured_noise(2 * N_DAY, DT, lambda f, c=c: total_tdi_psd(f, c, years), rng)[
                    N_DAY // 2 : N_DAY // 2 + N_DAY
                ]
                for c in ("A", "E")
            )
            f0 = math.exp(rng.uniform(math.log(5e-4), math.log(1.5e-2)))
            phase = rng.uniform(0, 2 * math.pi)
            for series, c, shift in ((a, "A", 0.0), (e, "E", math.pi / 2)):
                h = rho / math.sqrt(2) * math.sqrt(float(total_tdi_psd(f0, c, years)) / DAY)
                series += h * np.cos(2 * math.pi * f0 * t + phase + shift)
            f, p_a = welch_psd(a, DT)
            _, p_e = welch_psd(e, DT)
            fit = fit_noise_model(f, p_a, p_e, 0.5)
            fs, stat = search_statistic(a, e, DT, f, fit.psd(f, "A"), fit.psd(f, "E"))
            band = (fs >= 1e-4) & (fs <= 2e-2)
            fs, stat = fs[band], stat[band]
            threshold, coherence = grid_search_threshold(FAP, int(fs.size))
            cands = find_candidates(fs, stat, threshold, n_bins=int(fs.size), coherence=coherence)
            found[i] += any(abs(c.frequency - f0) <= 1 / DAY for c in cands)
    return DAILY_SNRS, found / trials, threshold


def catalogue_efficiency(years: float | None, datasets: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hits = np.zeros(CATALOGUE_SNRS.size)
    totals = np.zeros(CATALOGUE_SNRS.size)
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(datasets):
            # 24 lines log-spaced over 0.5-15 mHz (>= 25 daily bins apart), SNRs shuffled
            freqs = np.geomspace(5e-4, 1.5e-2, 24) * np.exp(rng.uniform(-0.02, 0.02, 24))
            snr_index = rng.permutation(np.resize(np.arange(CATALOGUE_SNRS.size), 24))
            injections = [
                Injection(float(f), float(CATALOGUE_SNRS[k]), float(rng.uniform(0, 2 * math.pi)))
                for f, k in zip(freqs, snr_index, strict=True)
            ]
            path = write_dataset(Path(tmp) / f"d{n}.h5", 30, injections, years, seed + n)
            sources, _ = run_chain(path, (Path(tmp) / f"store{n}").as_uri(), 0.5)
            promoted = [s.frequency_hz for s in sources if s.status == "promoted"]
            for inj, k in zip(injections, snr_index, strict=True):
                totals[k] += 1
                hits[k] += any(abs(p - inj.frequency_hz) <= 1 / DAY for p in promoted)
            path.unlink()
    return hits / np.maximum(totals, 1)


def main(argv: list[str] | None = None) -> int:
    from matplotlib.figure import Figure

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img/detection_efficiency.png"))
    parser.add_argument("--trials", type=int, default=200, help="one-day trials per SNR")
    parser.add_argument("--datasets", type=int, default=8, help="30-day data sets per curve")
    args = parser.parse_args(argv)

    fig = Figure(figsize=(10, 4.2), dpi=110)
    ax1, ax2 = fig.subplots(1, 2)
    for years, label, colour, seed in (
        (None, "SciRD", "tab:blue", 1),
        (0.5, "SciRD + foreground", "tab:red", 2),
    ):
        snrs, eff, threshold = daily_efficiency(years, args.trials, seed)
        err = np.sqrt(eff * (1 - eff) / args.trials)
        ax1.errorbar(
            snrs, eff, err, marker="o", ms=4, capsize=2, ls="none", color=colour, label=label
        )
        print(label, "daily", dict(zip(snrs.tolist(), eff.tolist(), strict=True)), flush=True)
        cat = catalogue_efficiency(years, args.datasets, 100 * seed)
        n = args.datasets * 24 / CATALOGUE_SNRS.size
        ax2.errorbar(
            CATALOGUE_SNRS,
            cat,
            np.sqrt(cat * (1 - cat) / n),
            marker="o",
            ms=4,
            capsize=2,
            ls="none",
            color=colour,
            label=label,
        )
        print(
            label,
            "catalogue",
            dict(zip(CATALOGUE_SNRS.tolist(), cat.tolist(), strict=True)),
            flush=True,
        )
    fine = np.linspace(DAILY_SNRS[0], DAILY_SNRS[-1], 100)
    ax1.plot(fine, expected_daily(fine, threshold), color="k", lw=1, label="expected (ncx2_4)")
    from lisa_science.cataloguing import grid_trials
    from lisa_science.significance import grid_threshold

    n_trials, coherence = grid_trials(3439, 1720)  # the daily grid of 0.1-20 mHz
    stacked = grid_threshold(1e-3, 4 * 30, n_trials, coherence)
    fine = np.linspace(CATALOGUE_SNRS[0], CATALOGUE_SNRS[-1], 100)
    ax2.plot(fine, expected_daily(fine, stacked, 120), color="k", lw=1, label="expected (ncx2_120)")
    ax1.set(
        xlabel="one-day optimal SNR against the total noise",
        ylabel="fraction detected",
        title=f"one-day search, FAP {FAP:g}",
    )
    ax2.set(
        xlabel="30-day optimal SNR against the total noise",
        title="30-day catalogue (promoted), FAP 1e-3",
    )
    for ax in (ax1, ax2):
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
