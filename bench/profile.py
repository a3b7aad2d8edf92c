"""Where the time goes: py-spy samples of a running process, folded into a top list.

``py-spy record --format raw`` writes one folded stack per line with its sample count; this module
attaches to pids (the services of a fleet) or runs a command, and summarises inclusive time per
function and self time per leaf, so the README's findings can be regenerated.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    exe = Path(sys.executable).with_name("py-spy")
    return str(exe) if exe.exists() else shutil.which("py-spy")


def record_pid(pid: int, seconds: float, out: Path, rate: int = 200) -> subprocess.Popen | None:
    """Start sampling ``pid`` (with its threads, idle samples excluded) in the background."""
    exe = py_spy()
    if exe is None:
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _frame_name(frame: str) -> str:
    """``fn (path/file.py:123)`` -> ``fn (path/file.py)``: lines of one function merged."""
    name, sep, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0].rstrip(')')})" if sep else frame


def _frames(line: str) -> tuple[list[str], int] | None:
    """One folded stack of py-spy's raw format (root first) and its sample count; None for a
    line that is not one (the last line of a spy stopped mid-write)."""
    stack, _, count = line.rstrip().rpartition(" ")
    if not stack or not count.isdigit():
        return None
    return [_frame_name(f) for f in stack.split(";")], int(count)


def summarise(path: Path, top: int = 15) -> dict:
    """Inclusive samples per function (once per stack) and self samples per leaf function."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    # lines end with "\n" only: a frame's text (a string argument shown by py-spy) may hold
    # characters that str.splitlines would also break at
    for line in path.read_text(errors="replace").split("\n"):
        parsed = _frames(line)
        if parsed is None:
            continue
        frames, count = parsed
        total += count
        for name in set(frames):
            inclusive[name] += count
        leaf[frames[-1]] += count
    return {
        "samples": total,
        "inclusive": [(n, round(c / total, 3)) for n, c in inclusive.most_common(top)],
        "self": [(n, round(c / total, 3)) for n, c in leaf.most_common(top)],
    }


if __name__ == "__main__":  # python -m bench.profile raw.txt
    import json

    print(
        json.dumps(
            summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25), indent=1
        )
    )
