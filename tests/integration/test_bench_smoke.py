"""The benchmark's smoke mode runs to its end on the real broker and writes its whole report.

Only that the benchmark works is checked here: its numbers are measurements of a shared machine,
reported by ``python -m bench.run`` with their targets, never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import SECTIONS

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_writes_every_section_table_and_plots(kafka, zipkin, tmp_path: Path):
    out = tmp_path / "results"
    env = {
        **os.environ,
        "LISA_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,  # the session's broker
        "LISA_ZIPKIN_URL": zipkin.url,
    }
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "smoke"
    for name in SECTIONS:
        assert name in report, name
        assert "error" not in report[name], (name, report[name]["error"])
    statuses = {row["status"] for row in report["table"]}
    assert statuses <= {"pass", "short", "info"}, statuses
    assert {"pass", "short"} & statuses  # targets were evaluated
    assert report["choreography_vs_in_process"]["3"]["ratio"] > 0
    assert report["hop"]["runtime"]["n"] == report["hop"]["n"]
    for name in ("throughput.png", "hop_latency.png", "e2e_latency.png", "tracing.png"):
        assert (out / name).stat().st_size > 0, name
    assert "metric" in result.stdout  # the table was printed
    assert "target" in result.stdout
