"""The ingest inbox's rules (no broker): what is taken, when, and where it goes."""

from __future__ import annotations

import os
from pathlib import Path

from lisa_services.ingest.inbox import Inbox, unique_target


def test_only_complete_regular_files_are_taken_once_their_size_is_stable(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
    inbox.prepare()
    root = inbox.root
    (root / "a.h5").write_bytes(b"1234")
    (root / "b.h5.part").write_bytes(b"uploading")
    (root / ".c.h5").write_bytes(b"hidden temp")
    (root / "notes.txt").write_text("not data")
    os.symlink(tmp_path / "nowhere.h5", root / "dangling.h5")
    os.symlink(root / "a.h5", root / "link.h5")
    os.mkfifo(root / "pipe.h5")

    ready, refuse = inbox.scan()
    assert ready == []  # first sight: the size must hold until the next scan
    assert sorted(p.name for p, _ in refuse) == ["dangling.h5", "link.h5", "pipe.h5"]
    assert all(reason for _, reason in refuse)
    for path, reason in refuse:
        inbox.reject(path, reason)

    (root / "a.h5").write_bytes(b"123456")  # still growing
    assert inbox.scan()[0] == []
    assert [p.name for p in inbox.scan()[0]] == ["a.h5"]  # stable now
    rejected = sorted(p.name for p in inbox.rejected.iterdir())
    assert "dangling.h5" in rejected
    assert "dangling.h5.reason.txt" in rejected
    assert (inbox.rejected / "link.h5").is_symlink()  # moved as a link, never followed
    assert (root / "a.h5").read_bytes() == b"123456"


def test_done_and_rejected_never_overwrite(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path)
    inbox.prepare()
    for content in (b"first", b"second", b"third"):
        (tmp_path / "day.h5").write_bytes(content)
        inbox.accept(tmp_path / "day.h5")
    kept = sorted((p.name, p.read_bytes()) for p in inbox.done.iterdir())
    assert kept == [("day.1.h5", b"second"), ("day.2.h5", b"third"), ("day.h5", b"first")]
    (tmp_path / "bad.h5").write_bytes(b"x")
    (tmp_path / "bad2.h5").write_bytes(b"y")
    first = inbox.reject(tmp_path / "bad.h5", "reason one")
    (tmp_path / "bad.h5").write_bytes(b"z")
    second = inbox.reject(tmp_path / "bad.h5", "reason two")
    assert first != second
    assert second.with_name(second.name + ".reason.txt").read_text() == "reason two\n"
    assert first.with_name(first.name + ".reason.txt").read_text() == "reason one\n"
    assert unique_target(tmp_path, "fresh.h5") == tmp_path / "fresh.h5"
