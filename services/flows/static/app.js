// The flow view: reads the monitor's JSON API and draws it. Vanilla JS, inline SVG, no library,
// no network beyond this server. Every text shown comes from Kafka records, which are not
// trusted: it is set as textContent / attribute values, never parsed as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const state = { overview: null, segment: null, letters: [], selected: new Set() };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  }
  if (text !== undefined) node.textContent = String(text);
  return node;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

function fmtRate(r) {
  if (r === null || r === undefined) return "–";
  return r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(2);
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toISOString().replace("T", " ").slice(0, 23);
}

function short(text, n) {
  text = String(text || "");
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

// -- the graph --------------------------------------------------------------------------------

const COL = 131, X0 = 72, Y_SERVICE = 58, Y_TOPIC = 182, Y_DLQ = 300;

function layout(graph) {
  // services and their output topics alternate in columns, in the pipeline's order
  const pos = {};
  let col = 0;
  for (const node of graph.nodes) {
    if (node.kind === "service") {
      pos[node.id] = { x: X0 + COL * col++, y: Y_SERVICE };
    } else if (node.kind === "topic") {
      pos[node.id] = { x: X0 + COL * col++, y: Y_TOPIC };
    }
  }
  for (const e of graph.edges) {
    if (e.kind === "dead-letter") pos[e.to] = { x: pos[e.from].x, y: Y_DLQ };
  }
  return pos;
}

function nodeBox(g, node, p) {
  const stuck = node.kind === "topic" && node.stuck > 0;
  if (node.kind === "service") {
    g.append(svg("rect", { x: p.x - 56, y: p.y - 20, width: 112, height: 40, rx: 18,
      fill: node.paused ? "var(--warn-bg)" : "var(--service)",
      stroke: node.paused ? "var(--warn)" : "var(--service-edge)", "stroke-width": 1.5,
      "stroke-dasharray": node.paused ? "5 3" : null }));
    g.append(svg("text", { x: p.x, y: p.y + 5, "text-anchor": "middle", "font-size": 14,
      "font-weight": 600, fill: "#1e3a8a" }, node.name));
    if (node.paused) {
      const badge = svg("text", { x: p.x, y: p.y - 26, "text-anchor": "middle", "font-size": 11,
        "font-weight": 700, fill: "var(--warn)", class: "paused-badge", "data-step": node.name },
        "PAUSED");
      badge.append(svg("title", {}, `paused${node.paused_reason ? `: ${node.paused_reason}` : ""}` +
        `${node.paused_by ? ` (by ${node.paused_by})` : ""}`));
      g.append(badge);
    }
    return;
  }
  const dlq = node.kind === "dlq";
  const bad = dlq ? node.letters > 0 : stuck;
  const fill = dlq ? (bad ? "var(--bad-bg)" : "#fafafa") : stuck ? "var(--bad-bg)" : "var(--topic)";
  const stroke = bad ? "var(--bad)" : "var(--topic-edge)";
  const w = 124, h = dlq ? 40 : 48, top = p.y - h / 2;
  g.append(svg("path", {
    d: `M${p.x - w / 2},${top + 6} v${h - 12} a${w / 2},6 0 0 0 ${w},0 v${-(h - 12)}`,
    fill, stroke, "stroke-width": bad ? 2.2 : 1.2 }));
  g.append(svg("ellipse", { cx: p.x, cy: top + 6, rx: w / 2, ry: 6, fill, stroke,
    "stroke-width": bad ? 2.2 : 1.2 }));
  const name = node.name.replace(/^lisa\./, "");
  const cut = name.lastIndexOf(".");
  const first = cut > 0 ? name.slice(0, cut) : "", last = cut > 0 ? name.slice(cut + 1) : name;
  if (dlq) {
    g.append(svg("text", { x: p.x, y: p.y + 1, "text-anchor": "middle", "font-size": 10.5,
      fill: "#374151" }, short(name.replace(/\.dlq$/, ""), 24)));
    g.append(svg("text", { x: p.x, y: p.y + 14, "text-anchor": "middle", "font-size": 11,
      "font-weight": 700, fill: bad ? "var(--bad)" : "#6b7280" },
      `.dlq · ${node.letters} letter${node.letters === 1 ? "" : "s"}`));
    return;
  }
  g.append(svg("text", { x: p.x, y: p.y + 3, "text-anchor": "middle", "font-size": 10.5,
    fill: "#4b5563" }, first));
  g.append(svg("text", { x: p.x, y: p.y + 17, "text-anchor": "middle", "font-size": 12.5,
    "font-weight": 700, fill: "#111827" }, last));
  // the stage this topic marks, and its counts
  g.append(svg("text", { x: p.x, y: p.y + h / 2 + 17, "text-anchor": "middle", "font-size": 11,
    "font-weight": 600, fill: "#374151" }, `${node.stage}: ${node.reached}`));
  const parts = [];
  if (node.at) parts.push(`${node.at} waiting`);
  if (node.stuck) parts.push(`${node.stuck} stuck`);
  g.append(svg("text", { x: p.x, y: p.y + h / 2 + 31, "text-anchor": "middle", "font-size": 11,
    "font-weight": node.stuck ? 700 : 400, fill: node.stuck ? "var(--bad)" : "#6b7280" },
    parts.join(" · ") || "none waiting"));
}

function edgeLine(g, e, a, b) {
  const bad = (e.kind === "consume" && e.stuck > 0) || (e.kind === "dead-letter" && e.letters > 0);
  const dashed = e.kind === "dead-letter";
  // from the border of one node to the border of the other
  const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
  const pad = (p, node) => (node === "dlq" ? 24 : p.y === Y_SERVICE ? 24 : 30);
  const sa = pad(a), sb = pad(b, e.kind === "dead-letter" ? "dlq" : "");
  const x1 = a.x + (dx / len) * sa * (Math.abs(dx) > Math.abs(dy) ? 2.2 : 1);
  const y1 = a.y + (dy / len) * sa;
  const x2 = b.x - (dx / len) * sb * (Math.abs(dx) > Math.abs(dy) ? 2.2 : 1);
  const y2 = b.y - (dy / len) * sb;
  g.append(svg("line", { x1, y1, x2, y2, stroke: bad ? "var(--bad)" : "#6b7280",
    "stroke-width": bad ? 2.6 : 1.4, "stroke-dasharray": dashed ? "5 4" : null,
    "marker-end": bad ? "url(#arrow-bad)" : "url(#arrow)" }));
  return { x: (x1 + x2) / 2, y: (y1 + y2) / 2, bad };
}

function edgeLabel(g, e, mid) {
  const lines = [];
  if (e.kind === "produce") lines.push(`${fmtRate(e.rate)} ev/s`);
  if (e.kind === "consume") {
    lines.push(`${fmtRate(e.rate)} ev/s · lag ${e.lag ?? "–"}`);
    lines.push(`oldest ${fmtSeconds(e.oldest_s)}`);
    if (e.stuck) lines.push(`${e.stuck} stuck > ${e.deadline_s} s`);
  }
  if (e.kind === "dead-letter") {
    if (!e.letters) return;
    lines.push(`${e.letters} dead`);
  }
  const h = 13 * lines.length + 4, w = 8 + 6.1 * Math.max(...lines.map((l) => l.length));
  const x = e.kind === "dead-letter" ? mid.x + 8 : mid.x - w / 2;
  const y = mid.y - h / 2;
  g.append(svg("rect", { x, y, width: w, height: h, rx: 3, fill: "#fff", opacity: 0.92,
    stroke: mid.bad ? "var(--bad)" : "#e5e7eb" }));
  lines.forEach((line, i) => {
    const stuckLine = e.kind === "consume" && i === 2;
    g.append(svg("text", { x: x + w / 2, y: y + 13 + 13 * i, "text-anchor": "middle",
      "font-size": 10.5, "font-weight": stuckLine || mid.bad ? 700 : 400,
      fill: stuckLine || mid.bad ? "var(--bad)" : "#374151" }, line));
  });
}

function drawGraph(graph) {
  const root = document.getElementById("graph");
  root.replaceChildren();
  const defs = svg("defs");
  for (const [id, color] of [["arrow", "#6b7280"], ["arrow-bad", "#b91c1c"]]) {
    const m = svg("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
      markerHeight: 7, orient: "auto-start-reverse" });
    m.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: color }));
    defs.append(m);
  }
  root.append(defs);
  const pos = layout(graph);
  const edges = svg("g"), labels = svg("g"), nodes = svg("g");
  for (const e of graph.edges) {
    if (!pos[e.from] || !pos[e.to]) continue;
    const mid = edgeLine(edges, e, pos[e.from], pos[e.to]);
    edgeLabel(labels, e, mid);
  }
  for (const node of graph.nodes) {
    if (!pos[node.id]) continue;
    const g = svg("g", { "data-node": node.id, class: `node ${node.kind}` });
    nodeBox(g, node, pos[node.id]);
    nodes.append(g);
  }
  root.append(edges, nodes, labels);
}

// -- tables -----------------------------------------------------------------------------------

function fillTable(id, rows, emptyId) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows);
  if (emptyId) document.getElementById(emptyId).style.display = rows.length ? "none" : "";
}

function drawStages(ov) {
  const rows = ov.stages.map((label, i) => {
    const c = ov.counts.stages[label];
    const deadline = ov.deadlines[ov.stages[i + 1]];  // to move on to the next stage
    return el("tr", { class: c.stuck ? "stuck" : null },
      el("td", {}, label),
      el("td", { class: "num" }, c.reached),
      el("td", { class: "num" }, c.at),
      el("td", { class: c.stuck ? "num bad" : "num" }, c.stuck),
      el("td", { class: c.dead ? "num bad" : "num" }, c.dead),
      el("td", { class: "num muted" }, deadline ? `${deadline} s` : "–"));
  });
  fillTable("stages", rows);
}

function drawStuck(ov) {
  const rows = ov.stuck.map((f) => el("tr", {
    class: "stuck click", "data-segment": f.segment_id, onclick: () => showSegment(f.segment_id) },
    el("td", { class: "mono" }, f.segment_id),
    el("td", {}, f.stuck.service),
    el("td", {}, f.stuck.stage),
    el("td", { class: "mono" }, f.waiting ? `${f.waiting.topic}/${f.waiting.partition}/${f.waiting.offset}` : "–"),
    el("td", { class: "bad" }, f.waiting ? fmtSeconds(f.waiting.waited_s) : "–")));
  fillTable("stuck", rows, "stuck-empty");
  document.getElementById("stuck-count").textContent = ov.stuck.length ? `(${ov.stuck.length})` : "";
}

function drawAlerts(ov) {
  const rows = ov.alerts.map((a) => {
    const kind = String(a.type || "").split(".")[2] || a.type;
    let detail = "";
    if (kind === "stuck") detail = `waits for ${a.service} on ${a.topic}/${a.partition}/${a.offset} for ${fmtSeconds(a.waited_s)} (deadline ${a.deadline_s} s)`;
    if (kind === "recovered") detail = `moved by ${a.service} after ${fmtSeconds(a.stuck_for_s)}`;
    if (kind === "deadlettered") detail = `${a.service}: ${a.reason} (${short(a.error, 80)})`;
    return el("tr", { class: kind === "recovered" ? "" : "stuck" },
      el("td", { class: "mono" }, fmtTime(a.at_ms ? new Date(a.at_ms).toISOString() : null)),
      el("td", { class: kind === "recovered" ? "good" : "bad" }, kind),
      el("td", { class: "mono" }, a.segment_id || ""),
      el("td", {}, a.stage || ""),
      el("td", { class: "wrap" }, detail));
  });
  fillTable("alerts", rows, "alerts-empty");
}

function drawHeader(ov) {
  const status = document.getElementById("status");
  status.textContent = ov.ready ? "live" : "starting";
  status.className = `pill ${ov.ready ? "ok" : ""}`;
  const t = ov.counts.total;
  const totals = document.getElementById("totals");
  totals.replaceChildren(
    el("b", {}, t.segments), " segments · ", el("b", {}, t.catalogued), " catalogued · ",
    el("b", {}, t.in_flight), " in flight · ",
    el("span", { class: t.stuck ? "bad" : "" }, `${t.stuck} stuck`), " · ",
    el("span", { class: t.dead ? "bad" : "" }, `${t.dead} dead-lettered`), " · ",
    el("span", { id: "retracted-count" }, `${t.retracted} retracted`),
    ...Object.keys(ov.paused).map((step) =>
      el("span", { class: "pill warn paused-step" }, `${step} paused`)));
  document.getElementById("clock").textContent = `updated ${fmtTime(ov.now)} UTC`;
  const list = document.getElementById("segments");
  const ids = [...ov.stuck, ...ov.dead].map((f) => f.segment_id);
  list.replaceChildren(...ids.map((id) => el("option", { value: id })));
}

// -- one segment ------------------------------------------------------------------------------

function drawTimeline(rows, flow, nowMs) {
  // one row per stage: the hop from the previous stage, queue wait then processing; and, for a
  // flow still on its way, the wait for the next service up to now (red when stuck)
  const points = rows.map((r) => (r.at_ms !== undefined ? r.at_ms : Date.parse(r.at)));
  const waiting = flow.waiting && !["catalogued", "dead-lettered"].includes(flow.status);
  const all = waiting ? [...rows, { stage: flow.next, service: flow.waiting_for, status: flow.status }] : rows;
  const box = svg("svg", { class: "timeline", viewBox: `0 0 1300 ${26 * all.length + 30}` });
  if (!points.length) return box;
  const t0 = points[0];
  const last = Math.max(...points, waiting ? nowMs : points[0]);
  const span = Math.max(1, last - t0);
  const X1 = 200, WIDTH = 880;
  const x = (t) => X1 + ((t - t0) / span) * WIDTH;
  all.forEach((r, i) => {
    const y = 8 + 26 * i;
    box.append(svg("text", { x: 0, y: y + 13, "font-size": 12, fill: "#111827" },
      `${r.stage} · ${short(r.service, 12)}`));
    let end, note, color = "#374151";
    if (i >= rows.length) {  // the wait still going on
      const since = points[points.length - 1];
      end = nowMs;
      const stuck = r.status === "stuck";
      box.append(svg("rect", { x: x(since), y, width: Math.max(1.5, x(nowMs) - x(since)), height: 16,
        fill: stuck ? "var(--bad)" : "var(--wait)", opacity: 0.85 }));
      note = `${stuck ? "STUCK: " : ""}waiting ${fmtSeconds((nowMs - since) / 1000)} for ${r.service}`;
      color = stuck ? "var(--bad)" : "var(--warn)";
    } else if (i === 0) {
      end = points[0];
      box.append(svg("rect", { x: x(end) - 1, y, width: 3, height: 16, fill: "#111827" }));
      note = "published";
    } else {
      const prev = points[i - 1];
      end = points[i];
      const wait = Math.min(r.queue_wait_ms || 0, Math.max(0, end - prev));
      box.append(svg("rect", { x: x(prev), y, width: Math.max(1, x(prev + wait) - x(prev)),
        height: 16, fill: "var(--wait)" }));
      box.append(svg("rect", { x: x(prev + wait), y,
        width: Math.max(1.5, x(end) - x(prev + wait)), height: 16,
        fill: r.status === "dead-lettered" ? "var(--bad)" : "var(--work)" }));
      note = r.status === "dead-lettered" ? `dead-lettered: ${r.reason}`
        : `${r.hop_ms} ms${r.queue_wait_ms ? ` (${Math.round(r.queue_wait_ms)} ms queued)` : ""}`;
      if (r.status === "dead-lettered") color = "var(--bad)";
    }
    box.append(svg("text", { x: x(end) + 6, y: y + 13, "font-size": 11, fill: color }, note));
  });
  const axis = 8 + 26 * all.length;
  box.append(svg("line", { x1: X1, y1: axis, x2: X1 + WIDTH, y2: axis, stroke: "#d1d5db" }));
  box.append(svg("text", { x: X1, y: axis + 14, "font-size": 11, fill: "#6b7280" }, "0"));
  box.append(svg("text", { x: X1 + WIDTH, y: axis + 14, "font-size": 11, fill: "#6b7280",
    "text-anchor": "end" }, fmtSeconds(span / 1000)));
  return box;
}

function drawSegment(data) {
  const root = document.getElementById("segment");
  const f = data.flow;
  const head = el("div", { class: "flowhead" },
    el("span", { class: "mono", id: "segment-id" }, f.segment_id),
    el("span", { class: `status ${f.status}` }, f.status),
    f.stuck ? el("span", { class: "bad" },
      `stuck waiting for ${f.stuck.service} since ${fmtTime(f.stuck.since)}`) : null,
    f.death ? el("span", { class: "bad" }, `dead-lettered by ${f.death.service}: ${f.death.reason}`) : null,
    f.retraction ? el("span", { class: "warn", id: "retraction" },
      `retracted ${fmtTime(f.retraction.at)}${f.retraction.reason ? `: ${f.retraction.reason}` : ""}` +
      `${f.retraction.requested_by ? ` (by ${f.retraction.requested_by})` : ""}` +
      " · never counted in the catalogue") : null,
    data.trace_url
      ? el("a", { href: data.trace_url, target: "_blank", rel: "noopener", id: "trace-link" },
        `trace ${data.trace_id} in the tracing UI`)
      : el("span", { class: "muted" }, "no trace id on its records"));
  const legend = el("div", { class: "legend" },
    el("span", {}, el("span", { class: "swatch", style: "background:var(--wait)" }), "queue wait"),
    el("span", {}, el("span", { class: "swatch", style: "background:var(--work)" }), "processing + send"),
    el("span", {}, data.waits_from === "trace"
      ? "queue waits: the consumers' spans (lisa.queue_wait_ms)"
      : "queue waits: estimated from record times (trace not in the backend)"));
  const rows = data.timeline.map((r) => el("tr", { class: r.status === "dead-lettered" ? "dead" : "" },
    el("td", {}, r.stage),
    el("td", {}, r.service),
    el("td", { class: "mono" }, fmtTime(r.at)),
    el("td", { class: "num" }, r.hop_ms ?? "–"),
    el("td", { class: "num" }, r.queue_wait_ms ?? "–"),
    el("td", { class: "mono" }, r.topic ? `${r.topic}/${r.partition}/${r.offset}` : r.ref || ""),
    el("td", { class: "wrap" }, r.status === "dead-lettered" ? `${r.reason}: ${short(r.error, 90)}` : r.via === "commit" ? "consumer committed" : "")));
  const table = el("table", { id: "timeline" },
    el("thead", {}, el("tr", {}, ...["stage", "service", "at (UTC)", "hop ms", "queue wait ms",
      "record", "note"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
  root.replaceChildren(head, legend, drawTimeline(data.timeline, f, data.now_ms), table);
}

async function showSegment(id) {
  if (!id) return;
  document.getElementById("q").value = id;
  let data;
  try {
    data = await api(`/api/segments/${encodeURIComponent(id)}`);
  } catch (err) {
    const list = await api(`/api/flows?q=${encodeURIComponent(id)}&limit=20`).catch(() => null);
    if (list && list.flows.length === 1) return showSegment(list.flows[0].segment_id);
    const root = document.getElementById("segment");
    root.replaceChildren(el("p", { class: "bad" }, err.message),
      list && list.flows.length ? el("p", {}, "Matching: ",
        ...list.flows.map((f) => el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); showSegment(f.segment_id); } }, f.segment_id, " "))) : null);
    state.segment = null;
    return;
  }
  state.segment = id;
  drawSegment(data);
  const url = new URL(window.location.href);
  url.searchParams.set("segment", id);
  window.history.replaceState(null, "", url);
}

// -- dead letters -----------------------------------------------------------------------------

function drawLetters(data, replay) {
  const rows = data.letters.map((d) => {
    const box = el("input", { type: "checkbox", "data-ref": d.ref, disabled: !replay.enabled || d.replayed,
      onchange: (ev) => { if (ev.target.checked) state.selected.add(d.ref); else state.selected.delete(d.ref); updateReplayButton(); } });
    box.checked = state.selected.has(d.ref);
    return el("tr", { class: d.replayed ? "" : "dead" },
      el("td", {}, box),
      el("td", { class: "mono" }, d.segment_id ? el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); showSegment(d.segment_id); } }, d.segment_id) : "–"),
      el("td", {}, d.service),
      el("td", { class: "bad" }, d.reason),
      el("td", { class: "wrap" }, short(d.error, 110)),
      el("td", { class: "mono" }, fmtTime(d.time)),
      el("td", { class: "mono" }, d.ref),
      el("td", { class: d.replayed ? "good" : "muted" }, d.replayed ? "yes" : "no"));
  });
  fillTable("letters", rows, "letters-empty");
  document.getElementById("letters-count").textContent = data.letters.length ? `(${data.letters.length})` : "";
  document.getElementById("replay-note").textContent = replay.enabled
    ? `Replay sends a letter back to the topic it came from, as lisa-choreo dlq replay does (${replay.why}).`
    : `Replay unavailable: ${replay.why}.`;
  updateReplayButton();
}

function updateReplayButton() {
  const button = document.getElementById("replay");
  button.disabled = state.selected.size === 0;
  button.textContent = state.selected.size ? `Replay ${state.selected.size} selected` : "Replay selected";
}

async function replaySelected() {
  const refs = [...state.selected];
  const out = document.getElementById("replay-result");
  out.textContent = "replaying…";
  try {
    const r = await api("/api/deadletters/replay", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refs }) });
    out.textContent = `replayed ${r.replayed.length}, skipped ${r.skipped.length} already replayed, refused ${r.refused.length}${r.unknown.length ? `, unknown ${r.unknown.length}` : ""}`;
    state.selected.clear();
  } catch (err) {
    out.textContent = `replay failed: ${err.message}`;
  }
  refreshLetters();
}

// -- refresh ----------------------------------------------------------------------------------

async function refresh() {
  try {
    const ov = await api("/api/overview");
    state.overview = ov;
    drawHeader(ov);
    drawGraph(ov.graph);
    drawStages(ov);
    drawStuck(ov);
    drawAlerts(ov);
    if (state.segment) {
      const data = await api(`/api/segments/${encodeURIComponent(state.segment)}`).catch(() => null);
      if (data) drawSegment(data);
    }
  } catch (err) {
    const status = document.getElementById("status");
    status.textContent = `monitor unreachable: ${err.message}`;
    status.className = "pill bad";
  }
}

async function refreshLetters() {
  try {
    const data = await api("/api/deadletters");
    drawLetters(data, state.overview ? state.overview.replay : { enabled: false, why: "starting" });
  } catch (err) {
    document.getElementById("replay-note").textContent = `dead letters unreadable: ${err.message}`;
  }
}

document.getElementById("search").addEventListener("submit", (ev) => {
  ev.preventDefault();
  showSegment(document.getElementById("q").value.trim());
});
document.getElementById("replay").addEventListener("click", replaySelected);

(async () => {
  await refresh();
  await refreshLetters();
  const wanted = new URL(window.location.href).searchParams.get("segment");
  if (wanted) await showSegment(wanted);
  setInterval(refresh, 2000);
  setInterval(refreshLetters, 5000);
})();
