"""Operator-facing failures are one line, not a traceback."""

import os
import subprocess
import sys


def test_missing_java_is_explained_in_one_line(tmp_path):
    # Only the interpreter's folder on PATH: no java, no mvn.
    env = {
        **os.environ,
        "PATH": os.path.dirname(sys.executable),
        "LISA_CHOREO_HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "lisa_choreo.cli", "stack", "up", "--port", "19990"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "not found on PATH" in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_service_is_refused():
    result = subprocess.run(
        [sys.executable, "-m", "lisa_choreo.cli", "run", "no-such-step"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "unknown service 'no-such-step'" in result.stderr
