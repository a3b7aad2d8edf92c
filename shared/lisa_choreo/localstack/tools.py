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


def _version_file(tool: GoTool) -> Path:
    return bin_dir() / f".{tool.name}.version"


def cached(tool: GoTool) -> Path | None:
    """The built binary if this home holds the pinned version, else None (no build)."""
    path = bin_dir() / tool.name
    try:
        built = _version_file(tool).read_text().strip()
    except OSError:
        return None
    return path if built == tool.pin and os.access(path, os.X_OK) else None


def go_binary() -> str | None:
    """``go`` on PATH, else the official tarball's place (/usr/local/go/bin)."""
    default = Path("/usr/local/go/bin/go")
    return shutil.which("go") or (str(default) if os.access(default, os.X_OK) else None)


def build(tool: GoTool, say=lambda text: None) -> Path:
    """``go install`` the pinned tool into ``bin_dir()`` once; later calls return the cache."""
    path = cached(tool)
    if path is not None:
        return path
    go = go_binary()
    if go is None:
        raise StackError(
            f"`go` not found on PATH: {tool.name} is built once with go install {tool.pin}"
        )
    target = bin_dir()
    target.mkdir(parents=True, exist_ok=True)
    say(f"building {tool.name} {tool.version} with go install (once) into {target}")
    env = {**os.environ, "GOBIN": str(target), "GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "0"}
    t0 = time.monotonic()
    result = subprocess.run(
        [go, "install", tool.pin], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise StackError(f"building {tool.name} failed: " + " | ".join(tail))
    _version_file(tool).write_text(tool.pin + "\n")
    (target / f".{tool.name}.build-seconds").write_text(f"{time.monotonic() - t0:.1f}\n")
    return target / tool.name
