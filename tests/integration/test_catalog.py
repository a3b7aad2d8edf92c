"""The catalog service as a separate process on the real broker, fed synthetic SourceEstimates.

Each segment's statistic spectrum is chi2_4 noise plus a line (non-central chi2_4 in one bin,
with leakage into its neighbours), written to the claim-check store. The expected catalogue is
computed here from the spectra the test wrote, independently of the service's code.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

from choreo import Envelope, codec
from choreo.publisher import make_producer
from choreo.settings import KafkaSettings
from choreo.store import Store
from choreo.topology import Topology, ensure_topics
from lisa_choreo import traceview
from lisa_choreo.catalogue import format_catalogue, read_catalogue
from lisa_choreo.processes import ServiceProcess
from lisa_choreo.registry import TOPICS
from lisa_pipeline.events import (
    CatalogSource,
    GBCandidate,
    SegmentTiming,
    SourceEstimate,
    SourceEstimates,
)
from lisa_pipeline.topics import CATALOG, SOURCES_ESTIMATES
from lisa_science.cataloguing import grid_trials, scalloping_corrected_excess
from lisa_science.stacking import stacked_fap
from lisa_services.catalog.service import step
from tests.conftest import Services, read_all, wait_until

pytestmark = pytest.mark.kafka

N_BINS = 600
N_INDEP = 300  # a grid zero-padded by 2
DF = 1 / (2 * 86400.0)
F = 2e-3 + DF * np.arange(N_BINS)
LINE = 321  # the injected source's bin
LAM = 15.0  # its SNR^2 per segment: below one segment's threshold, far above 16 stacked
RNG_SEED = 2024


class CatalogProcess(ServiceProcess):
    """``python -m lisa_services.catalog.service`` (until the CLI's ``run catalog`` starts it)."""

    def start(self) -> CatalogProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lisa_services.catalog.service"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env,
            )
        return self


@dataclass
class Segment:
    envelope: Envelope
    stat: np.ndarray
    trace_id: str
    span_id: str

    def record(self) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
        """The record a traced producer would write: CloudEvent headers plus a traceparent."""
        key, value, headers = codec.encode(self.envelope)
        return (
            key,
            value,
            [*headers, ("traceparent", f"00-{self.trace_id}-{self.span_id}-01".encode())],
        )


def _estimate(frequency: float, amplitude: float) -> SourceEstimate:
    cand = GBCandidate(frequency_hz=frequency, bin=0, statistic=30.0, snr=5.0, fap=0.5)
    return SourceEstimate(
        candidate=cand,
        frequency_hz=frequency,
        sigma_frequency_hz=2e-7,
        amplitude_a=amplitude,
        amplitude_e=amplitude,
        sigma_amplitude_a=1e-22,
        sigma_amplitude_e=1e-22,
        phase_a=0.0,
        phase_e=0.0,
        sigma_phase_a=0.1,
        sigma_phase_e=0.1,
        snr=5.0,
        reduced_chi2=1.0,
    )


def make_segments(store: Store, n: int, f: np.ndarray = F, first: int = 0) -> list[Segment]:
    """``n`` daily segments with the line at LINE; segments 0-3 carry an estimate of it."""
    rng = np.random.default_rng(RNG_SEED + first)
    out = []
    for i in range(first, first + n):
        stat = rng.chisquare(4, N_BINS)
        for k, lam in ((LINE - 1, 0.4 * LAM), (LINE, LAM), (LINE + 1, 0.4 * LAM)):
            stat[k] = stats.ncx2.rvs(4, lam, random_state=rng)
        estimates = []
        if i < 4:  # an estimate within a bin of the line, and one far from any source
            estimates = [_estimate(F[LINE] + 0.3 * DF, 1e-21), _estimate(F[100], 5e-21)]
        event = SourceEstimates(
            timing=SegmentTiming(
                segment_id=f"seg-{i:03d}", t0=i * 86400.0, dt=5.0, n_samples=17280
            ),
            statistic=store.put({"f": f, "stat": stat}),
            n_independent_bins=N_INDEP,
            estimates=estimates,
        )
        envelope = Envelope.root(event, source="test", subject=event.timing.segment_id)
        out.append(Segment(envelope, stat, uuid.uuid4().hex, uuid.uuid4().hex[:16]))
    return out


def publish(settings: KafkaSettings, records: list[tuple[bytes | None, bytes, list]]) -> None:
    async def send():
        producer = make_producer(settings, "test-catalog")
        await producer.start()
        try:
            futures = [
                await producer.send(settings.topic(SOURCES_ESTIMATES), value, key, headers=h)
                for key, value, h in records
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(send())


def catalogue(settings: KafkaSettings) -> list[CatalogSource]:
    return asyncio.run(read_catalogue(settings))


def expected(segments: list[Segment]) -> dict:
    """The catalogue entry of the line, from the spectra alone."""
    total = np.sum([s.stat for s in segments], axis=0)
    n = len(segments)
    window = total[LINE - 2 : LINE + 3] - 4 * n
    assert LINE - 2 + int(np.argmax(window)) == LINE, "the line's bin must be the stack's peak"
    # the FAP of a maximum over the 600 bins of a grid padded by 2 (lisa_science.significance,
    # checked against simulation in the unit tests), and the SNR at the line's own frequency
    trials, coherence = grid_trials(N_BINS, N_INDEP)
    fap = float(stacked_fap(total[LINE], n, trials, coherence=coherence))
    assert fap < 1e-3
    others = np.delete(total, range(LINE - 3, LINE + 4))
    assert stacked_fap(others, n, trials, coherence=coherence).min() > 1e-3, "noise must stay below"
    excess = scalloping_corrected_excess(total - 4 * n, np.full(N_BINS, n), LINE, 2)
    return {
        "source_id": f"GB{F[LINE] * 1e6:.3f}",
        "frequency_bin": LINE,
        "stacked_statistic": pytest.approx(float(total[LINE]), rel=1e-12),
        "stacked_snr": pytest.approx(float(np.sqrt(excess)), rel=1e-9),
        "fap": pytest.approx(fap, rel=1e-6, abs=1e-300),
        "n_segments": n,
        "n_estimates": min(n, 4),
        "contributing_segments": sorted(s.envelope.data.timing.segment_id for s in segments),
    }


def assert_catalogue(settings: KafkaSettings, segments: list[Segment]) -> CatalogSource:
    (source,) = catalogue(settings)
    got = source.model_dump()
    for name, value in expected(segments).items():
        assert got[name] == value, name
    return source


def has_segments(settings: KafkaSettings, n: int):
    def check():
        sources = catalogue(settings)
        return sources if sources and sources[0].n_segments >= n else None

    return check


@pytest.fixture
def catalog(services: Services):
    """Starts catalog processes bound to this test's topics; products under LISA_CHOREO_HOME."""
    # The dead-letter topic of the catalogue's input, declared by the catalog step (the
    # deployment's topology creates it once the step is listed there).
    declared = Topology(topics=TOPICS, steps=(step,)).all_topics()
    asyncio.run(ensure_topics(services.settings, declared))
    env = {
        **services.env,
        "LISA_CATALOG_SESSION_TIMEOUT_S": "6",  # a SIGKILLed member leaves the group fast
        "LISA_CATALOG_COMMIT_INTERVAL_S": "0.5",
    }
    started: list[CatalogProcess] = []

    def start(**extra: str) -> CatalogProcess:
        proc = CatalogProcess(
            "catalog", services.workdir / f"catalog-{len(started)}.log", {**env, **extra}
        ).start()
        started.append(proc)
        proc.wait_ready(120)
        return proc

    yield services, start
    for proc in started:
        proc.kill()


def test_catalogue_stacks_dedups_dead_letters_traces_and_writes_products(catalog):
    services, start = catalog
    settings = services.settings
    store = Store(services.store_uri)
    proc = start()
    segments = make_segments(store, 8)
    bad_json = codec.encode(Envelope.root(segments[0].envelope.data, source="t", subject="bad"))
    publish(settings, [s.record() for s in segments[:6]])
    publish(settings, [(b"bad", b"{not json", bad_json[2])])
    wait_until(has_segments(settings, 6), 60, "the source with 6 segments")
    first = assert_catalogue(settings, segments[:6])

    # Another grid of the same shape (shifted by half a bin) must not be stacked on this one.
    (shifted,) = make_segments(store, 1, f=F + DF / 2, first=100)
    publish(settings, [shifted.record()])
    publish(settings, [s.record() for s in segments[6:]])
    dead = wait_until(
        lambda: (d := read_all(settings, SOURCES_ESTIMATES + ".dlq")) and len(d) >= 2 and d,
        60,
        "two dead letters",
    )
    by_reason = {dict(r.headers)["dlq_reason"].decode(): r for r in dead}
    assert sorted(by_reason) == ["grid-mismatch", "invalid-json"]
    assert by_reason["invalid-json"].value == b"{not json"  # the original bytes, untouched
    mismatch = by_reason["grid-mismatch"]
    h = {k: v.decode() for k, v in mismatch.headers}
    assert (h["dlq_service"], h["dlq_topic"]) == ("catalog", SOURCES_ESTIMATES)
    assert mismatch.key == shifted.envelope.key.encode()
    assert (mismatch.value, h["ce_id"]) == (shifted.record()[1], shifted.envelope.id)
    assert h["traceparent"] == f"00-{shifted.trace_id}-{shifted.span_id}-01"
    assert not any(k.startswith("catalog_src_") for k in h)

    wait_until(has_segments(settings, 8), 60, "the source with 8 segments")
    final = assert_catalogue(settings, segments)
    assert final.source_id == first.source_id
    assert final.frequency_hz == pytest.approx(F[LINE] + 0.3 * DF)  # from the 4 estimates
    assert final.mean_amplitude == pytest.approx(1e-21)
    assert final.source_id in format_catalogue(catalogue(settings))  # `lisa-choreo catalog`

    # A duplicated segment (same id, redelivered) changes nothing and publishes nothing.
    n_records = len(read_all(settings, CATALOG))
    publish(settings, [segments[2].record()])
    wait_until(lambda: proc.log_contains("segment already counted"), 60, "the duplicate seen")
    assert_catalogue(settings, segments)
    assert len(read_all(settings, CATALOG)) == n_records

    # The product, rewritten atomically in $LISA_CHOREO_HOME/products/catalog.
    products = services.workdir / "home" / "products" / "catalog"
    with open(products / "catalog.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["source_id"] == final.source_id
    assert int(row["n_segments"]) == 8
    assert float(row["stacked_statistic"]) == pytest.approx(final.stacked_statistic)
    h5 = store.get(_stored(products / "catalog.h5", store), ["source_id", "n_segments"])
    assert h5["source_id"].tolist() == [final.source_id.encode()]

    # Tracing: one CONSUMER span per input, child of its producer; fan-in links on updates.
    assert proc.terminate() == 0  # SIGTERM: drained, committed, spans flushed, exit 0
    spans = traceview.read_jsonl(services.spans)
    consumed = [s for s in spans if s["name"] == f"process {settings.topic(SOURCES_ESTIMATES)}"]
    by_trace = {s["trace_id"]: s for s in consumed}
    for seg in segments:
        span = by_trace[seg.trace_id]
        assert (span["kind"], span["parent_id"]) == ("CONSUMER", seg.span_id)
        assert span["service"] == "catalog"
    updates = [s for s in spans if s["name"] == f"catalog update {final.source_id}"]
    assert len(updates) == n_records  # one span per published update
    last = max(updates, key=lambda s: s["attributes"]["lisa.n_segments"])
    assert last["attributes"]["lisa.n_segments"] == 8
    assert {lk["trace_id"] for lk in last["links"]} == {s.trace_id for s in segments}
    sends = [s for s in spans if s["name"] == f"send {settings.topic(CATALOG)}"]
    assert {s["parent_id"] for s in sends} == {s["span_id"] for s in updates}


def _stored(path, store: Store) -> object:
    """The reference of a product file's copy in the store (catalog.h5 is put there too), to
    read it through the store's checks: it must name the same bytes."""
    import h5py

    from choreo.store import ArrayRef, sha256_file

    digest = sha256_file(path)
    with h5py.File(path, "r") as f:
        shapes = {name: list(f[name].shape) for name in f}
        dtypes = {name: f[name].dtype.name for name in f}
    copy = store.root / digest[:2] / f"{digest}.h5"
    size = path.stat().st_size
    return ArrayRef(uri=copy.as_uri(), sha256=digest, size_bytes=size, shapes=shapes, dtypes=dtypes)


def test_sigkill_mid_stream_then_restart_counts_every_segment_once(catalog):
    services, start = catalog
    settings = services.settings
    store = Store(services.store_uri)
    # The pause sits between publishing a segment's updates and persisting the stack: the kill
    # lands where a replay must republish, not double-count.
    slow = {"LISA_CATALOG_DELAY_S": "0.4"}
    proc = start(**slow)
    segments = make_segments(store, 16)
    publish(settings, [s.record() for s in segments])
    wait_until(has_segments(settings, 5), 60, "5 segments stacked before the kill")
    proc.kill()  # SIGKILL: no drain, no commit, no changelog flush beyond what was sent
    partial = catalogue(settings)[0].n_segments
    assert 5 <= partial < 16, "the kill should land mid-stream"
    start(**slow)
    wait_until(has_segments(settings, 16), 120, "all 16 segments after the restart")
    source = assert_catalogue(settings, segments)  # each segment once: same sum, n = 16
    records = read_all(settings, CATALOG)
    assert {r.key for r in records} == {source.source_id.encode()}
    by_id: dict[str, set[bytes]] = {}
    for r in records:
        by_id.setdefault(dict(r.headers)["ce_id"].decode(), set()).add(r.value)
    # An update replayed after the kill repeats its id with the same state, never a new id ...
    states = [json.loads(next(iter(v))) for v in by_id.values()]
    assert all(len(v) == 1 for v in by_id.values()), "one id, one state"
    counts = sorted(s["n_segments"] for s in states)
    # ... and every segment after the promotion published exactly one state.
    assert counts == list(range(counts[0], 17))
    assert os.path.exists(services.workdir / "home" / "products" / "catalog" / "catalog.csv")
