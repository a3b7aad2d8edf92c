"""Step services as child processes (the demo, the tests and the benchmarks run them so)."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_children: list[ServiceProcess] = []


@atexit.register
def _kill_children() -> None:
    """A parent that exits (a finished test session, a crashed demo) leaves no service behind."""
    for child in _children:
        child.kill()


class ServiceProcess:
    """``lisa-choreo run <name>`` in its own process, its JSON logs in ``log_path``."""

    def __init__(self, name: str, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lisa_choreo.cli", "run", self.name],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env,
            )
        _children.append(self)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (drain and commit), then SIGKILL at the deadline. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_contains(self, text: str) -> bool:
        try:
            return text in self.log_path.read_text(errors="replace")
        except OSError:
            return False

    def wait_for_log(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.log_contains(text):
            if not self.alive:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc and self.proc.returncode}); "
                    f"see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {text!r} not logged within {timeout_s} s")
            time.sleep(0.1)
