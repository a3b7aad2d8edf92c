"""Liveness and readiness that a machine can read: ``GET /livez`` and ``GET /readyz``.

A container probe (Kubernetes, podman/docker healthchecks), the demo, the tests and the benchmark
all ask the same endpoints instead of grepping a copied log line:

- ``/livez``: 200 while the service's event loop answers and, for services that report progress
  (``beat``), while the last beat is younger than ``stall_s``; else 503 (restart me).
- ``/readyz``: 200 once the service can do its job (consumer joined and polling, catalogue table
  recovered, inbox watched); 503 before and while it stops.

Both answer a small JSON object (service, ready, live, seconds since the last beat, details).
A step that can be paused (``choreo.control``) says so in its details: ``paused`` (true/false),
and while paused ``paused_since`` (RFC 3339), ``pause_reason`` and ``paused_by``. A paused step
is still live and ready: it holds its partitions and its group membership, it only fetches
nothing, and a probe restarting it would gain nothing (the control topic pauses it again).
aiohttp serves them on the service's own loop: it is already installed as faust's web server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = structlog.get_logger(__name__)


class HealthSettings(BaseSettings):
    """``LISA_HEALTH_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="LISA_HEALTH_")

    port: int | None = Field(
        None, ge=0, le=65535, description="serve /livez and /readyz here (unset: no endpoint)"
    )
    host: str = Field("127.0.0.1", description="0.0.0.0 in a container, for the kubelet")
    stall_s: float = Field(
        300.0, gt=0, description="no progress for this long = not live (the poll interval bound)"
    )


class Health:
    """A service's health, set by its loop and served over HTTP."""

    def __init__(
        self,
        service: str,
        settings: HealthSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self._clock = clock
        self.settings = settings or HealthSettings()
        self.ready = False
        self.details: dict[str, Any] = {}
        self._last_beat: float | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def set_ready(self, ready: bool, **details: Any) -> None:
        if ready != self.ready:
            log.info("ready" if ready else "not ready", service=self.service, **details)
        self.ready = ready
        self.details.update(details)

    def set_paused(self, paused: bool, reason: str = "", requested_by: str = "") -> None:
        """The step's actual state (not the command): shown in ``details``, live and ready
        untouched."""
        if paused and not self.details.get("paused"):
            since = datetime.now(UTC).isoformat(timespec="seconds")
            self.details.update(paused=True, paused_since=since, pause_reason=reason)
            if requested_by:
                self.details["paused_by"] = requested_by
        elif not paused:
            for name in ("paused_since", "pause_reason", "paused_by"):
                self.details.pop(name, None)
            self.details["paused"] = False

    def beat(self) -> None:
        """The loop made progress (a poll returned, a scan finished)."""
        self._last_beat = self._clock()

    @property
    def live(self) -> bool:
        if self._last_beat is None:
            return True
        return self._clock() - self._last_beat < self.settings.stall_s

    def snapshot(self) -> dict[str, Any]:
        since = None if self._last_beat is None else self._clock() - self._last_beat
        return {
            "service": self.service,
            "ready": self.ready,
            "live": self.live,
            "seconds_since_progress": None if since is None else round(since, 3),
            **self.details,
        }

    async def _livez(self, _: web.Request) -> web.Response:
        return web.json_response(self.snapshot(), status=200 if self.live else 503)

    async def _readyz(self, _: web.Request) -> web.Response:
        ok = self.ready and self.live
        return web.json_response(self.snapshot(), status=200 if ok else 503)

    async def serve(self) -> None:
        """Start the endpoint if a port is configured (0 picks a free one, see ``port``)."""
        if self.settings.port is None or self._runner is not None:
            return
        app = web.Application()
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        sockets = site._server.sockets if site._server else ()  # the port actually bound
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
        log.info("health endpoint", service=self.service, host=self.settings.host, port=self.port)

    async def close(self) -> None:
        self.set_ready(False)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
