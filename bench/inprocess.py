"""(a) of the comparison: the pipeline's kernels in ONE Python process, no Kafka.

The same calls the services make, in the same order, with the same claim-check store: ingest's
``plan_file`` and ``_segment_event`` (read the LDC slice, store the raw segment), then the
condition, gb-search and estimate handlers themselves (called on envelopes, as the runner calls
them, minus decoding and publishing), then the catalogue's stacking exactly as
``lisa_services.catalog.service.Catalog`` does it (load the statistic, add, promote, compute
what changed, serialise the table value, rewrite the products when a source changed).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from bench.data import Dataset

STEPS = ("ingest", "condition", "gb-search", "estimate", "catalog")


@dataclass
class InProcessResult:
    segments: int
    samples_per_segment: int
    wall_s: float
    cpu_s: float
    per_step_s: dict[str, float]
    sources: int
    per_step_cpu_s: dict[str, float] | None = None
    """CPU time per step (the process's): on a shared machine the wall time of a step also
    counts the time other tenants held the core."""

    @property
    def segments_per_s(self) -> float:
        return self.segments / self.wall_s

    def to_json(self) -> dict:
        return {
            "segments": self.segments,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "segments_per_s": self.segments_per_s,
            "samples_per_s": self.segments_per_s * self.samples_per_segment,
            "per_step_s": self.per_step_s,
            "per_step_ms_per_segment": {
                k: 1e3 * v / self.segments for k, v in self.per_step_s.items()
            },
            "per_step_cpu_ms_per_segment": {
                k: 1e3 * v / self.segments for k, v in (self.per_step_cpu_s or {}).items()
            },
            "catalogue_sources": self.sources,
        }


def run_in_process(data: Dataset, store_uri: str, products_dir: Path) -> InProcessResult:
    from choreo import Envelope
    from choreo.store import Store
    from lisa_services.catalog.settings import CatalogSettings
    from lisa_services.condition import service as condition_step
    from lisa_services.estimate import service as estimate_step
    from lisa_services.gb_search import service as search_step
    from lisa_services.ingest.files import plan_file
    from lisa_services.ingest.publish import _segment_event

    store = Store(store_uri)
    # the handlers' module-level stores, pointed at this run's store
    for module in (condition_step, search_step, estimate_step):
        module.STORE = store
    catalogue = Catalogue(store, CatalogSettings(), products_dir)
    catalogue.imports()  # its lazy imports, outside the timed loop like the handlers' modules
    spent = dict.fromkeys(STEPS, 0.0)
    spent_cpu = dict.fromkeys(STEPS, 0.0)

    wall0, cpu0 = time.perf_counter(), time.process_time()
    t = time.perf_counter()
    plan = plan_file(data.path, 86_400.0, 0.0)
    spent["ingest"] += time.perf_counter() - t
    for index in range(len(plan.bounds)):
        marks = [(time.perf_counter(), time.process_time())]
        raw = _segment_event(plan, index, store, 0.0)
        env = Envelope.root(raw, source="ingest", subject=plan.segment_id(index))
        marks.append((time.perf_counter(), time.process_time()))
        (conditioned,) = condition_step.condition(env)
        marks.append((time.perf_counter(), time.process_time()))
        (candidates,) = search_step.search(Envelope.root(conditioned.data, source="condition"))
        marks.append((time.perf_counter(), time.process_time()))
        (estimates,) = estimate_step.estimate(Envelope.root(candidates.data, source="gb-search"))
        marks.append((time.perf_counter(), time.process_time()))
        catalogue.add(estimates.data)
        marks.append((time.perf_counter(), time.process_time()))
        for name, before, after in zip(STEPS, marks[:-1], marks[1:], strict=True):
            spent[name] += after[0] - before[0]
            spent_cpu[name] += after[1] - before[1]
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    return InProcessResult(
        len(plan.bounds), plan.bounds[0][1], wall, cpu, spent, catalogue.sources(), spent_cpu
    )


class Catalogue:
    """The catalogue's stacking exactly as ``lisa_services.catalog.service.Catalog`` does it,
    minus the broker: dicts stand for its two faust tables (grid heads, segment entries), each
    write serialised to JSON as the changelog does, and the state decoded once per write."""

    def __init__(self, store, settings, products_dir: Path) -> None:
        self.store = store
        self.settings = settings
        self.products_dir = products_dir
        self.table: dict[str, dict] = {}
        self.entries: dict[str, dict] = {}
        self.decoded: dict[str, object] = {}

    @staticmethod
    def imports() -> None:
        """Import what :meth:`add` imports, so the first segment does not pay for it."""
        import lisa_services.catalog.products
        import lisa_services.catalog.state  # noqa: F401

    def add(self, est) -> None:
        from lisa_services.catalog.products import write_products
        from lisa_services.catalog.state import PROMOTED, entry_key, grid_key, stack_segment

        catalog = self.settings
        key = grid_key(est)
        stack = self.decoded.get(key)
        arrays = self.store.get(est.statistic, ["f", "stat"])
        stack = stack_segment(stack, est, arrays["f"], arrays["stat"], None, catalog)
        changed = stack.changed(catalog.association_bins)
        for body in changed:  # what publishing serialises, and the update's id
            body.model_dump_json()
            stack.version()
        stack = stack.mark_published(changed)
        segment_id = est.timing.segment_id
        entry, head = stack.segment_entry(segment_id), stack.head_json()
        json.dumps(entry), json.dumps(head)  # the two changelog records
        self.entries[entry_key(key, segment_id)] = entry
        self.table[key] = head
        self.decoded[key] = stack
        if changed:
            bodies = [
                b
                for s in self.decoded.values()
                for b in s.catalogue(catalog.association_bins)
                if b.status == PROMOTED
            ]
            write_products(bodies, self.products_dir, self.store)

    def sources(self) -> int:
        return sum(len(s.sources or {}) for s in self.decoded.values())
