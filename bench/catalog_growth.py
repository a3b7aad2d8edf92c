"""The catalogue's cost as it grows: CPU per segment of its in-process path at 30 .. 3650 segments.

The full services run (``choreography_vs_in_process``) stops at 365 segments; ten years of daily
segments would take hours there. The catalogue is the only step whose per-segment work depends on
how many segments came before, so this row drives ``bench.inprocess.catalogue_step`` alone (the
same calls as the service: load the statistic from the claim-check store, stack, promote, compute
what changed, serialise the updates and the table value, rewrite the products when a source
changed) with a drawn statistic per segment (chi-square, 4 degrees of freedom per bin, plus three
loud bins: three sources, three estimates per segment), and reports the median CPU per segment
over a window at the start (after 5 warm-up segments) and at the end, and the process's RSS at
both. ``python -m bench.catalog_growth N`` runs it in a process of its own and prints JSON.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

N_BINS = 3440  # the bench datasets' statistic length (one day at dt = 5 s, the search band)
SOURCES = (500, 1500, 2500)
WARM_UP = 5


def _event(i: int, ref, f: np.ndarray):
    from lisa_pipeline.events import SegmentTiming, SourceEstimates

    estimates = [
        SimpleNamespace(
            frequency_hz=float(f[k]) + 1e-9 * (i % 7),
            sigma_frequency_hz=1e-8,
            amplitude_a=1e-21,
            amplitude_e=1.1e-21,
            snr=12.0,
        )
        for k in SOURCES
    ]
    return SourceEstimates.model_construct(
        timing=SegmentTiming(
            segment_id=f"{'ab' * 8}-{i:05d}", t0=86_400.0 * i, dt=5.0, n_samples=17_280
        ),
        statistic=ref,
        n_independent_bins=N_BINS,
        estimates=estimates,
    )


def run_growth(segments: int, window: int = 30, log=print) -> dict:
    """Median CPU ms per segment of the catalogue over the first and the last ``window``."""
    import psutil

    from bench.inprocess import Catalogue
    from choreo.store import Store
    from lisa_services.catalog.settings import CatalogSettings

    me = psutil.Process()
    rss_mib: dict[int, float] = {}
    rng = np.random.default_rng(20)
    with tempfile.TemporaryDirectory(prefix="catalog-growth-") as tmp:
        store = Store(f"file://{tmp}/store")
        f = 1e-4 + np.arange(N_BINS) / 86_400.0
        catalogue = Catalogue(store, CatalogSettings(), Path(tmp) / "products")
        cpu_ms: list[float] = []
        t0 = time.monotonic()
        for i in range(segments):
            stat = rng.chisquare(4, N_BINS)
            stat[list(SOURCES)] += 40.0
            ref = store.put({"f": f, "stat": stat})  # outside the timing: the estimate's put
            event = _event(i, ref, f)
            c = time.process_time()
            catalogue.add(event)
            cpu_ms.append(1e3 * (time.process_time() - c))
            if i + 1 in (WARM_UP + window, segments):
                rss_mib[i + 1] = me.memory_info().rss / 2**20
            if (i + 1) % 500 == 0:
                log(f"    catalogue growth: {i + 1} segments, {time.monotonic() - t0:.0f} s")
        # the first segments pay one-off costs (lazy imports, first HDF5 file): skipped
        first = float(np.median(cpu_ms[WARM_UP : WARM_UP + window]))
        last = float(np.median(cpu_ms[-window:]))
        return {
            "segments": segments,
            "window": window,
            "cpu_ms_first": first,
            "cpu_ms_last": last,
            "ratio": last / first,
            "sources": catalogue.sources(),
            "rss_mib_first": rss_mib.get(WARM_UP + window, float("nan")),
            "rss_mib_last": rss_mib[segments],
            "peak_rss_mib": max(rss_mib.values()),
            "cpu_ms": [round(v, 3) for v in cpu_ms],
        }


if __name__ == "__main__":
    import json
    import sys

    r = run_growth(
        int(sys.argv[1]) if len(sys.argv) > 1 else 365,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    print(json.dumps(r))
