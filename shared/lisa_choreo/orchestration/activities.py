"""The activities: the services' own handlers and the catalogue's own stacking code.

Nothing of the science is re-implemented here:

- ``ingest`` calls ingest's ``_segment_event`` (read the file's slice, store it, describe it) and
  wraps it in the envelope ``publish_file`` would publish (same event id);
- ``condition``, ``gb-search`` and ``estimate`` feed the previous event through the step's
  declaration and handler with ``choreo.testing.StepHarness``, i.e. the runtime's own record path
  (``RecordProcessor``: CloudEvent decode and validation, the consumer span, the sync handler in a
  worker thread, the output check, encode), the Kafka producer replaced by memory. The harness
  makes ONE attempt (``max_retries=0``): retries are Temporal's. Its outcome maps onto Temporal's
  failure model: a dead letter whose reason is ``transient-exhausted`` (a ``TransientError``)
  becomes a retryable ``ApplicationError``; any other reason (a ``PermanentError``: bad data, a
  missing store file, a handler's domain error) a non-retryable one whose type is the reason;
- ``stack`` folds a batch of segments into the catalogue's state with
  ``lisa_services.catalog.state.stack_segment`` and lists the catalogue with
  ``GridStack.catalogue``, the catalog service's code, then rewrites ``catalog.csv``/``.h5`` with
  its ``write_products``.

Activities run the blocking work in a thread and heartbeat meanwhile (a third of the heartbeat
timeout), so a worker that dies is noticed after ``heartbeat_s``, not ``start_to_close_s``.
Each activity checks that this worker's claim-check store (``LISA_STORE_URI``) is the one the
workflow was started with: two stores would make every reference dangle.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from choreo import Envelope, derive_event_id
from choreo.errors import PermanentError, TransientError
from choreo.settings import StepSettings
from choreo.store import Store
from choreo.testing import StepHarness
from lisa_choreo.orchestration.contract import (
    FORWARD,
    INGEST,
    STACK,
    SegmentFailure,
    SegmentInput,
    StackInput,
    StackOutput,
    StepInput,
    segment_of,
)
from lisa_choreo.registry import load_step
from lisa_pipeline.events import SourceEstimates
from lisa_pipeline.stages import RUNNER_STEPS

log = structlog.get_logger(__name__)
T = TypeVar("T")
TRANSIENT = "transient"


# -- envelopes as JSON ------------------------------------------------------------------------


def envelope_json(envelope: Envelope[Any]) -> dict[str, Any]:
    """An envelope as a JSON object: CloudEvents attributes, lineage and the validated body."""
    return {
        "id": envelope.id,
        "type": envelope.type,
        "source": envelope.source,
        "subject": envelope.subject,
        "key": envelope.key,
        "correlation_id": envelope.correlation_id,
        "causation_id": envelope.causation_id,
        "time": envelope.time.isoformat(),
        "data": envelope.data.model_dump(mode="json"),
    }


def envelope_of(value: dict[str, Any], types: dict[str, type]) -> Envelope[Any]:
    """The envelope back, its body validated against the declared type for ``type``."""
    from datetime import datetime

    model = types.get(value.get("type", ""))
    if model is None:
        raise PermanentError("unknown-type", f"{value.get('type')!r} not in {sorted(types)}")
    return Envelope(
        id=value["id"],
        source=value["source"],
        data=model.model_validate(value["data"]),
        correlation_id=value["correlation_id"],
        subject=value.get("subject"),
        causation_id=value.get("causation_id"),
        key=value.get("key"),
        time=datetime.fromisoformat(value["time"]),
    )


# -- the steps through the runtime's record path ----------------------------------------------


@functools.cache
def harness(step_name: str) -> StepHarness:
    """The step's harness, making one attempt per call (retries are Temporal's)."""
    return StepHarness(load_step(step_name), StepSettings(max_retries=0))


def run_step(step_name: str, event: dict[str, Any]) -> dict[str, Any]:
    """One attempt of the service ``step_name`` on ``event`` (see ``run_harness``)."""
    return run_harness(harness(step_name), event)


def run_harness(h: StepHarness, event: dict[str, Any]) -> dict[str, Any]:
    """One attempt of ``h``'s step on ``event``: its one output event, or an ApplicationError
    (retryable for a transient failure, non-retryable with the dead-letter reason otherwise)."""
    step_name = h.step.name
    (consumed,) = h.step.consumes
    try:
        envelope = envelope_of(event, h.step.types_by_topic()[consumed.topic])
    except PermanentError as exc:
        raise ApplicationError(str(exc), type=exc.reason, non_retryable=True) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ApplicationError(str(exc), type="schema-invalid", non_retryable=True) from None
    result = h.deliver(consumed.topic, envelope)
    if result.dead_letters:
        letter = result.dead_letters[0]
        message = letter.info.get("error_message", letter.reason)
        if letter.reason == "transient-exhausted":
            raise ApplicationError(message, type=TRANSIENT)
        raise ApplicationError(message, type=letter.reason, non_retryable=True)
    if len(result.outputs) != 1:
        raise ApplicationError(
            f"{step_name} emitted {len(result.outputs)} events; the chain takes one",
            type="unexpected-outputs",
            non_retryable=True,
        )
    return envelope_json(result.outputs[0][1])


def check_store(store_uri: str) -> Store:
    """This worker's store, if it is the workflow's (else a non-retryable failure)."""
    store = Store()
    if store.uri != Store(store_uri).uri:
        raise ApplicationError(
            f"this worker's store is {store.uri} (LISA_STORE_URI), the workflow's {store_uri}",
            type="store-mismatch",
            non_retryable=True,
        )
    return store


@functools.cache
def _delay_s() -> float:
    from lisa_choreo.orchestration.worker import TemporalSettings

    return TemporalSettings().activity_delay_s


def _delayed(fn: Callable[..., T], *args: Any) -> T:
    out = fn(*args)
    if _delay_s():
        time.sleep(_delay_s())
    return out


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread, heartbeating every third of the heartbeat timeout."""
    info = activity.info()
    every = info.heartbeat_timeout.total_seconds() / 3 if info.heartbeat_timeout else None
    task = asyncio.ensure_future(asyncio.to_thread(_delayed, fn, *args))
    while True:
        done, _ = await asyncio.wait({task}, timeout=every)
        if done:
            return task.result()
        activity.heartbeat()


async def _logged(step: str, segment: str, fn: Callable[..., T], *args: Any) -> T:
    info = activity.info()
    t0 = time.perf_counter()
    log.info("activity started", step=step, segment_id=segment, attempt=info.attempt)
    try:
        out = await _in_thread(fn, *args)
    except ApplicationError as exc:
        log.warning(
            "activity failed",
            step=step,
            segment_id=segment,
            attempt=info.attempt,
            reason=exc.type,
            retryable=not exc.non_retryable,
            error=exc.message[:300],
        )
        raise
    log.info(
        "activity completed",
        step=step,
        segment_id=segment,
        attempt=info.attempt,
        ms=round(1e3 * (time.perf_counter() - t0), 1),
    )
    return out


def _step_activity(step_name: str):
    async def run(inp: StepInput) -> dict:
        check_store(inp.store_uri)
        return await _logged(step_name, segment_of(inp.event), run_step, step_name, inp.event)

    run.__name__ = run.__qualname__ = f"{step_name.replace('-', '_')}_activity"
    return activity.defn(name=step_name)(run)


# -- ingest ----------------------------------------------------------------------------------


def ingest_segment(inp: SegmentInput) -> dict[str, Any]:
    """The raw segment stored and described as ``publish_file`` would publish it."""
    from lisa_services.ingest.files import FilePlan
    from lisa_services.ingest.publish import _segment_event

    store = Store()
    # the plan of this one segment: bounds[index] is its slice (segment_id uses sha and index)
    plan = FilePlan(
        Path(inp.path),
        inp.sha256,
        inp.t0,
        inp.dt,
        inp.n_samples,
        [(inp.start, inp.stop)] * (inp.index + 1),
    )
    try:
        event = _segment_event(plan, inp.index, store, inp.overlap_s)
    except TransientError as exc:
        raise ApplicationError(str(exc), type=TRANSIENT) from None
    except OSError as exc:  # the file went away or the disk hiccupped: worth retrying
        raise ApplicationError(f"{inp.path}: {exc}", type=TRANSIENT) from None
    except PermanentError as exc:
        raise ApplicationError(str(exc), type=exc.reason, non_retryable=True) from None
    except Exception as exc:  # the file was checked before; anything else is for good
        raise ApplicationError(
            f"{type(exc).__name__}: {exc}", type="unreadable-file", non_retryable=True
        ) from None
    event_id = derive_event_id(inp.sha256, "ingest", inp.index)
    envelope = Envelope(
        id=event_id,
        source="ingest",
        data=event,
        correlation_id=event_id,
        subject=inp.segment_id,
        key=inp.segment_id,
    )
    return envelope_json(envelope)


@activity.defn(name=INGEST)
async def ingest(inp: SegmentInput) -> dict:
    check_store(inp.store_uri)
    return await _logged(INGEST, inp.segment_id, ingest_segment, inp)


# -- the catalogue's fold --------------------------------------------------------------------


def fold(inp: StackInput) -> StackOutput:
    """The catalogue's state with a batch of segments stacked, as the catalog service stacks
    each (``stack_segment``), and the catalogue it implies (``GridStack.catalogue``)."""
    from lisa_services.catalog.products import write_products
    from lisa_services.catalog.settings import CatalogSettings
    from lisa_services.catalog.state import decode_state, grid_key, stack_segment

    settings = CatalogSettings(
        fap=inp.params.fap,
        merge_bins=inp.params.merge_bins,
        association_bins=inp.params.association_bins,
        max_links=inp.params.max_links,
    )
    store = Store(inp.store_uri)
    stacks = {key: decode_state(value) for key, value in inp.state.items()}
    stacked: list[str] = []
    rejected: list[SegmentFailure] = []
    types = {SourceEstimates.ce_type: SourceEstimates}
    for value in inp.events:
        segment = segment_of(value)
        try:
            event: SourceEstimates = envelope_of(value, types).data
            key = grid_key(event)
            stack = stacks.get(key)
            if stack is not None and segment in stack.segments:
                continue  # counted already (a redelivery): ignored, as the catalog service does
            arrays = store.get(event.statistic, ["f", "stat"])
            stacks[key] = stack_segment(stack, event, arrays["f"], arrays["stat"], None, settings)
            stacked.append(segment)
        except TransientError as exc:  # the whole batch again, later: the fold is pure
            raise ApplicationError(str(exc), type=TRANSIENT) from None
        except PermanentError as exc:
            rejected.append(SegmentFailure(segment, STACK, exc.reason, str(exc)))
        except (ValueError, KeyError, TypeError) as exc:
            rejected.append(SegmentFailure(segment, STACK, "schema-invalid", str(exc)))
    sources = sorted(
        (body for stack in stacks.values() for body in stack.catalogue(settings.association_bins)),
        key=lambda s: (s.frequency_hz, s.source_id),
    )
    if inp.products_dir and stacked:
        write_products(sources, Path(inp.products_dir), store)
    return StackOutput(
        state={key: stack.to_json() for key, stack in stacks.items()},
        sources=[s.model_dump(mode="json") for s in sources],
        stacked=stacked,
        rejected=rejected,
    )


@activity.defn(name=STACK)
async def stack(inp: StackInput) -> StackOutput:
    label = f"{len(inp.events)} segment(s)"
    return await _logged(STACK, label, fold, inp)


# -- the probe -------------------------------------------------------------------------------


@activity.defn(name=FORWARD)
async def forward(value: int) -> int:
    return value


ACTIVITIES = [ingest, *(_step_activity(name) for name in RUNNER_STEPS), stack, forward]
"""Every activity a worker registers: ingest, one per runner step, stack, the probe's."""
