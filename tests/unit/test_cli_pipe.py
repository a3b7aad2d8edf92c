"""``lisa-choreo ... | head -1``: a reader that goes away early ends the command quietly, with
the status of a process killed by SIGPIPE (141), and no BrokenPipeError traceback."""

import os
import subprocess
import sys


def _with_reader_gone(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI with stdout on a pipe whose reading end is already closed, so that its first
    write fails (deterministically, unlike a race with a real ``head``)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "lisa_choreo.cli", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)


def test_output_into_a_closed_pipe_exits_quietly():
    result = _with_reader_gone("topology")
    assert result.returncode == 141
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr
    assert "Exception ignored" not in result.stderr  # nor the interpreter's flush at exit
    assert result.stderr.strip() == ""


def test_head_reads_the_first_line_and_the_pipeline_ends_cleanly():
    """The shell pipeline itself: ``head -1`` gets the first line, the CLI's stderr is clean and
    its status is 0 (all written before head left) or 141 (head left first)."""
    result = subprocess.run(
        [
            "bash",
            "-c",
            f'"{sys.executable}" -m lisa_choreo.cli topology --format mermaid | head -1; '
            'echo "status=${PIPESTATUS[0]}" >&2',
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout.splitlines() == ["flowchart LR"]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] in ("status=0", "status=141")
