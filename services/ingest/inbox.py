"""The ingest inbox: which files are ready, and where each goes afterwards.

Upload convention (documented in the README): write ``NAME.h5.part`` (or a dotfile) and rename it
to ``NAME.h5`` when complete; a file is taken only under its final name, only if it is a regular
file (a symlink or a device is refused, never followed) and only once its size has not changed
between two scans. Afterwards it goes to ``done/`` or, with a ``.reason.txt``, to ``rejected/``;
a name already there gets a numbered suffix, so nothing is ever overwritten.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

SUFFIXES = (".h5", ".hdf5")
PARTIAL_SUFFIX = ".part"


def unique_target(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/<stem>.<n><suffix>`` for the first free ``n``."""
    target = folder / name
    stem, dot, suffix = name.rpartition(".")
    n = 1
    while target.exists() or target.is_symlink():
        target = folder / (f"{stem}.{n}.{suffix}" if dot else f"{name}.{n}")
        n += 1
    return target


@dataclass
class Inbox:
    root: Path
    _sizes: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> Path:
        return self.root / "done"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    def prepare(self) -> None:
        for folder in (self.root, self.done, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)

    def scan(self) -> tuple[list[Path], list[tuple[Path, str]]]:
        """(files ready to ingest, entries to refuse at once with the reason)."""
        ready: list[Path] = []
        refuse: list[tuple[Path, str]] = []
        seen: set[str] = set()
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            name = entry.name
            if name.startswith(".") or name.endswith(PARTIAL_SUFFIX):
                continue  # still being uploaded
            if not name.endswith(SUFFIXES):
                continue  # not ours (done/, rejected/, notes...)
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                refuse.append((Path(entry.path), "a symlink: only regular files are ingested"))
                continue
            if not stat.S_ISREG(info.st_mode):
                refuse.append((Path(entry.path), "not a regular file"))
                continue
            seen.add(name)
            if self._sizes.get(name) != info.st_size:  # new, or still growing: next scan
                self._sizes[name] = info.st_size
                continue
            ready.append(Path(entry.path))
        self._sizes = {k: v for k, v in self._sizes.items() if k in seen}
        return ready, refuse

    def accept(self, path: Path) -> Path:
        self._sizes.pop(path.name, None)
        target = unique_target(self.done, path.name)
        os.replace(path, target)
        return target

    def reject(self, path: Path, reason: str) -> Path:
        self._sizes.pop(path.name, None)
        target = unique_target(self.rejected, path.name)
        os.replace(path, target)  # a symlink moves as a link, never followed
        target.with_name(f"{target.name}.reason.txt").write_text(f"{reason}\n")
        return target
