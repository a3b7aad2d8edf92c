"""Step services as child processes (the demo, the tests and the benchmarks run them so)."""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

_children: list[ServiceProcess] = []


@atexit.register
def _kill_children() -> None:
    """A parent that exits (a finished test session, a crashed demo) leaves no service behind."""
    for child in _children:
        child.kill()


def free_port() -> int:
    """A loopback port nobody listens on now (the service binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """``lisa-choreo run <name>`` in its own process, its JSON logs in ``log_path``, its health
    endpoint on a free loopback port (``LISA_HEALTH_PORT``) so that readiness is asked, not
    guessed from the log. ``module`` runs ``python -m module`` instead (the tests' toy steps)."""

    def __init__(
        self,
        name: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        module: str | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.health_port = free_port()
        self._env = {**os.environ, "LISA_HEALTH_PORT": str(self.health_port), **(env or {})}
        self._command = ["-m", module] if module else ["-m", "lisa_choreo.cli", "run", name]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self._command],
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

    def health(self, probe: str = "readyz") -> dict | None:
        """The service's answer on ``/livez`` or ``/readyz`` (its JSON, with ``status``), or None
        when nothing answers."""
        url = f"http://127.0.0.1:{self.health_port}/{probe}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return {"status": response.status, **json.load(response)}
        except urllib.error.HTTPError as exc:
            return {"status": exc.code, **json.load(exc)}
        except (OSError, ValueError):
            return None

    @property
    def ready(self) -> bool:
        answer = self.health("readyz")
        return answer is not None and answer["status"] == 200

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until ``/readyz`` answers 200; fails at once if the process died."""
        self._wait(lambda: self.ready, "not ready", timeout_s)

    def wait_for_log(self, text: str, timeout_s: float = 60.0) -> None:
        self._wait(lambda: self.log_contains(text), f"{text!r} not logged", timeout_s)

    def _wait(self, condition: Callable[[], bool], failure: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if not self.alive:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc and self.proc.returncode}); "
                    f"see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {failure} within {timeout_s} s")
            time.sleep(0.1)
