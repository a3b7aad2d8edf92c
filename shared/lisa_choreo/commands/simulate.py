"""``lisa-choreo simulate OUT``: an LDC-format file of TDI noise and Galactic binaries.

On a terminal a progress bar follows the work: the noise, then the injection of the sources day
by day, then the file. The kernels know nothing of it (``lisa_science`` imports no terminal
library): the injection is cut into spans here, at the command level, and each span is one call
of ``lisa_science.injection.inject_binaries``, which simulates every span with its own TDI
margins anyway, so the spans join seamlessly (to ~1e-10 of the signal: only the sampling of the
orbit file differs). Without a terminal (a pipe, the tests) ``lisa_choreo.simfile.simulate``
does the same in one call.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

DAY = 86_400.0
MIN_SPAN = 4096
"""Samples per injected span at least (below, the per-call set-up would dominate)."""
SIM_EXTRA = "pip install 'lisa-choreo[sim]'"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="write an LDC-format file of TDI noise and sources")
    p.add_argument("out", type=Path)
    p.add_argument("--days", type=float, default=1.0)
    p.add_argument("--dt", type=float, default=5.0, help="cadence in seconds (default 5)")
    p.add_argument("--noise", choices=["analytic", "instrument", "none"], default="analytic")
    p.add_argument(
        "--sources",
        default="verification",
        help="verification, none, or a catalogue CSV (see lisa_science.binaries)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--t0", type=float, default=0.0, help="start time (s; 0 = orbit phase 0)")
    p.set_defaults(func=run)


def quiet_simulators() -> None:
    """The simulators warn once per source and chunk about file versions: not the operator's
    news."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", module="lisaconstants")
    for name in ("lisaorbits", "lisagwresponse", "pytdi", "lisainstrument"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _noise(n: int, dt: float, noise: str, seed: int, t0: float):
    """The noise exactly as ``lisa_choreo.simfile.simulate`` draws it."""
    import numpy as np

    from lisa_choreo.simfile import SimulationError

    if noise == "analytic":
        from lisa_science.simulate import analytic_tdi_noise

        return analytic_tdi_noise(n, dt, np.random.default_rng(seed))
    if noise == "instrument":
        try:
            from lisa_science.instrument import instrument_tdi_noise
        except ImportError as exc:
            why = f"noise 'instrument' needs the sim extra ({SIM_EXTRA}): {exc}"
            raise SimulationError(why) from exc
        _, x, y, z = instrument_tdi_noise(n * dt, dt, seed, t0=t0)
        return x, y, z
    if noise == "none":
        return tuple(np.zeros(n) for _ in range(3))
    raise SimulationError(f"unknown noise {noise!r}: analytic, instrument or none")


def simulate_with_progress(
    out: Path,
    duration_s: float,
    dt: float = 5.0,
    noise: str = "analytic",
    sources: str = "verification",
    seed: int = 0,
    t0: float = 0.0,
) -> Path:
    """``lisa_choreo.simfile.simulate`` with a progress bar on a terminal (stderr); the same
    call when stderr is not a terminal."""
    import dataclasses

    import numpy as np

    from lisa_choreo.progress import task_bar
    from lisa_choreo.simfile import SimulationError, choose_sources, simulate
    from lisa_science.ldc import TDIData, write_ldc

    bar = task_bar()
    if bar.disable:
        return simulate(out, duration_s, dt, noise, sources, seed, t0)
    n = round(duration_s / dt)
    binaries = choose_sources(sources)
    with bar:
        task = bar.add_task(f"noise ({noise})", total=None)
        x, y, z = (np.array(c, dtype=np.float64) for c in _noise(n, dt, noise, seed, t0))
        bar.update(task, total=1, completed=1)
        if binaries:
            try:
                from lisa_science.injection import DEFAULT_CHUNK_SIZE, inject_binaries
            except ImportError as exc:
                why = f"injecting sources needs the sim extra ({SIM_EXTRA}): {exc}"
                raise SimulationError(why) from exc
            span = max(MIN_SPAN, min(DEFAULT_CHUNK_SIZE, math.ceil(n / 50), round(DAY / dt)))
            task = bar.add_task(f"injecting {len(binaries)} source(s)", total=n)
            for start in range(0, n, span):
                stop = min(n, start + span)
                sx, sy, sz = inject_binaries(binaries, t0 + start * dt, dt, stop - start)
                x[start:stop] += sx
                y[start:stop] += sy
                z[start:stop] += sz
                bar.advance(task, stop - start)
        task = bar.add_task(f"writing {out.name}", total=None)
        truth = [dataclasses.asdict(b) for b in binaries]
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        write_ldc(str(tmp), TDIData(t0=t0, dt=dt, x=x, y=y, z=z), truth=truth or None)
        tmp.replace(out)  # an inbox watcher never sees a half-written file
        bar.update(task, total=1, completed=1)
    return out


def run(args: argparse.Namespace) -> int:
    from lisa_choreo.simfile import SimulationError

    quiet_simulators()
    try:
        out = simulate_with_progress(
            args.out, args.days * DAY, args.dt, args.noise, args.sources, args.seed, args.t0
        )
    except SimulationError as exc:
        print(f"lisa-choreo: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
