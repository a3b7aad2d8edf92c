"""The demo: ``simulate`` then the main job (``lisa_choreo.mainjob``, what ``lisa-choreo process``
runs on the user's files), then the catalogue beside the injected truth.

Sections: 1. the stack up, 2. a dataset simulated with the verification binaries, 3. every
service as its own process, 4. the file ingested and progress followed until the catalogue
settles, 5. the catalogue and the comparison with the injected truth, 6. dead letters, 7. where
the products, pictures, logs and traces are. Each run gets its own topic prefix (``demo-<id>.``),
store and products, so runs never mix.
"""

from __future__ import annotations

import csv
import math
import time
from importlib import resources

from choreo.settings import KafkaSettings
from lisa_choreo import mainjob
from lisa_choreo.simfile import DAY
from lisa_science.ldc import read_truth


def reference_snr() -> dict[str, dict[str, float]]:
    """Optimal SNRs of the verification binaries (shared reference table, not our output)."""
    text = resources.files("lisa_science.data").joinpath("verification_snr_scird.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["name"]: {k: float(v) for k, v in r.items() if k != "name"} for r in rows}


def main(days: int = 30, seed: int = 1, stall_s: float = 600.0) -> int:
    from lisa_choreo.commands.simulate import quiet_simulators, simulate_with_progress

    say = mainjob.Sections()
    kafka = KafkaSettings()
    say(f"stack up: Kafka on {kafka.bootstrap_servers}, Zipkin for traces")
    zipkin = mainjob.stack_up(kafka)
    run = mainjob.Run.new("demo")
    run.zipkin_url = zipkin.url if zipkin else None
    run.segment_s = DAY
    dataset = run.run_dir / f"lisa-vb-{days}d.h5"
    say(f"simulating {days} days at dt = 5 s with the 16 verification binaries ...")
    t0 = time.monotonic()
    quiet_simulators()
    simulate_with_progress(dataset, days * DAY, 5.0, "analytic", "verification", seed)
    mainjob.Sections.line(
        f"{dataset} ({dataset.stat().st_size / 1e6:.0f} MB, {time.monotonic() - t0:.0f} s)"
    )
    truth = read_truth(str(dataset))
    run.truth_hz = [float(s["f"]) for s in truth]
    plans = mainjob.check_files([dataset], DAY)
    result = mainjob.execute(run, plans, say, stall_s)
    mainjob.print_catalogue(result, say)
    print("   beside the injected truth (30-day optimal SNR from the reference table):")
    _compare(result.catalogue, truth, days)
    mainjob.print_outcome(result, say)
    return result.exit_code


def _compare(catalogue: list, truth: list[dict], days: int) -> None:
    ref = reference_snr()

    def expected(f_hz: float) -> float | None:
        """The reference table names sources briefly: match them by frequency."""
        for row in ref.values():
            if abs(row["f_mHz"] * 1e-3 - f_hz) < 1e-6 and days == 30:
                return row["snr_30d"]
        return None

    bin_hz = 1 / DAY
    print(
        f"   {'injected':<26} {'f (mHz)':>8} {'found':>11} {'df (bins)':>10} {'SNR':>6} "
        f"{'expected':>9}"
    )
    for src in sorted(truth, key=lambda s: -(expected(s["f"]) or 0)):
        match = min(catalogue, key=lambda c: abs(c.frequency_hz - src["f"]), default=None)
        found = match is not None and abs(match.frequency_hz - src["f"]) <= bin_hz
        want = expected(src["f"])
        print(
            f"   {src['name'][:26]:<26} {src['f'] * 1e3:8.4f} "
            f"{(match.source_id if found else '-'):>11} "
            f"{((match.frequency_hz - src['f']) / bin_hz if found else float('nan')):10.2f} "
            f"{(match.stacked_snr if found else float('nan')):6.1f} "
            f"{(f'{want:.1f}' if want else '-'):>9}"
        )
    extra = [c for c in catalogue if all(abs(c.frequency_hz - s["f"]) > bin_hz for s in truth)]
    print(f"   catalogued sources not injected: {len(extra)}")
    _compare_refined(catalogue, truth, bin_hz)


def _compare_refined(catalogue: list, truth: list[dict], bin_hz: float) -> None:
    """The refined sky positions beside the injected (published) ones, in sigmas."""
    rows = []
    for src in truth:
        match = min(catalogue, key=lambda c: abs(c.frequency_hz - src["f"]), default=None)
        if match is None or abs(match.frequency_hz - src["f"]) > bin_hz:
            continue
        lat, lon = match.ecliptic_latitude_rad, match.ecliptic_longitude_rad
        if lat is None or lon is None or match.sigma_ecliptic_latitude_rad is None:
            continue
        true_lat, true_lon = src["ecliptic_latitude"], src["ecliptic_longitude"]
        d_lon = (lon - true_lon + math.pi) % (2 * math.pi) - math.pi
        pull_lat = (lat - true_lat) / match.sigma_ecliptic_latitude_rad
        pull_lon = d_lon / (match.sigma_ecliptic_longitude_rad or math.inf)
        rows.append(
            f"   {src['name'][:26]:<26} {lat:7.3f} {true_lat:7.3f} {pull_lat:6.1f}"
            f" {lon:7.3f} {true_lon:7.3f} {pull_lon:6.1f}"
        )
    if rows:
        print("   refined sky position beside the injected one (ecliptic, rad; pull in sigma):")
        print(
            f"   {'injected':<26} {'lat':>7} {'true':>7} {'pull':>6} {'lon':>7} {'true':>7} "
            f"{'pull':>6}"
        )
        print("\n".join(rows))
