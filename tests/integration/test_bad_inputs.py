"""The bad-input corpus (tests/data/bad_inputs.json): every case ends in the dead-letter topic with
its reason, the step keeps consuming, and a replay after fixing the cause completes the flow."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from choreo import Envelope, codec
from choreo.publisher import make_producer
from choreo.store import ArrayRef, Store
from lisa_pipeline.events import SegmentRaw, SegmentTiming
from lisa_pipeline.topics import SEGMENTS_CONDITIONED, SEGMENTS_RAW
from lisa_science.simulate import analytic_tdi_noise
from tests.conftest import Services, read_all, wait_until

pytestmark = pytest.mark.kafka

CORPUS = json.loads((Path(__file__).parents[1] / "data" / "bad_inputs.json").read_text())["cases"]
N, DT = 17280, 5.0


def _segment(store: Store, kind: str, name: str) -> tuple[ArrayRef, Path | None]:
    """A real stored segment whose reference is then broken the way ``kind`` says."""
    x, y, z = analytic_tdi_noise(N, DT, np.random.default_rng(abs(hash(name)) % 2**32))
    if kind == "nan":
        x = y = z = np.full(N, np.nan)
    ref = store.put({"X": x, "Y": y, "Z": z})
    path = Path(ref.uri.removeprefix("file://"))
    if kind == "missing":
        aside = path.with_suffix(".aside")
        shutil.move(path, aside)
        return ref, aside
    if kind in ("outside", "symlink"):  # a foreign file, named by its real SHA-256
        foreign = store.root.parent / f"foreign-{name}.h5"
        shutil.copy(path, foreign)
        if kind == "outside":
            return ref.model_copy(update={"uri": foreign.as_uri()}), None
        path.unlink()
        path.symlink_to(foreign)  # the store's own name, pointing elsewhere
        return ref, None
    if kind == "dotdot":
        uri = f"{store.root.as_uri()}/{ref.sha256[:2]}/../../{path.name}"
        return ref.model_copy(update={"uri": uri}), None
    if kind == "host":
        return ref.model_copy(update={"uri": "file://elsewhere" + path.as_posix()}), None
    if kind == "shape":
        return ref.model_copy(update={"shapes": {c: [N // 2] for c in "XYZ"}}), None
    if kind in ("tampered", "truncated"):
        blob = path.read_bytes()
        path.unlink()  # store files are immutable: replace, never write into, the original
        path.write_bytes(
            blob[:-10] + b"0123456789" if kind == "tampered" else blob[: len(blob) // 2]
        )
    return ref, None


def _record(case: dict, store: Store, index: int) -> tuple[bytes, bytes, list, Path | None]:
    aside = None
    if "segment" in case:
        ref, aside = _segment(store, case["segment"], case["name"])
    else:
        ref = ArrayRef(uri="file:///nowhere.h5", sha256="0" * 64, size_bytes=0, shapes={})
    event = SegmentRaw(
        timing=SegmentTiming(segment_id=f"bad-{case['name']}", t0=0.0, dt=DT, n_samples=N),
        index=index,
        source_file="corpus",
        source_sha256=hashlib.sha256(b"c").hexdigest(),
        overlap_s=0.0,
        data=ref,
        nan_fraction=0.0,
    )
    env = Envelope.root(event, source="corpus", subject=f"bad-{case['name']}")
    key, value, headers = codec.encode(env)
    if "body_text" in case:
        value = case["body_text"].encode()
    if "body" in case:
        value = json.dumps(case["body"]).encode()
    if "body_number_digits" in case:
        value = value[:-1] + b', "n": ' + b"9" * case["body_number_digits"] + b"}"
    if "body_nesting" in case:
        value = b"[" * case["body_nesting"] + b"]" * case["body_nesting"]
    if "extra_header_bytes" in case:
        headers = [*headers, ("x-big", b"h" * case["extra_header_bytes"])]
    if "extra_headers" in case:
        headers = [*headers, *((f"x-{i}", b"v") for i in range(case["extra_headers"]))]
    if case.get("oversize"):
        value = value[:-1] + b', "padding": "' + b"x" * 1_010_000 + b'"}'  # < broker max
    if "ce_type" in case:
        headers = [(k, case["ce_type"].encode() if k == "ce_type" else v) for k, v in headers]
    headers = [(k, v) for k, v in headers if k not in case.get("drop_headers", [])]
    return key, value, headers, aside


def test_every_bad_input_is_dead_lettered_and_replay_completes_the_flow(services: Services):
    settings = services.settings
    store = Store(services.store_uri)
    services.start("condition")
    prepared = [(case, *_record(case, store, i)) for i, case in enumerate(CORPUS)]
    good = _record({"name": "good", "segment": "good"}, store, 99)

    async def send():
        producer = make_producer(settings, "corpus")
        await producer.start()
        try:
            for _, key, value, headers, _ in prepared:
                await producer.send_and_wait(
                    settings.topic(SEGMENTS_RAW), value, key=key, headers=headers
                )
            await producer.send_and_wait(
                settings.topic(SEGMENTS_RAW), good[1], key=good[0], headers=good[2]
            )
        finally:
            await producer.stop()

    asyncio.run(send())
    dead = wait_until(
        lambda: (d := read_all(settings, SEGMENTS_RAW + ".dlq")) and len(d) >= len(CORPUS) and d,
        120,
        f"{len(CORPUS)} dead letters",
    )
    reasons = {
        dict(r.headers).get("ce_subject", r.key or b"").decode(): dict(r.headers)[
            "dlq_reason"
        ].decode()
        for r in dead
    }
    by_key = {r.key.decode(): dict(r.headers)["dlq_reason"].decode() for r in dead}
    for case in CORPUS:
        assert by_key[f"bad-{case['name']}"] == case["reason"], (case["name"], reasons)
    # the step went on: the good segment after the corpus was conditioned
    conditioned = wait_until(lambda: read_all(settings, SEGMENTS_CONDITIONED), 60, "good output")
    assert [r.key for r in conditioned] == [b"bad-good"]
    # fix the cause (the missing file is restored), replay: the flow completes, once
    for case, *_, aside in prepared:
        if case.get("replayable"):
            shutil.move(aside, aside.with_suffix(".h5"))
    for _ in range(2):  # replaying twice is harmless
        result = services.cli("dlq", "replay", "--reason", "store-missing")
        assert result.returncode == 0, result.stderr
    assert "skipped 1 already replayed" in result.stdout
    done = wait_until(
        lambda: (c := read_all(settings, SEGMENTS_CONDITIONED)) and len(c) >= 2 and c,
        60,
        "the replayed segment conditioned",
    )
    assert sorted(r.key for r in done) == [b"bad-good", b"bad-missing-file"]
    listing = services.cli("dlq", "list")
    assert "checksum-mismatch" in listing.stdout
    assert listing.returncode == 0


def test_hostile_inbox_files_are_rejected_with_a_reason_and_the_watcher_goes_on(
    services: Services, tmp_path: Path
):
    """A dangling symlink, a file that is not HDF5, a string dt, a dt longer than a segment:
    each is moved to rejected/ with its reason; a half-uploaded ``.part`` is left alone; the good
    file after them is published; the watcher stays ready throughout."""
    import h5py

    from lisa_science.ldc import TDIData, write_ldc

    inbox = tmp_path / "inbox"
    ingest = services.start("ingest", LISA_INGEST_INBOX=str(inbox), LISA_INGEST_POLL_S="0.2")
    x, y, z = analytic_tdi_noise(N, DT, np.random.default_rng(5))
    staging = tmp_path / "staging"
    staging.mkdir()

    def ldc(name: str, **attrs) -> Path:
        path = staging / name
        write_ldc(str(path), TDIData(t0=0.0, dt=DT, x=x, y=y, z=z))
        with h5py.File(path, "r+") as f:
            for key, value in attrs.items():
                f["obs/tdi"].attrs[key] = value
        return path

    hostile = {
        "junk.h5": None,
        "string-dt.h5": ldc("string-dt.h5", dt="five seconds"),
        "long-dt.h5": ldc("long-dt.h5", dt=2e5),
    }
    (staging / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    hostile["junk.h5"] = staging / "junk.h5"
    for name, path in hostile.items():
        path.rename(inbox / name)
    (inbox / "dangling.h5").symlink_to(tmp_path / "gone.h5")
    (inbox / "uploading.h5.part").write_bytes(b"half a file")
    wait_until(
        lambda: all(
            (inbox / "rejected" / f"{n}.reason.txt").exists() for n in [*hostile, "dangling.h5"]
        ),
        60,
        "every hostile file rejected with its reason",
    )
    assert ingest.ready
    good = ldc("good.h5")
    good.rename(inbox / "good.h5")
    published = wait_until(lambda: read_all(services.settings, SEGMENTS_RAW), 60, "the good file")
    assert len(published) == 1
    wait_until(lambda: (inbox / "done" / "good.h5").exists(), 30, "good.h5 moved to done/")
    reasons = {n: (inbox / "rejected" / f"{n}.reason.txt").read_text() for n in hostile}
    assert "dt" in reasons["long-dt.h5"]
    assert reasons["junk.h5"].strip()
    assert (inbox / "rejected" / "dangling.h5").is_symlink()
    assert (inbox / "uploading.h5.part").exists()  # never taken before its rename
    assert ingest.ready
    assert ingest.alive
