"""``lisa-choreo run SERVICE``: one service in this process, until SIGTERM."""

from __future__ import annotations

import argparse
import os
import sys

BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def register(sub: argparse._SubParsersAction) -> None:
    from lisa_choreo.registry import SERVICE_MODULES

    p = sub.add_parser("run", help="run one service until SIGTERM")
    p.add_argument("service", help=", ".join(SERVICE_MODULES))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    limit_blas_threads()
    from lisa_choreo.registry import load_service

    return load_service(args.service).main()


def limit_blas_threads() -> None:
    """``LISA_BLAS_THREADS`` (default 1) BLAS threads for the service, set before numpy loads
    OpenBLAS (its pool is sized once, at load). A service handles one record at a time and
    scales by replicas, so a BLAS pool only spins beside it: measured, a day-long dot product
    woke OpenBLAS's threads and their spinning doubled a step's CPU. A value the operator set
    for a BLAS library itself wins."""
    if "numpy" in sys.modules:  # too late to size the pool (a caller imported numpy first)
        return
    threads = os.environ.get("LISA_BLAS_THREADS", "1")
    for name in BLAS_VARIABLES:
        os.environ.setdefault(name, threads)
