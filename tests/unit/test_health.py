"""``/livez`` and ``/readyz``: what container probes and tools read (no broker needed)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from choreo.health import Health, HealthSettings


def _get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


async def _ask(port: int, path: str) -> tuple[int, dict]:
    return await asyncio.to_thread(_get, port, path)


def test_ready_only_once_the_service_says_so_and_live_while_it_progresses() -> None:
    async def scenario() -> list[tuple[int, dict]]:
        now = [0.0]
        health = Health("condition", HealthSettings(port=0, stall_s=5.0), clock=lambda: now[0])
        await health.serve()
        assert health.port
        answers = [await _ask(health.port, "/readyz"), await _ask(health.port, "/livez")]
        health.beat()
        health.set_ready(True, partitions=3)
        answers.append(await _ask(health.port, "/readyz"))
        now[0] += 6.0  # no beat for longer than stall_s: the loop is stuck
        answers += [await _ask(health.port, "/livez"), await _ask(health.port, "/readyz")]
        health.beat()
        answers.append(await _ask(health.port, "/livez"))
        await health.close()
        return answers

    not_ready, live_before, ready, stalled, stalled_ready, recovered = asyncio.run(scenario())
    assert not_ready[0] == 503
    assert not_ready[1]["ready"] is False
    assert live_before[0] == 200  # no progress reported yet: the loop answering is enough
    assert ready[0] == 200
    assert ready[1]["partitions"] == 3
    assert ready[1]["service"] == "condition"
    assert stalled[0] == 503
    assert stalled[1]["live"] is False
    assert stalled_ready[0] == 503  # a stuck service is not ready either
    assert recovered[0] == 200


def test_no_port_no_endpoint() -> None:
    async def scenario() -> int | None:
        health = Health("x", HealthSettings(port=None))
        await health.serve()
        await health.close()
        return health.port

    assert asyncio.run(scenario()) is None
