"""``lisa-choreo simulate OUT``: an LDC-format file of TDI noise and Galactic binaries.

On a terminal a progress bar follows the work: the noise, then the injection of the sources day
by day, then the file (``lisa_choreo.simfile.simulate`` reports through a callback; the kernels
import no terminal library). Without a terminal (a pipe, the tests) it is one plain call.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import TaskID

DAY = 86_400.0


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
    p.add_argument(
        "--foreground",
        action="store_true",
        help="add the Galactic confusion foreground (Robson, Cornish & Liu 2019), stationary "
        "Gaussian, at its level for the simulated duration (at least the half-year one)",
    )
    p.add_argument(
        "--foreground-years",
        type=float,
        default=None,
        help="observation time whose foreground level to use instead (0.5, 1, 2, 4)",
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


def simulate_with_progress(
    out: Path,
    duration_s: float,
    dt: float = 5.0,
    noise: str = "analytic",
    sources: str = "verification",
    seed: int = 0,
    t0: float = 0.0,
    foreground: bool = False,
    foreground_years: float | None = None,
) -> Path:
    """``lisa_choreo.simfile.simulate`` with a progress bar on a terminal (stderr); the same
    single call when stderr is not a terminal."""
    from lisa_choreo.progress import task_bar
    from lisa_choreo.simfile import simulate

    bar = task_bar()
    extra = {"foreground": foreground, "foreground_years": foreground_years}
    if bar.disable:
        return simulate(out, duration_s, dt, noise, sources, seed, t0, **extra)
    tasks: dict[str, TaskID] = {}

    def report(stage: str, done: int, total: int | None) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        return simulate(out, duration_s, dt, noise, sources, seed, t0, progress=report, **extra)


def run(args: argparse.Namespace) -> int:
    from lisa_choreo.simfile import SimulationError

    quiet_simulators()
    try:
        out = simulate_with_progress(
            args.out,
            args.days * DAY,
            args.dt,
            args.noise,
            args.sources,
            args.seed,
            args.t0,
            foreground=args.foreground,
            foreground_years=args.foreground_years,
        )
    except SimulationError as exc:
        print(f"lisa-choreo: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
