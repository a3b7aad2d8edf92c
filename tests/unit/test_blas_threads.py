"""``lisa-choreo run`` sizes the BLAS pool of a service before numpy loads OpenBLAS."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# In a fresh interpreter: the limit (or not), numpy loaded, a product large enough for OpenBLAS
# to use its pool, then the threads of the process.
PROBE = """
import os, sys
if sys.argv[1] == "limited":
    from lisa_choreo.commands.run import limit_blas_threads
    limit_blas_threads()
import numpy as np
a = np.random.default_rng(0).random((400, 400))
a @ a
print(len(os.listdir("/proc/self/task")), os.environ.get("OPENBLAS_NUM_THREADS"))
"""


def _probe(mode: str, **env: str) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    return int(out[0]), out[1]


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_a_service_gets_one_blas_thread_and_an_operator_value_wins():
    threads, value = _probe("limited")
    assert value == "1"
    free, _ = _probe("free")
    if (os.cpu_count() or 1) >= 2:
        assert free > threads  # OpenBLAS would have started a pool: the limit is what stops it
    assert _probe("limited", LISA_BLAS_THREADS="2")[1] == "2"
    assert _probe("limited", OPENBLAS_NUM_THREADS="3")[1] == "3"  # set for OpenBLAS itself
