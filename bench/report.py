"""The table on stdout, the JSON report and the PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Row:
    metric: str
    value: str
    target: str = "-"
    status: str = "info"  # pass | short | info | error

    @classmethod
    def check(cls, metric: str, value: float, fmt: str, target: str, ok: bool) -> Row:
        return cls(metric, fmt.format(value), target, "pass" if ok else "short")


def table(rows: list[Row]) -> str:
    widths = [
        max(len(h), *(len(getattr(r, a)) for r in rows))
        for h, a in (("metric", "metric"), ("value", "value"), ("target", "target"))
    ]
    head = f"{'metric':<{widths[0]}}  {'value':<{widths[1]}}  {'target':<{widths[2]}}  status"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.metric:<{widths[0]}}  {r.value:<{widths[1]}}  {r.target:<{widths[2]}}  {r.status}"
        )
    return "\n".join(lines)


def write_json(path: Path, report: dict, rows: list[Row]) -> None:
    report = {**report, "table": [asdict(r) for r in rows]}
    path.write_text(json.dumps(report, indent=1, default=str))


def plots(out: Path, report: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[str] = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)

    cmp = report.get("choreography_vs_in_process", {})
    sizes = [k for k, v in cmp.items() if isinstance(v, dict) and "ratio" in v]
    if sizes:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        x = range(len(sizes))
        a = [cmp[s]["in_process"]["segments_per_s"] for s in sizes]
        b = [cmp[s]["choreography"]["segments_per_s"] for s in sizes]
        ax.bar([i - 0.2 for i in x], a, 0.4, label="(a) in-process, sequential")
        ax.bar([i + 0.2 for i in x], b, 0.4, label="(b) choreography, Kafka")
        for i, s in enumerate(sizes):
            ax.annotate(
                f"b/a = {cmp[s]['ratio']:.2f}",
                (i, max(a[i], b[i])),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_xticks(list(x), [f"{s} segments" for s in sizes])
        ax.set_ylabel("segments / s")
        ax.set_title("Throughput: same kernels, same data")
        ax.legend(fontsize=8, loc="lower right")
        save(fig, "throughput.png")

    hop = report.get("hop", {})
    if "samples_ms" in hop:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for name, values in hop["samples_ms"].items():
            s = sorted(values)
            if s:
                ax.plot(s, [(i + 1) / len(s) for i in range(len(s))], label=name)
        ax.set_xscale("log")
        ax.set_xlabel("produce -> consume latency (ms)")
        ax.set_ylabel("fraction of messages")
        ax.set_title(f"One hop, {hop.get('body_bytes')} B body, {hop.get('rate_hz')} Hz")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        save(fig, "hop_latency.png")

    growth = report.get("catalogue_growth", {})
    if "cpu_ms" in growth:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        cpu = growth["cpu_ms"]
        k = max(1, len(cpu) // 200)  # a running median over k segments, ~200 points
        xs = list(range(k, len(cpu) + 1, k))
        ax.plot(xs, [sorted(cpu[x - k : x])[k // 2] for x in xs], lw=1)
        ax.set_ylim(0, 3 * growth["cpu_ms_first"])
        ax.set_xlabel("segments already stacked")
        ax.set_ylabel("catalogue CPU ms per segment")
        ax.set_title("Catalogue cost as it grows (in-process path)")
        ax.grid(alpha=0.3)
        save(fig, "catalogue_growth.png")

    cmp = report.get("choreography_vs_in_process", {})
    limits = {s: v["limits"] for s, v in cmp.items() if isinstance(v, dict) and "limits" in v}
    if limits:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        sizes = list(limits)
        names = list(limits[sizes[-1]]["cpu_ms_per_segment"])
        bottom = [0.0] * len(sizes)
        for name in names:
            values = [limits[s]["cpu_ms_per_segment"].get(name, 0.0) for s in sizes]
            ax.bar([f"{s} segments" for s in sizes], values, 0.5, bottom=bottom, label=name)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        for i, s in enumerate(sizes):
            a_ms = cmp[s]["in_process"]["cpu_s"] * 1e3 / cmp[s]["in_process"]["segments"]
            ax.plot([i - 0.3, i + 0.3], [a_ms, a_ms], "k--", lw=1)
        ax.set_ylabel("CPU ms per segment")
        ax.set_title("CPU per segment by process (dashed: in-process)")
        ax.legend(fontsize=7)
        save(fig, "cpu_per_segment.png")

    e2e = report.get("end_to_end", {})
    if "per_segment" in e2e:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ps = e2e["per_segment"]
        ax.plot(
            [p["published"] for p in ps], [p["stacked"] - p["published"] for p in ps], "o-", ms=3
        )
        ax.set_xlabel("raw segment published at (s)")
        ax.set_ylabel("published -> catalogue updated (s)")
        ax.set_title(f"End-to-end latency, one segment every {e2e['interval_s']} s")
        ax.grid(alpha=0.3)
        save(fig, "e2e_latency.png")

    growth = report.get("scaling", {}).get("growth", {})
    rss_runs = {s: cmp[s]["choreography"].get("rss_mb", {}) for s in sizes}
    if rss_runs:
        fig, axes = plt.subplots(1, len(rss_runs), figsize=(5 * len(rss_runs), 3.6), squeeze=False)
        for ax, (size, series) in zip(axes[0], rss_runs.items(), strict=True):
            for name, points in series.items():
                if name == "kafka-broker" or not points:
                    continue
                ax.plot([p[0] for p in points], [p[1] for p in points], label=name)
            ax.set_title(f"RSS per service, {size} segments")
            ax.set_xlabel("s since ingest started")
            ax.set_ylabel("MiB")
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
        save(fig, "rss.png")

    replicas = report.get("scaling", {}).get("replicas", [])
    if replicas or growth:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        if replicas:
            ax.bar(
                [f"{r['step']} x{r['replicas']}" for r in replicas],
                [r["events_per_s"] for r in replicas],
            )
            ax.set_ylabel("events / s")
            ax.set_title("Slowest step, 1 vs 2 replicas (2 cores)")
        save(fig, "scaling.png")

    tr = report.get("tracing", {})
    if "runs" in tr:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for i, mode in enumerate(("none", "zipkin")):
            vals = [r["segments_per_s"] for r in tr["runs"][mode]]
            ax.scatter([i] * len(vals), vals, zorder=3)
            ax.bar(i, tr[f"throughput_{mode}"], 0.5, alpha=0.4)
        ax.set_xticks([0, 1], ["tracing off", "tracing -> Zipkin"])
        ax.set_ylabel("segments / s")
        ax.set_title(f"Tracing overhead {100 * tr['overhead']:.1f} %")
        save(fig, "tracing.png")

    k = report.get("kernel", {})
    if "kernel_ms" in k:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        ax.bar(
            ["search_statistic", f"2 x rfft({k['pad_factor']}n)", "1 x rfft(n)"],
            [k["kernel_ms"], k["floor_two_padded_rfft_ms"], k["one_rfft_of_the_day_ms"]],
        )
        ax.set_ylabel("ms per one-day segment")
        ax.set_title(f"Search kernel vs FFT floor: {k['ratio']:.2f}x")
        save(fig, "kernel.png")
    return written
