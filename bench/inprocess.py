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
            "catalogue_sources": self.sources,
        }


def run_in_process(data: Dataset, store_uri: str, products_dir: Path) -> InProcessResult:
    from choreo import Envelope
    from choreo.store import Store
    from lisa_services.catalog.products import write_products
    from lisa_services.catalog.settings import CatalogSettings
    from lisa_services.catalog.state import decode_state, grid_key, stack_segment
    from lisa_services.condition import service as condition_step
    from lisa_services.estimate import service as estimate_step
    from lisa_services.gb_search import service as search_step
    from lisa_services.ingest.files import plan_file
    from lisa_services.ingest.publish import _segment_event

    store = Store(store_uri)
    # the handlers' module-level stores, pointed at this run's store
    for module in (condition_step, search_step, estimate_step):
        module.STORE = store
    catalog = CatalogSettings()
    spent = dict.fromkeys(STEPS, 0.0)
    table: dict[str, dict] = {}

    wall0, cpu0 = time.perf_counter(), time.process_time()
    t = time.perf_counter()
    plan = plan_file(data.path, 86_400.0, 0.0)
    spent["ingest"] += time.perf_counter() - t
    for index in range(len(plan.bounds)):
        t0 = time.perf_counter()
        raw = _segment_event(plan, index, store, 0.0)
        env = Envelope.root(raw, source="ingest", subject=plan.segment_id(index))
        t1 = time.perf_counter()
        (conditioned,) = condition_step.condition(env)
        t2 = time.perf_counter()
        (candidates,) = search_step.search(Envelope.root(conditioned.data, source="condition"))
        t3 = time.perf_counter()
        (estimates,) = estimate_step.estimate(Envelope.root(candidates.data, source="gb-search"))
        t4 = time.perf_counter()
        # the catalogue: its broker-free core, then what Catalog._persist does, minus the broker
        est = estimates.data
        key = grid_key(est)
        stack = decode_state(table.get(key))
        arrays = store.get(est.statistic, ["f", "stat"])
        stack = stack_segment(stack, est, arrays["f"], arrays["stat"], None, catalog)
        changed = stack.changed(catalog.association_bins)
        for body in changed:  # what publishing serialises
            body.model_dump_json()
        table[key] = json.loads(json.dumps(stack.mark_published(changed).to_json()))
        if changed:
            bodies = [
                b
                for v in table.values()
                for b in decode_state(v).catalogue(catalog.association_bins)
            ]
            write_products(bodies, products_dir, store)
        t5 = time.perf_counter()
        for name, dt in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            spent[name] += dt
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    n_sources = sum(len(decode_state(v).sources or {}) for v in table.values())
    return InProcessResult(len(plan.bounds), plan.bounds[0][1], wall, cpu, spent, n_sources)
