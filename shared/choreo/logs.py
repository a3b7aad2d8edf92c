"""structlog JSON logs; every line written inside a span carries its trace and span ids."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path

import structlog
from opentelemetry import trace


def _add_trace_ids(_logger: object, _name: str, event: dict) -> dict:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event["trace_id"] = f"{ctx.trace_id:032x}"
        event["span_id"] = f"{ctx.span_id:016x}"
    return event


def _line_buffered() -> None:
    """Every line reaches the OS as soon as it is complete, whatever stdout and stderr are (a
    terminal, a file, a pipe): a process SIGKILLed a moment later loses none of its lines. Python
    block-buffers stdout to a file or a pipe, which would keep the last lines of a killed process
    (anything printed, a library writing to stdout) in its memory."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):  # closed or exotic: leave it be
                reconfigure(line_buffering=True)


def configure_logging(service: str, level: str | None = None) -> None:
    """JSON lines on stderr for our logs and for libraries' stdlib logging (aiokafka's), each
    line flushed as it is written (see ``_line_buffered``)."""
    level_name = (level or os.environ.get("LISA_LOG_LEVEL", "INFO")).upper()
    _line_buffered()
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
    ]
    structlog.configure(
        processors=[
            # a line below the level is dropped before any processor runs (the runtime logs
            # every input at INFO: at WARNING that line costs a level check, not a timestamp)
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.dict_tracebacks,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)  # flushes after every record
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_name)
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.bind_contextvars(service=service)


def read_log_events(path: Path, event: str | None = None) -> list[dict]:
    """The JSON lines of a service's log (those named ``event`` only), in order; lines that are
    not JSON objects (a traceback, a half-written last line) are skipped, a missing log is
    empty. What the tests, the benchmark and the study read of a service's behaviour."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if event is None or record.get("event") == event:
            out.append(record)
    return out
