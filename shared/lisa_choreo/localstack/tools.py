"""Command-line tools the checks need, built once from the Go module proxy at pinned versions.

``kubeconform`` (validates the Kubernetes manifests against JSON schemas, offline) and ``helm``
(lints and renders the chart) are Go programs whose releases are also Go modules, so ``go
install module@version`` builds them with nothing but Go, like the Temporal CLI of the stack
(``lisa_choreo.localstack.temporal``). They land in ``$LISA_CHOREO_HOME/tools/bin`` (``GOBIN``)
with a ``.<name>.version`` file naming the module and version built: a new pin rebuilds, later
calls need no network. Measured on two shared cores: kubeconform 46 s, helm about 3 minutes, cold.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from choreo.settings import home
from lisa_choreo.localstack.brokers import StackError


@dataclass(frozen=True)
class GoTool:
    name: str
    module: str
    version: str

    @property
    def pin(self) -> str:
        return f"{self.module}@{self.version}"


KUBECONFORM = GoTool("kubeconform", "github.com/yannh/kubeconform/cmd/kubeconform", "v0.8.0")
HELM = GoTool("helm", "helm.sh/helm/v3/cmd/helm", "v3.22.0")
TOOLS = {t.name: t for t in (KUBECONFORM, HELM)}


def bin_dir() -> Path:
    return home() / "tools" / "bin"


def go_binary() -> str | None:
    """``go`` on PATH, else the official tarball's place (/usr/local/go/bin)."""
    default = Path("/usr/local/go/bin/go")
    return shutil.which("go") or (str(default) if os.access(default, os.X_OK) else None)


@dataclass(frozen=True)
class GoBuild:
    """Where one pinned Go build lands and how it is known to be there: ``binary`` beside a
    version file naming the pin built (a new pin rebuilds) and the build's seconds. Shared by
    these tools, the Temporal CLI and SeaweedFS, which differ only in how they build."""

    binary: Path
    version_file: Path
    pin: str

    def cached(self) -> Path | None:
        """The binary if this home holds the pinned version, else None (no build)."""
        try:
            built = self.version_file.read_text().strip()
        except OSError:
            return None
        return self.binary if built == self.pin and os.access(self.binary, os.X_OK) else None

    def require_go(self, what: str) -> str:
        go = go_binary()
        if go is None:
            raise StackError(f"`go` not found on PATH: {what} is built once from {self.pin}")
        return go

    def run_go(self, go: str, args: list[str], what: str, cwd: Path | None = None, **env) -> None:
        """``go ARGS``; a failure raises ``StackError`` with the last lines of its output."""
        result = subprocess.run(
            [go, *args],
            cwd=cwd,
            env={**os.environ, "GOFLAGS": "-buildvcs=false", **env},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
            raise StackError(f"{what} failed: " + " | ".join(tail))

    def record(self, started: float, seconds_file: Path) -> Path:
        """Mark the build done (after the binary is in place)."""
        self.version_file.write_text(self.pin + "\n")
        seconds_file.write_text(f"{time.monotonic() - started:.1f}\n")
        return self.binary


def _build_of(tool: GoTool) -> GoBuild:
    return GoBuild(bin_dir() / tool.name, bin_dir() / f".{tool.name}.version", tool.pin)


def cached(tool: GoTool) -> Path | None:
    """The built binary if this home holds the pinned version, else None (no build)."""
    return _build_of(tool).cached()


def build(tool: GoTool, say=lambda text: None) -> Path:
    """``go install`` the pinned tool into ``bin_dir()`` once; later calls return the cache."""
    pinned = _build_of(tool)
    if (path := pinned.cached()) is not None:
        return path
    go = pinned.require_go(tool.name)
    target = bin_dir()
    target.mkdir(parents=True, exist_ok=True)
    say(f"building {tool.name} {tool.version} with go install (once) into {target}")
    t0 = time.monotonic()
    pinned.run_go(
        go, ["install", tool.pin], f"building {tool.name}", GOBIN=str(target), CGO_ENABLED="0"
    )
    return pinned.record(t0, target / f".{tool.name}.build-seconds")
