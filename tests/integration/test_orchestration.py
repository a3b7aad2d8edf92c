"""The orchestrated mode (``lisa-choreo orchestrate``, Temporal) against the choreography, on the
same file: the same catalogue, also after a worker SIGKILL and after a Temporal server SIGKILL.

The file is made here: four days of analytic SciRD noise with one strong sinusoid in X. The
choreography's catalogue is ``lisa-choreo process FILE``'s ``catalog.csv``; the orchestrated one
is ``lisa-choreo orchestrate FILE --csv``'s stdout. Both must hold the same sources (frequency
bins), with stacked statistics and SNRs equal to 1e-9 relative (the sums may be added in another
order) and every segment counted once. Source ids are labels given at promotion, in arrival
order, so they are not compared (as in ``test_reliability``).

The Temporal dev server runs on a free port with its database under ``$LISA_CHOREO_HOME/stack``;
its binary is the stack's (``$LISA_CHOREO_HOME/temporal/bin``, built once with ``go install``:
2-5 min the first time, then cached).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from lisa_science.ldc import TDIData, write_ldc
from lisa_science.noise import tdi_psd
from lisa_science.simulate import analytic_tdi_noise
from tests.conftest import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DAY = 86_400.0
DT = 5.0
DAYS = 4
F_INJECTED = 3.1e-3
SNR_PER_DAY = 12.0
ORCHESTRATE = (sys.executable, "-m", "lisa_choreo.cli", "orchestrate")
DELAY_S = "1.0"  # each activity pauses this long at its end: a window for the faults to hit


@pytest.fixture(scope="module")
def server(temporal_server):
    return temporal_server


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    n = round(DAYS * DAY / DT)
    x, y, z = analytic_tdi_noise(n, DT, np.random.default_rng(2026))
    amplitude = SNR_PER_DAY * np.sqrt(float(tdi_psd(F_INJECTED, "X")) / DAY)
    x = x + amplitude * np.sin(2 * np.pi * F_INJECTED * np.arange(n) * DT + 0.4)
    path = tmp_path_factory.mktemp("orchestration") / "four-days.h5"
    write_ldc(str(path), TDIData(t0=0.0, dt=DT, x=x, y=y, z=z))
    return path


def cli(*args: str, env: dict[str, str] | None = None, timeout_s: float = 600):
    full = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full.pop("LISA_KAFKA_TOPIC_PREFIX", None)
    return subprocess.run(
        [sys.executable, "-m", "lisa_choreo.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=full,
        check=False,
    )


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def choreography(kafka, data_file: Path, tmp_path_factory) -> list[dict[str, str]]:
    """The choreography's catalogue of the file: ``lisa-choreo process``'s catalog.csv."""
    out = tmp_path_factory.mktemp("process")
    done = cli("process", str(data_file), "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return rows((out / "products" / "catalog.csv").read_text())


def assert_same_catalogue(got: list[dict[str, str]], expected: list[dict[str, str]]) -> None:
    g = {int(r["frequency_bin"]): r for r in got}
    e = {int(r["frequency_bin"]): r for r in expected}
    assert g.keys() == e.keys(), (sorted(g), sorted(e))
    for b, ref in e.items():
        assert float(g[b]["stacked_statistic"]) == pytest.approx(
            float(ref["stacked_statistic"]), rel=1e-9
        ), b
        assert float(g[b]["stacked_snr"]) == pytest.approx(float(ref["stacked_snr"]), rel=1e-9)
        assert float(g[b]["frequency_hz"]) == pytest.approx(float(ref["frequency_hz"]), rel=1e-9)
        assert int(g[b]["n_segments"]) == int(ref["n_segments"]) == DAYS  # each counted once
        assert int(g[b]["n_estimates"]) == int(ref["n_estimates"])


def orchestrated(server, *args: str, env: dict[str, str] | None = None):
    return cli("orchestrate", *args, env={"LISA_TEMPORAL_ADDRESS": server.address, **(env or {})})


def log_records(path: Path) -> list[dict]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.startswith("{")]


def in_flight(path: Path) -> list[tuple]:
    """Activities this worker's log shows started and not (yet) completed."""
    started, finished = set(), set()
    for r in log_records(path):
        key = (r.get("step"), r.get("segment_id"), r.get("attempt"))
        if r.get("event") == "activity started":
            started.add(key)
        elif r.get("event") in ("activity completed", "activity failed"):
            finished.add(key)
    return sorted(started - finished, key=str)


def test_orchestrated_catalogue_equals_the_choreography(server, data_file, choreography):
    done = orchestrated(server, str(data_file), "--csv")
    assert done.returncode == 0, done.stderr[-3000:]
    got = rows(done.stdout)  # stdout holds the CSV only
    assert_same_catalogue(got, choreography)
    bin_hz = 1 / DAY
    assert any(abs(float(r["frequency_hz"]) - F_INJECTED) <= bin_hz for r in got), got
    # and the table form is `lisa-choreo catalog`'s
    table = orchestrated(server, str(data_file))
    assert table.returncode == 0, table.stderr[-3000:]
    assert table.stdout.splitlines()[0].split()[:3] == ["source", "f", "(Hz)"]
    assert table.stdout.strip().endswith(f"{len(got)} source(s)")


def test_worker_sigkill_mid_run_ends_with_the_right_catalogue(
    server, data_file, choreography, tmp_path
):
    from lisa_choreo.processes import ServiceProcess

    env = {
        "LISA_TEMPORAL_ADDRESS": server.address,
        "LISA_TEMPORAL_TASK_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
        "LISA_STORE_URI": (tmp_path / "store").as_uri(),
        "LISA_TEMPORAL_ACTIVITY_DELAY_S": DELAY_S,
        "OTEL_TRACES_EXPORTER": "none",
    }
    workers = [
        ServiceProcess(f"w{i}", tmp_path / f"w{i}.log", env, "lisa_choreo.orchestration.worker")
        for i in range(2)
    ]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.wait_ready(120)
        run = subprocess.Popen(
            [*ORCHESTRATE, str(data_file), "--csv", "--workers", "0", "--out", str(tmp_path)],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        victim = wait_until(
            lambda: next((w for w in workers if in_flight(w.log_path)), None),
            120,
            "a worker with an activity in flight",
        )
        killed = in_flight(victim.log_path)
        victim.kill()  # SIGKILL
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
        assert_same_catalogue(rows(out), choreography)
        # what the victim was running was run again by the survivor, as a new attempt
        survivor = next(w for w in workers if w is not victim)
        retried = {
            (r["step"], r["segment_id"])
            for r in log_records(survivor.log_path)
            if r.get("event") == "activity completed" and r.get("attempt", 1) >= 2
        }
        assert {(step, seg) for step, seg, _ in killed} <= retried, (killed, retried)
    finally:
        for w in workers:
            w.kill()


def test_server_sigkill_then_restart_ends_with_the_right_catalogue(
    server, data_file, choreography, tmp_path
):
    from lisa_choreo.localstack import temporal

    out_dir = tmp_path / "run"
    run = subprocess.Popen(
        [*ORCHESTRATE, str(data_file), "--csv", "--out", str(out_dir)],
        env={
            **os.environ,
            "LISA_TEMPORAL_ADDRESS": server.address,
            "LISA_TEMPORAL_ACTIVITY_DELAY_S": DELAY_S,
            "OTEL_TRACES_EXPORTER": "none",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def completed() -> int:
        return sum(
            r.get("event") == "activity completed"
            for log in (out_dir / "logs").glob("worker-*.log")
            for r in log_records(log)
        )

    wait_until(lambda: completed() >= 2, 120, "two activities completed")
    assert temporal.kill(server) is not None  # SIGKILL: history only in its SQLite file
    time.sleep(2.0)
    temporal.up(server)  # the same database
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-3000:]
    assert_same_catalogue(rows(out), choreography)
    record = json.loads((out_dir / "run.json").read_text())
    assert record["outcome"]["failed"] == 0
    assert set(record["outcome"]["worker_exit_codes"].values()) == {0}
