"""The flow view: a static page (package data, no CDN, no build step) and the JSON API it reads.

``GET /`` is the page (``static/index.html``, ``app.js``, ``style.css``: vanilla JS drawing the
topology as inline SVG); the page and the tests share the API:

- ``GET /api/overview``: the declared topology (``lisa_pipeline.stages``) with per edge the
  throughput over the last minute, the consumer lag and the age of the oldest waiting record; the
  counts per stage; the stuck and dead-lettered flows; the last alerts; the paused steps (from
  ``lisa.control``: marked on their node, with reason and who asked);
- ``GET /api/flows?status=stuck|waiting|dead-lettered|catalogued|retracted|all&q=<prefix>``:
  flows in a line (``retracted``: every flow with a retraction from ``lisa.retractions``, also
  one whose segment never came);
- ``GET /api/segments/<segment id>``: one flow's timeline across services with queue waits (the
  consumers' own ``lisa.queue_wait_ms`` from the tracing backend when it answers, else estimated
  from record times) and the link to its trace (``<LISA_ZIPKIN_URL>/zipkin/traces/<trace id>``);
- ``GET /api/deadletters``: every dead letter with its reason, and whether it was replayed;
- ``POST /api/deadletters/replay`` with ``{"refs": [...]}``: ``choreo.replay.replay``, the code
  path of ``lisa-choreo dlq replay``, run with the operator's credentials when the cluster has
  SASL (``FlowsSettings.replay_kafka``): the monitor's own principal writes no pipeline topic.
  Only ``application/json`` is accepted, which a cross-site form cannot send.

Everything shown comes from records, which are not trusted: the page writes it as text, never as
markup.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from choreo import replay as replay_core
from choreo.replay import home_topic
from lisa_pipeline.flowmodel import LABELS, STAGE_BY_INPUT
from lisa_pipeline.stages import STAGES
from lisa_services.flows.monitor import Monitor
from lisa_services.flows.settings import zipkin_url
from lisa_services.flows.state import counts, iso, summary, timeline

log = structlog.get_logger(__name__)
STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
STATUSES = ("stuck", "waiting", "dead-lettered", "catalogued", "retracted", "all")
LISTED = 200
"""Stuck and dead-lettered flows in the overview, oldest stuck and newest dead first (the
counts are complete; ``/api/flows`` lists them all)."""


def _static(name: str) -> bytes:
    return (files("lisa_services.flows.static") / name).read_bytes()


def graph(monitor: Monitor, now_ms: int) -> dict[str, list[dict[str, Any]]]:
    """Services and topics from the declarations, each edge with its live figures."""
    traffic, model = monitor.traffic, monitor.model
    stage_counts = counts(model)["stages"]
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    waiting: dict[str, dict[str, int]] = {}
    for flow in model.flows.values():
        wait = flow.waiting()
        if wait is not None:
            w = waiting.setdefault(wait.topic, {"waiting": 0, "stuck": 0})
            w["waiting"] += 1
            w["stuck"] += flow.stuck is not None
    letters: dict[str, int] = {}
    for letter in monitor.letters.values():
        letters[letter.topic] = letters.get(letter.topic, 0) + 1
    paused = monitor.paused()
    for stage in STAGES:
        node: dict[str, Any] = {
            "id": f"service:{stage.service}",
            "kind": "service",
            "name": stage.service,
            "paused": stage.service in paused,
        }
        if command := paused.get(stage.service):
            node["paused_reason"] = command.reason
            node["paused_by"] = command.requested_by
        nodes.append(node)
        nodes.append(
            {
                "id": f"topic:{stage.produces}",
                "kind": "topic",
                "name": stage.produces,
                "stage": stage.reached,
                **stage_counts[stage.reached],
                "records_per_s": round(traffic.produced_rate(stage.produces, now_ms), 3),
            }
        )
        edges.append(
            {
                "from": f"service:{stage.service}",
                "to": f"topic:{stage.produces}",
                "kind": "produce",
                "rate": round(traffic.produced_rate(stage.produces, now_ms, stage.service), 3),
            }
        )
        if stage.consumes is None:
            continue
        lag = traffic.lag(stage.consumes, now_ms)
        rate = traffic.consumed_rate(stage.consumes)
        w = waiting.get(stage.consumes, {"waiting": 0, "stuck": 0})
        edges.append(
            {
                "from": f"topic:{stage.consumes}",
                "to": f"service:{stage.service}",
                "kind": "consume",
                "rate": None if rate is None else round(rate, 3),
                "lag": lag["lag"],
                "oldest_s": lag["oldest_s"],
                "waiting": w["waiting"],
                "stuck": w["stuck"],
                "deadline_s": monitor.settings.deadline_for(stage),
            }
        )
        dlq = f"{stage.consumes}.dlq"
        nodes.append(
            {
                "id": f"topic:{dlq}",
                "kind": "dlq",
                "name": dlq,
                "letters": letters.get(dlq, 0),
                "dead": stage_counts[stage.reached]["dead"],
            }
        )
        edges.append(
            {
                "from": f"service:{stage.service}",
                "to": f"topic:{dlq}",
                "kind": "dead-letter",
                "rate": round(traffic.produced_rate(dlq, now_ms), 3),
                "letters": letters.get(dlq, 0),
            }
        )
    return {"nodes": nodes, "edges": edges}


def letter_view(monitor: Monitor, letter: replay_core.Letter) -> dict[str, Any]:
    h = letter.headers
    return {
        "ref": letter.ref,
        "time": h.get("dlq_time", ""),
        "service": h.get("dlq_service", ""),
        "reason": h.get("dlq_reason", ""),
        "error": ": ".join(p for p in (h.get("dlq_error_type"), h.get("dlq_error_message")) if p),
        "segment_id": h.get("ce_subject", ""),
        "event_id": h.get("ce_id", ""),
        "type": h.get("ce_type", ""),
        "home": home_topic(letter.topic),
        "attempts": h.get("dlq_attempts", ""),
        "replayed": letter.ref in monitor.replayed,
    }


async def span_waits(monitor: Monitor, trace_id: str) -> dict[str, float] | None:
    """service -> ``lisa.queue_wait_ms`` of its consumer span on its input topic, from the
    tracing backend (None: it does not answer or does not know the trace)."""
    url = f"{zipkin_url()}/api/v2/trace/{trace_id}"
    wanted = {f"process {monitor.kafka.topic(s.consumes)}": s.service for s in STAGES if s.consumes}
    try:
        timeout = aiohttp.ClientTimeout(total=1.5)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
            if resp.status != 200:
                return None
            spans = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    waits: dict[str, float] = {}
    for span in spans if isinstance(spans, list) else ():
        if not isinstance(span, dict):
            continue
        service = wanted.get(span.get("name", ""))
        wait = (span.get("tags") or {}).get("lisa.queue_wait_ms")
        if service is None or wait is None:
            continue
        try:
            waits[service] = min(waits.get(service, float("inf")), float(wait))
        except ValueError:
            continue
    return waits or None


def make_app(monitor: Monitor) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)

    async def index(_: web.Request) -> web.Response:
        return web.Response(body=_static("index.html"), content_type="text/html", charset="utf-8")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(body=_static(name), content_type=STATIC[name], charset="utf-8")

    async def overview(_: web.Request) -> web.Response:
        now_ms = monitor.now_ms()
        flows = monitor.model.flows.values()
        stuck = [summary(f, now_ms) for f in flows if f.stuck is not None]
        dead = [summary(f, now_ms) for f in flows if f.death is not None]
        replay_kafka, why = monitor.settings.replay_kafka(monitor.kafka)
        return web.json_response(
            {
                "service": "flows",
                "ready": monitor.health.ready,
                "now": iso(now_ms).isoformat(),
                "now_ms": now_ms,
                "offsets_read_ms": monitor.offsets_read_ms,
                "deadline_s": monitor.settings.deadline_s,
                "deadlines": {
                    s.reached: monitor.settings.deadline_for(s) for s in STAGE_BY_INPUT.values()
                },
                "window_s": monitor.settings.window_s,
                "zipkin_url": zipkin_url(),
                "replay": {"enabled": replay_kafka is not None, "why": why},
                "stages": list(LABELS),
                "graph": graph(monitor, now_ms),
                "counts": counts(monitor.model),
                "stuck": sorted(stuck, key=lambda s: s["stuck"]["since"])[:LISTED],
                "dead": sorted(dead, key=lambda s: s["death"]["at"], reverse=True)[:LISTED],
                "letters": len(monitor.letters),
                "paused": {
                    step: {"reason": c.reason, "requested_by": c.requested_by}
                    for step, c in sorted(monitor.paused().items())
                },
                "alerts": list(reversed(monitor.recent))[:20],
            }
        )

    async def flow_list(request: web.Request) -> web.Response:
        status = request.query.get("status", "all")
        if status not in STATUSES:
            raise web.HTTPBadRequest(text=f"status must be one of {', '.join(STATUSES)}")
        prefix = request.query.get("q", "")
        try:
            limit = max(1, min(int(request.query.get("limit", "200")), 5000))
        except ValueError as exc:
            raise web.HTTPBadRequest(text="limit must be an integer") from exc
        now_ms = monitor.now_ms()
        chosen = [
            f
            for s, f in sorted(monitor.model.flows.items())
            if s.startswith(prefix)
            and (
                status in ("all", f.status) or (status == "retracted" and f.retraction is not None)
            )
        ]
        return web.json_response(
            {"total": len(chosen), "flows": [summary(f, now_ms) for f in chosen[:limit]]}
        )

    async def segment(request: web.Request) -> web.Response:
        segment_id = request.match_info["segment_id"]
        flow = monitor.model.flows.get(segment_id)
        if flow is None:
            return web.json_response({"error": f"no flow of segment {segment_id}"}, status=404)
        trace_id = flow.trace_id
        waits = await span_waits(monitor, trace_id) if trace_id else None
        ids = set(flow.alerts)
        now_ms = monitor.now_ms()
        return web.json_response(
            {
                "now_ms": now_ms,
                "flow": summary(flow, now_ms),
                "timeline": timeline(flow, monitor.model.flows.values(), waits),
                "waits_from": "trace" if waits else "records",
                "trace_id": trace_id,
                "trace_url": f"{zipkin_url()}/zipkin/traces/{trace_id}" if trace_id else None,
                "alerts": [a for a in reversed(monitor.recent) if a["id"] in ids],
            }
        )

    async def dead_letters(_: web.Request) -> web.Response:
        letters = sorted(monitor.letters.values(), key=lambda d: d.headers.get("dlq_time", ""))
        return web.json_response(
            {
                "letters": [letter_view(monitor, d) for d in reversed(letters)],
                "topics": list(monitor.letter_topics),
            }
        )

    async def replay(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="send application/json")
        try:
            body = await request.json()
            refs = [str(r) for r in body["refs"]][:1000]
        except (ValueError, KeyError, TypeError) as exc:
            raise web.HTTPBadRequest(
                text='expected {"refs": ["<topic>.dlq/<p>/<offset>", ...]}'
            ) from exc
        kafka, why = monitor.settings.replay_kafka(monitor.kafka)
        if kafka is None:
            return web.json_response({"error": why}, status=403)
        letters = await replay_core.read_letters(kafka, monitor.letter_topics)
        chosen = [d for d in letters if d.ref in set(refs)]
        unknown = sorted(set(refs) - {d.ref for d in chosen})
        replayed, skipped, refused = await replay_core.replay(kafka, chosen, client="flows-replay")
        log.info("replay", replayed=replayed, skipped=skipped, refused=refused, unknown=unknown)
        return web.json_response(
            {
                "replayed": replayed,
                "skipped": skipped,
                "refused": refused,
                "unknown": unknown,
                "as": why,
            }
        )

    async def alerts(_: web.Request) -> web.Response:
        return web.json_response({"alerts": list(reversed(monitor.recent))})

    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/overview", overview)
    app.router.add_get("/api/flows", flow_list)
    app.router.add_get("/api/segments/{segment_id}", segment)
    app.router.add_get("/api/deadletters", dead_letters)
    app.router.add_post("/api/deadletters/replay", replay)
    app.router.add_get("/api/alerts", alerts)
    return app


async def serve(monitor: Monitor) -> web.AppRunner | None:
    """Serve the view on ``LISA_FLOWS_HTTP_HOST:PORT`` (unset port: no view)."""
    port = monitor.settings.http_port
    if port is None:
        return None
    runner = web.AppRunner(make_app(monitor), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, monitor.settings.http_host, port)
    await site.start()
    sockets = site._server.sockets if site._server else ()
    bound = sockets[0].getsockname()[1] if sockets else port
    monitor.health.details["view"] = f"http://{monitor.settings.http_host}:{bound}/"
    log.info("flow view", url=monitor.health.details["view"])
    return runner
