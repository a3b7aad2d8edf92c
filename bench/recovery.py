"""Recovery after a fault, with the session timeout in force: how long a step's input waits.

For each step of the pipeline (all four running, one replica each, on their own topic prefix):

- **SIGTERM** of one of two replicas: a second replica is started and the two share the step's
  partitions; the replica that owns the partition of the next input (for the catalogue: the
  by-grid partition, where the stacking happens) is sent SIGTERM and that input is published at
  once. Measured: SIGTERM -> the other replica logs the input processed.
- **SIGKILL** of the survivor: it is killed, a replacement started at once (the same
  ``lisa-choreo run`` command, as a supervisor would) and a new input published. Measured:
  SIGKILL -> the replacement logs the input processed. This includes the replacement's start-up
  (imports, connections), as in production.

The SIGTERM comes at a random moment 0-3 s after the pair settled: the other replica learns of
the hand-over at its next heartbeat, and heartbeats tick from the last rebalance, so a fixed
delay would measure one phase of the period only. "Processed" is the step's own log line
(``processed`` from the runner, ``segment stacked`` from the catalogue, whose clock is the
service's); the input is a new raw segment, so for a step after ``condition`` the figure also
holds the upstream hops (a few tens of ms).

Two configurations: ``before`` is the former one (dynamic group membership, session timeout
30 s, heartbeat 3 s, fetch wait 500 ms: a killed member's partitions wait for its session to
expire), ``after`` the defaults (static membership, KIP-345, with an explicit LeaveGroup on
SIGTERM; session 10 s, heartbeat 0.5 s, fetch wait 100 ms). Both run the current runner, which
also stops polling at once on SIGTERM (formerly up to one 500 ms poll later).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner

from bench.data import DAY, Dataset, split_days
from bench.fleet import PIPELINE_STEPS, Fleet, log_events
from bench.pipeline import INPUT_TOPIC, Context, _ingest
from lisa_choreo.processes import ServiceProcess
from lisa_services.ingest.files import plan_file

MODES: dict[str, dict[str, str]] = {
    "before": {
        "LISA_STEP_STATIC_MEMBERSHIP": "false",
        "LISA_STEP_SESSION_TIMEOUT_MS": "30000",
        "LISA_STEP_HEARTBEAT_INTERVAL_MS": "3000",
        "LISA_STEP_FETCH_MAX_WAIT_MS": "500",
        "LISA_CATALOG_SESSION_TIMEOUT_S": "30",
        "LISA_CATALOG_HEARTBEAT_INTERVAL_S": "3",
    },
    "after": {},  # the defaults
}
PARTITIONS = 6  # of every runner step's input topic
_PHASE = random.Random(345)  # when, within the heartbeat period, the SIGTERM lands


def _done(proc: ServiceProcess, step: str, segment: str) -> float | None:
    """When ``proc`` logged ``segment`` processed (epoch s), or None."""
    event, field = (
        ("segment stacked", "segment_id") if step == "catalog" else ("processed", "subject")
    )
    for record in log_events(proc.log_path, event):
        if record.get(field) == segment:
            return record["t"]
    return None


def _wait(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.05)
    return value


def _assignment(proc: ServiceProcess) -> dict | None:
    lines = log_events(proc.log_path, "partitions assigned")
    return lines[-1] if lines else None


def _owned(step: str, fleet: Fleet, proc: ServiceProcess) -> set[int]:
    """Partitions of the step's input (for the catalogue: of its by-grid topic) that ``proc``
    holds, from its latest ``partitions assigned`` line."""
    line = _assignment(proc) or {"partitions": []}
    if step == "catalog":
        by_grid = fleet.settings.topic("catalog-by-grid")
        return {int(p.rsplit(":", 1)[1]) for p in line["partitions"] if p.startswith(by_grid)}
    topic = f"topic='{fleet.settings.topic(INPUT_TOPIC[step])}'"
    return {int(p.split("partition=")[1].rstrip(")")) for p in line["partitions"] if topic in p}


def _settled(step: str, fleet: Fleet, procs: list[ServiceProcess]) -> bool:
    """Every replica ready, all at the same generation, the partitions shared out."""
    if not all(p.ready for p in procs):
        return False
    lines = [_assignment(p) for p in procs]
    if any(line is None for line in lines) or len({line["generation"] for line in lines}) != 1:
        return False
    owned = [_owned(step, fleet, p) for p in procs]
    need = 1 if step == "catalog" else PARTITIONS
    return len(set().union(*owned)) == need and (step == "catalog" or all(owned))


def _partition(path: Path) -> int:
    key = plan_file(path, DAY, 0.0).segment_id(0).encode()
    return DefaultPartitioner()(key, list(range(PARTITIONS)), list(range(PARTITIONS)))


class _Inputs:
    """Fresh daily files, each a new segment; ``take(partitions)`` one whose key lands there."""

    def __init__(self, files: list[Path]) -> None:
        self._files = list(files)

    def take(self, partitions: set[int] | None = None) -> Path:
        for i, path in enumerate(self._files):
            if partitions is None or _partition(path) in partitions:
                return self._files.pop(i)
        raise RuntimeError("the recovery dataset has no unused segment left for that partition")


def _start(fleet: Fleet, step: str, key: str) -> ServiceProcess:
    proc = ServiceProcess(step, fleet.dir / f"{key}.log", fleet.env).start()
    fleet.procs[key] = proc
    return proc


def _round(
    ctx: Context, fleet: Fleet, step: str, current: ServiceProcess, inputs: _Inputs, key: str
) -> tuple[float, float, ServiceProcess]:
    """One SIGTERM and one SIGKILL of ``step``; returns both figures (ms) and the survivor."""
    other = _start(fleet, step, f"{step}#{key}a")
    pair = [current, other]
    _wait(lambda: _settled(step, fleet, pair), 240, f"{step} x2 settled")
    leaving = next(p for p in pair if _owned(step, fleet, p))
    staying = other if leaving is current else current
    target = inputs.take(None if step == "catalog" else _owned(step, fleet, leaving))
    time.sleep(_PHASE.uniform(0.0, 3.0))  # heartbeats tick from the last join: not in step
    t0 = time.time()
    leaving.proc.send_signal(15)
    (segment,) = _ingest(fleet.settings, ctx.store_uri, target)
    done = _wait(lambda: _done(staying, step, segment), 240, f"{step}: hand-over")
    sigterm_ms = 1e3 * (done - t0)
    leaving.terminate()

    t0 = time.time()
    staying.kill()
    replacement = _start(fleet, step, f"{step}#{key}b")
    (segment,) = _ingest(fleet.settings, ctx.store_uri, inputs.take())
    done = _wait(lambda: _done(replacement, step, segment), 240, f"{step}: replacement")
    return sigterm_ms, 1e3 * (done - t0), replacement


def _one_mode(
    ctx: Context, mode: str, inputs: _Inputs, steps: tuple[str, ...], rounds: int
) -> dict:
    fleet = ctx.fleet(f"recovery-{mode}", env=MODES[mode])
    out: dict = {"env": MODES[mode], "steps": {}}
    try:
        fleet.create_topics()
        fleet.start()
        warm = _ingest(fleet.settings, ctx.store_uri, inputs.take())[0]
        _wait(lambda: _done(fleet.procs["catalog"], "catalog", warm), 240, "warm-up segment")
        for step in steps:
            current = fleet.procs[step]
            figures: dict[str, list[float]] = {"sigterm_ms": [], "sigkill_ms": []}
            for r in range(rounds):
                sigterm_ms, sigkill_ms, current = _round(ctx, fleet, step, current, inputs, str(r))
                figures["sigterm_ms"].append(sigterm_ms)
                figures["sigkill_ms"].append(sigkill_ms)
                ctx.log(
                    f"    {mode} {step}: SIGTERM -> other replica {sigterm_ms:.0f} ms, "
                    f"SIGKILL -> replacement {sigkill_ms:.0f} ms"
                )
            fleet.procs[step] = current
            out["steps"][step] = {
                **figures,
                "sigterm_ms_median": statistics.median(figures["sigterm_ms"]),
                "sigkill_ms_median": statistics.median(figures["sigkill_ms"]),
            }
    finally:
        fleet.stop()
    return out


def run_recovery(
    ctx: Context,
    data: Dataset,
    modes: tuple[str, ...] = ("before", "after"),
    steps: tuple[str, ...] = PIPELINE_STEPS,
    rounds: int = 2,
) -> dict:
    """SIGTERM -> first input processed by the other replica and SIGKILL -> first input processed
    by a replacement, per step and configuration (``MODES``), in ms."""
    inputs = _Inputs(split_days(data, ctx.workdir / f"days-{data.path.stem}"))
    result: dict = {"rounds": rounds, "steps": list(steps)}
    for mode in modes:
        ctx.log(f"  recovery, {mode}: {MODES[mode] or 'defaults'}")
        result[mode] = _one_mode(ctx, mode, inputs, steps, rounds)
    return result
