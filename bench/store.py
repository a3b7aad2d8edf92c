"""Claim-check latency: put and get of one daily segment on ``file://`` and on the stack's S3
object store (SeaweedFS on loopback), in one process, as a service calls them.

    .venv/bin/python -m bench.store [--port 8333] [--repeat 50]

The object store is started on ``--port`` (built first if this home has none) unless it runs;
it is left running. Each repeat puts a new segment (three channels of 17 280 float64 samples,
the ingest's product: ~415 kB of HDF5), then gets it back (checked, hashed, decoded); the table
gives the median and 90th percentile of each, in milliseconds. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid

import numpy as np

from choreo.store import Store

SAMPLES = 17_280


def _measure(store: Store, repeat: int, rng: np.random.Generator) -> dict[str, list[float]]:
    puts, gets = [], []
    for _ in range(repeat):
        arrays = {name: rng.standard_normal(SAMPLES) for name in ("X", "Y", "Z")}
        t0 = time.perf_counter()
        ref = store.put(arrays, {"t0": 0.0, "dt": 5.0})
        t1 = time.perf_counter()
        store.get(ref)
        t2 = time.perf_counter()
        puts.append(1e3 * (t1 - t0))
        gets.append(1e3 * (t2 - t1))
    return {"put": puts, "get": gets, "bytes": [float(ref.size_bytes)]}


def _row(name: str, values: list[float]) -> str:
    q = statistics.quantiles(values, n=10)
    return f"{name:<22} {statistics.median(values):8.2f} {q[8]:8.2f}"


def main() -> int:
    import os

    from lisa_choreo.localstack import objectstore

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=objectstore.DEFAULT_PORT)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    server = objectstore.ObjectStoreServer(args.port)
    objectstore.up(server, say=print)
    os.environ.update(objectstore.service_env(server))
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "file://": _measure(Store(f"file://{tmp}"), args.repeat, rng),
            "s3:// (loopback)": _measure(
                Store(f"s3://{objectstore.DEFAULT_BUCKET}/bench-{uuid.uuid4().hex[:8]}"),
                args.repeat,
                rng,
            ),
        }
    print(f"one daily segment ({results['file://']['bytes'][0] / 1e3:.0f} kB), {args.repeat} x")
    print(f"{'':<22} {'p50 ms':>8} {'p90 ms':>8}")
    for backend, values in results.items():
        print(_row(f"put {backend}", values["put"]))
        print(_row(f"get {backend}", values["get"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
