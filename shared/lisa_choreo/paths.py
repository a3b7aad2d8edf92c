"""Where things live: the checkout's deploy files and the per-user cache/state folder."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    # shared/lisa_choreo/paths.py -> the checkout (the project is installed editable).
    return Path(__file__).resolve().parents[2]


def deploy_dir() -> Path:
    return Path(os.environ.get("LISA_CHOREO_DEPLOY_DIR", repo_root() / "deploy"))


def home() -> Path:
    """``LISA_CHOREO_HOME``: cached jars and the local stack's data and logs."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lisa-choreo"
    path = Path(os.environ.get("LISA_CHOREO_HOME", default))
    path.mkdir(parents=True, exist_ok=True)
    return path
