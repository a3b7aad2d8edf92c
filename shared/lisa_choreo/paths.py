"""Where things live: the per-user cache and state folder (launch files ship in the package)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """``LISA_CHOREO_HOME``: cached jars and the local stack's data and logs."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lisa-choreo"
    path = Path(os.environ.get("LISA_CHOREO_HOME", default))
    path.mkdir(parents=True, exist_ok=True)
    return path
