"""The six measurements as sections of one run: each returns (JSON result, table rows)."""

from __future__ import annotations

import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.data import Dataset, make_dataset
from bench.fleet import Fleet
from bench.pipeline import INPUT_TOPIC, Context, run_pipeline, run_replicas, run_steady, run_tracing
from bench.report import Row

if TYPE_CHECKING:
    from bench.run import Config

Section = Callable[[], tuple[dict, list[Row]]]
RUNNER_STEPS = ("condition", "gb-search", "estimate")  # the catalogue's grid is one partition


@dataclass
class State:
    cfg: Config
    ctx: Context
    out: Path
    profile: bool
    zipkin_error: str | None
    datasets: dict[str, Dataset] = field(default_factory=dict)
    runs: dict[int, dict] = field(default_factory=dict)  # size -> choreography result
    run_settings: dict[int, object] = field(default_factory=dict)  # size -> KafkaSettings
    kept: Fleet | None = None  # the smallest run's fleet, for the steady-rate case
    chain_floor_ms: float | None = None  # the kernel section's FFT floor of the whole chain

    def dataset(self, kind: str, days: int, seed: int) -> Dataset:
        key = f"{kind}-{days}-{seed}"
        if key not in self.datasets:
            path = self.ctx.workdir / "data" / f"{key}.h5"
            t = time.monotonic()
            self.datasets[key] = make_dataset(path, days, kind, seed)
            self.ctx.log(f"  dataset {key}: {time.monotonic() - t:.1f} s to simulate")
        return self.datasets[key]


def _fmt_rate(seg_per_s: float, samples: int) -> str:
    return f"{seg_per_s:.2f} seg/s ({seg_per_s * samples / 1e3:.0f} k samples/s)"


# -- 6. kernel -------------------------------------------------------------------------------


def kernel(state: State) -> Section:
    def run():
        from bench.kernel import run_chain_floor, run_kernel

        r = run_kernel(rounds=state.cfg.kernel_rounds)
        floor = run_chain_floor(rounds=state.cfg.kernel_rounds)
        r["chain_floor_ms"] = floor
        state.chain_floor_ms = floor["total"]
        return r, [
            Row(
                "chain FFT floor per segment (ms): condition | search | estimate = total",
                f"{floor['condition']:.2f} | {floor['gb-search']:.2f} | {floor['estimate']:.2f}"
                f" = {floor['total']:.2f}",
            ),
            Row(
                "search kernel, one day (ms) | 2 x rfft(2n) floor",
                f"{r['kernel_ms']:.2f} | {r['floor_two_padded_rfft_ms']:.2f}",
            ),
            Row.check(
                "search kernel / FFT floor", r["ratio"], "{:.2f}x", "<= 3x", r["ratio"] <= 3.0
            ),
        ]

    return run


# -- in process -------------------------------------------------------------------------------


def in_process(state: State) -> Section:
    """(a) of the comparison alone, no broker: the pipeline's kernels in one process on the
    same datasets, per step (wall and CPU), against the chain's FFT floor when the kernel
    section ran first."""

    def run():
        from bench.inprocess import run_in_process

        out: dict = {}
        rows: list[Row] = []
        for size in dict.fromkeys(state.cfg.sizes):
            data = state.dataset("lines", size, seed=1)
            state.ctx.log(f"  (a) in-process, {size} segments")
            work = state.ctx.workdir / f"in-process-{size}"
            a = run_in_process(data, (work / "store").as_uri(), work / "products")
            r = a.to_json()
            per_segment_ms = 1e3 * a.cpu_s / a.segments
            r["cpu_ms_per_segment"] = per_segment_ms
            steps = " | ".join(f"{v:.1f}" for v in r["per_step_cpu_ms_per_segment"].values())
            rows += [
                Row(
                    f"(a) in-process, {size} segments",
                    _fmt_rate(a.segments_per_s, data.samples_per_segment),
                ),
                Row(f"  (a) CPU ms/seg {' | '.join(r['per_step_cpu_ms_per_segment'])}", steps),
            ]
            if state.chain_floor_ms:
                multiple = per_segment_ms / state.chain_floor_ms
                r["over_chain_floor"] = multiple
                rows.append(
                    Row.check(
                        f"  (a) CPU per segment / chain FFT floor ({per_segment_ms:.0f} ms), "
                        f"{size} seg",
                        multiple,
                        "{:.0f}x",
                        "<= 50x",
                        multiple <= 50,
                    )
                )
            out[str(size)] = r
        return out, rows

    return run


# -- 2. hop ----------------------------------------------------------------------------------


def hop(state: State) -> Section:
    def run():
        from bench.hop import run_hops

        cfg = state.cfg
        r = run_hops(
            state.ctx.bootstrap,
            state.ctx.workdir / "hop",
            cfg.hop_messages,
            cfg.hop_rate_hz,
            state.ctx.log,
            baseline=cfg.hop_baseline,
            stagger=cfg.hop_stagger,
        )
        ratio = r["runtime"]["p99"] / r["bare"]["p99"]
        r["ratio_p99_runtime_to_bare"] = ratio
        r["ratio_p99_runtime_to_plain_hop"] = r["runtime"]["p99"] / r["echo"]["p99"]
        r["ratio_p50_runtime_to_bare"] = r["runtime"]["p50"] / r["bare"]["p50"]
        serial = r["runtime_serial"]["p99"] / r["bare"]["p99"]
        r["ratio_p99_runtime_serial_to_bare"] = serial

        def ms(p: dict) -> str:
            return f"{p['p50']:.1f} / {p['p99']:.1f} / {p['p99_9']:.1f}"

        before: list[Row] = []
        if "runtime_baseline" in r:
            base = r["runtime_baseline"]["p99"] / r["bare"]["p99"]
            r["ratio_p99_runtime_baseline_to_bare"] = base
            before = [
                Row(
                    f"hop p50/p99/p99.9 ms: runtime at {r['baseline_commit'][:8]} (before)",
                    ms(r["runtime_baseline"]),
                ),
                Row(
                    "runtime hop p99 / bare p99, before | now",
                    f"{base:.2f}x | {ratio:.2f}x",
                ),
                Row(
                    "hop CPU ms per message: runtime before | now",
                    f"{r['cpu_ms_per_message']['runtime_baseline']:.2f} | "
                    f"{r['cpu_ms_per_message']['runtime']:.2f}",
                ),
            ]

        return r, [
            *before,
            Row("hop p50/p99/p99.9 ms: bare produce->consume", ms(r["bare"])),
            Row("hop p50/p99/p99.9 ms: plain aiokafka hop", ms(r["echo"])),
            Row("hop p50/p99/p99.9 ms: runtime, settle in turn", ms(r["runtime_serial"])),
            Row("hop p50/p99/p99.9 ms: runtime hop", ms(r["runtime"])),
            Row("runtime hop p99 / bare p99, settle in turn (before)", f"{serial:.2f}x"),
            Row(
                "hop CPU ms per message: plain | settle in turn | runtime",
                " | ".join(
                    f"{r['cpu_ms_per_message'][m]:.2f}"
                    for m in ("echo", "runtime_serial", "runtime")
                ),
            ),
            Row.check("runtime hop p99 / bare p99", ratio, "{:.2f}x", "<= 1.5x", ratio <= 1.5),
        ]

    return run


# -- catalogue growth ---------------------------------------------------------------------------


def catalogue_growth(state: State) -> Section:
    def run():
        import json
        import subprocess
        import sys

        n = state.cfg.growth_segments
        state.ctx.log(f"  catalogue alone, {n} segments (its own process)")
        root = Path(__file__).resolve().parents[1]
        done = subprocess.run(
            [sys.executable, "-m", "bench.catalog_growth", str(n)],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=7200,
        )
        r = json.loads(done.stdout)
        w = r["window"]
        rss = r["rss_mib_last"] / r["rss_mib_first"]
        r["rss_ratio"] = rss
        return r, [
            Row(
                f"catalogue CPU ms/seg at {w + 5} | at {n} segments (in-process path)",
                f"{r['cpu_ms_first']:.1f} | {r['cpu_ms_last']:.1f}",
            ),
            Row.check(
                f"catalogue CPU per segment {n} / {w + 5}",
                r["ratio"],
                "{:.2f}x",
                "<= 1.10",
                r["ratio"] <= 1.10,
            ),
            Row.check(
                f"catalogue RSS {n} / {w + 5} segments ({r['rss_mib_last']:.0f} MiB)",
                rss,
                "{:.2f}x",
                "<= 1.10 (flat)",
                rss <= 1.10,
            ),
        ]

    return run


# -- 1. choreography vs in-process -----------------------------------------------------------


def choreography_vs_in_process(state: State) -> Section:
    def run():
        from bench.inprocess import run_in_process

        out: dict = {}
        rows: list[Row] = []
        sizes = state.cfg.sizes
        for size in sizes:
            data = state.dataset("lines", size, seed=1)
            state.ctx.log(f"  (a) in-process, {size} segments")
            spy = _spy_self(state, f"in-process-{size}") if size == sizes[-1] else None
            a = run_in_process(data, state.ctx.store_uri, state.ctx.workdir / f"products-{size}")
            _stop_spies(state, spy)
            state.ctx.log(f"      {a.segments_per_s:.2f} seg/s")
            state.ctx.log(f"  (b) choreography, {size} segments")
            spies: list = []
            hook = None
            if size == sizes[-1]:

                def hook(f: Fleet, spies: list = spies, size: int = size) -> None:
                    spies.extend(_spy_fleet(state, f, size))

            b, fleet = run_pipeline(
                state.ctx, f"choreo-{size}", data, keep=size == sizes[0], on_started=hook
            )
            _stop_spies(state, spies)
            if size == sizes[0]:
                state.kept = fleet
            state.runs[size] = b
            state.run_settings[size] = fleet.settings
            state.ctx.log(f"      {b['segments_per_s']:.2f} seg/s")
            ratio = b["segments_per_s"] / a.segments_per_s
            out[str(size)] = {
                "in_process": a.to_json(),
                "choreography": b,
                "ratio": ratio,
                "cpu_ratio": b["cpu_s_total"] / a.cpu_s,
            }
            n = data.samples_per_segment
            if size == sizes[0]:
                out[str(size)]["scaled"] = _scaled(state, data, b, a.segments_per_s)
            rows += [
                Row(f"(a) in-process, {size} segments", _fmt_rate(a.segments_per_s, n)),
                Row(f"(b) choreography, {size} segments", _fmt_rate(b["segments_per_s"], n)),
                Row.check(
                    f"b/a throughput, {size} segments", ratio, "{:.2f}x", ">= 1.0", ratio >= 1.0
                ),
                Row(
                    f"CPU b/a (services + broker + ingest), {size} seg",
                    f"{b['cpu_s_total'] / a.cpu_s:.2f}x",
                ),
                Row(
                    f"  cores left by other tenants during (b), {size} seg",
                    f"{b['machine']['cores'] - b['machine']['others_cores']:.2f} of "
                    f"{b['machine']['cores']}",
                ),
            ]
            rows += _limits(state, size, a, b, out[str(size)])
            if "scaled" in out[str(size)]:
                sc = out[str(size)]["scaled"]
                rows.append(
                    Row(
                        f"(b') choreography, {sc['step']} x2, {size} segments",
                        f"{_fmt_rate(sc['segments_per_s'], n)}; b'/a {sc['ratio']:.2f}x",
                    )
                )
        return out, rows

    return run


PROCESSES = {
    "ingest (bench process)": "ingest",
    "condition": "condition",
    "gb-search": "gb-search",
    "estimate": "estimate",
    "catalog": "catalog",
    "kafka-broker": "broker",
}


def _limits(state: State, size: int, a, b: dict, out: dict) -> list[Row]:
    """The limits beside the figures: in-process time per segment against the chain's FFT
    floor; CPU per segment of every process; the ideal pipelined throughput on the cores the
    other tenants left: the slower of (free cores / CPU per segment of the whole choreography)
    and (1 / CPU per segment of its costliest process: one replica runs on one core)."""
    rows: list[Row] = []
    # CPU time: on a shared machine (a)'s wall time per segment counts the other tenants too
    per_segment_ms = 1e3 * a.cpu_s / a.segments
    wall_ms = 1e3 * a.wall_s / a.segments
    limits: dict = {"in_process_cpu_ms_per_segment": per_segment_ms, "in_process_ms": wall_ms}
    if state.chain_floor_ms:
        multiple = per_segment_ms / state.chain_floor_ms
        limits["in_process_over_chain_floor"] = multiple
        limits["in_process_wall_over_chain_floor"] = wall_ms / state.chain_floor_ms
        rows.append(
            Row.check(
                f"  (a) CPU per segment / chain FFT floor ({per_segment_ms:.0f} ms), {size} seg",
                multiple,
                "{:.0f}x",
                "<= 50x",
                multiple <= 50,
            )
        )
    services = b.get("services", {})
    cpu = {v: services[k]["cpu_ms_per_segment"] for k, v in PROCESSES.items() if k in services}
    limits["cpu_ms_per_segment"] = cpu
    rows.append(
        Row(
            f"  CPU ms/seg {' | '.join(cpu)}, {size} seg",
            " | ".join(f"{v:.0f}" for v in cpu.values()),
        )
    )
    free = b["machine"]["cores"] - b["machine"]["others_cores"]
    total_ms = 1e3 * b["cpu_s_total"] / a.segments
    busiest = max((v for k, v in cpu.items() if k != "broker"), default=0.0)
    if free > 0 and total_ms > 0 and busiest > 0:
        ideal = min(1e3 * free / total_ms, 1e3 / busiest)
        limits.update(ideal_segments_per_s=ideal, free_cores=free, cpu_ms_per_segment_all=total_ms)
        rows.append(
            Row(
                f"  ideal pipelined on {free:.2f} free cores | (b) measured, {size} seg",
                f"{ideal:.2f} | {b['segments_per_s']:.2f} seg/s "
                f"({b['segments_per_s'] / ideal:.0%} of ideal)",
            )
        )
    out["limits"] = limits
    return rows


def _scaled(state: State, data: Dataset, b: dict, a_rate: float) -> dict:
    """The same case with the most expensive runner step (CPU per segment) in 2 replicas."""
    cost = {s: b["services"][s]["cpu_ms_per_segment"] for s in RUNNER_STEPS}
    step = max(cost, key=cost.get)
    state.ctx.log(f"  (b') choreography, {step} x2, {data.days} segments")
    r, _ = run_pipeline(state.ctx, f"choreo-{data.days}-{step}x2", data, replicas={step: 2})
    r.pop("rss_mb", None)
    state.ctx.log(f"      {r['segments_per_s']:.2f} seg/s")
    return {
        "step": step,
        "segments_per_s": r["segments_per_s"],
        "ratio": r["segments_per_s"] / a_rate,
        "run": r,
    }


def _spy_self(state: State, name: str):
    if not state.profile:
        return None
    import os

    from bench.profile import record_pid

    path = state.out / "profiles" / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = record_pid(os.getpid(), 3600, path)
    time.sleep(1.0)  # let py-spy attach
    return [(proc, path)] if proc else None


def _spy_fleet(state: State, fleet: Fleet, size: int) -> list:
    if not state.profile:
        return []
    from bench.profile import record_pid

    spies = []
    for key, proc in fleet.procs.items():
        path = state.out / "profiles" / f"{key}-{size}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        spy = record_pid(proc.proc.pid, 3600, path)
        if spy:
            spies.append((spy, path))
    time.sleep(1.0)
    return spies


def _stop_spies(state: State, spies) -> None:
    if not spies:
        return
    import json

    from bench.profile import summarise

    for proc, path in spies:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except Exception:
            proc.kill()
        if path.exists():
            path.with_suffix(".json").write_text(json.dumps(summarise(path, 25), indent=1))


# -- 3. end to end ---------------------------------------------------------------------------


def end_to_end(state: State) -> Section:
    def run():
        cfg = state.cfg
        fleet = state.kept
        own = fleet is None
        if own:
            _, fleet = run_pipeline(state.ctx, "e2e", state.dataset("lines", 2, seed=5), keep=True)
        try:
            data = state.dataset("lines", cfg.e2e_segments, seed=2)
            r = run_steady(state.ctx, fleet, data, cfg.e2e_interval_s)
        finally:
            fleet.stop()
            state.kept = None
        rate = 1 / cfg.e2e_interval_s
        return r, [
            Row(
                f"e2e published->catalogued p50 / p99 at {rate:g} seg/s",
                f"{r['p50_s'] * 1e3:.0f} / {r['p99_s'] * 1e3:.0f} ms",
            ),
        ]

    return run


# -- 4. tracing ------------------------------------------------------------------------------


def tracing(state: State) -> Section:
    def run():
        if state.ctx.zipkin_spans_url is None:
            raise RuntimeError(f"no Zipkin: {state.zipkin_error}")
        cfg = state.cfg
        if cfg.smoke and cfg.sizes[0] in state.runs:  # reuse (b) of the smallest case as "off"
            data = state.dataset("lines", cfg.sizes[0], seed=1)
            r = run_tracing(state.ctx, data, 1, baseline=state.runs[cfg.sizes[0]])
        else:
            data = state.dataset("lines", cfg.tracing_days, seed=3)
            r = run_tracing(state.ctx, data, cfg.tracing_reps)
        r["zipkin_services"] = _zipkin_services(state.ctx.zipkin_spans_url)
        return r, [
            Row(
                "throughput tracing off | to Zipkin",
                f"{r['throughput_none']:.2f} | {r['throughput_zipkin']:.2f} seg/s",
            ),
            Row.check(
                "tracing overhead (throughput)",
                100 * r["overhead"],
                "{:.1f} %",
                "<= 5 %",
                r["overhead"] <= 0.05,
            ),
            Row(
                "tracing overhead (CPU s per segment, all services)",
                f"{100 * r['cpu_overhead']:+.1f} %",
            ),
        ]

    return run


def _zipkin_services(spans_url: str) -> list[str] | str:
    from lisa_choreo.localstack import tracing_ui

    try:
        return tracing_ui.query(spans_url.rsplit("/api/", 1)[0], "/api/v2/services")
    except OSError as exc:
        return f"unreadable: {exc}"


# -- 5. scaling ------------------------------------------------------------------------------


def scaling(state: State) -> Section:
    def run():
        cfg = state.cfg
        rows: list[Row] = []
        out: dict = {}
        if not state.runs:  # run alone: the largest case provides the backlog
            size = cfg.sizes[-1]
            b, fleet = run_pipeline(state.ctx, f"choreo-{size}", state.dataset("lines", size, 1))
            state.runs[size] = b
            state.run_settings[size] = fleet.settings
        largest = max(state.runs)
        services = state.runs[largest]["services"]
        cost = {s: services[s]["cpu_ms_per_segment"] for s in RUNNER_STEPS if s in services}
        slowest = max(cost, key=cost.get)
        out["cpu_ms_per_segment"] = cost
        out["slowest_step"] = slowest
        replicas = []
        for k in (1, 2):
            r = run_replicas(
                state.ctx, state.run_settings[largest], slowest, k, cfg.scaling_backlog
            )
            state.ctx.log(f"    {slowest} x{k}: {r['events_per_s']:.2f} events/s")
            replicas.append(r)
        out["replicas"] = replicas
        speedup = replicas[1]["events_per_s"] / replicas[0]["events_per_s"]
        out["speedup_2_replicas"] = speedup
        left = [r["machine"]["cores"] - r["machine"]["others_cores"] for r in replicas]
        out["input_topic"] = INPUT_TOPIC[slowest]
        rows += [
            Row(
                f"slowest step ({slowest}) x1 | x2",
                f"{replicas[0]['events_per_s']:.2f} | {replicas[1]['events_per_s']:.2f} ev/s",
            ),
            Row.check(
                f"{slowest}: 2 replicas / 1 (2 cores)",
                speedup,
                "{:.2f}x",
                ">= 1.6x",
                speedup >= 1.6,
            ),
            Row(
                f"  cores left by other tenants, {slowest} x1 | x2",
                f"{left[0]:.2f} | {left[1]:.2f} of {replicas[0]['machine']['cores']}",
            ),
            Row(
                f"  {slowest} CPU ms per event x1 | x2; processed twice",
                f"{replicas[0]['cpu_ms_per_event']:.0f} | {replicas[1]['cpu_ms_per_event']:.0f}; "
                f"{replicas[1]['processed_twice']}",
            ),
        ]
        if len(state.runs) >= 2:
            small, big = min(state.runs), max(state.runs)
            g = _growth(state.runs[small], state.runs[big])
            out["growth"] = g
            rows += [
                Row.check(
                    f"time per segment {big} / {small} segments",
                    g["wall_per_segment"],
                    "{:.2f}x",
                    "<= 1.10 (linear)",
                    g["wall_per_segment"] <= 1.10,
                ),
                Row.check(
                    f"peak RSS {big} / {small} segments (worst service: {g['worst']})",
                    g["peak_rss_worst"],
                    "{:.2f}x",
                    "<= 1.10 (flat)",
                    g["peak_rss_worst"] <= 1.10,
                ),
            ]
            for s in ("condition", "gb-search", "estimate", "catalog"):
                e = g["services"].get(s)
                if e:
                    rows.append(
                        Row(
                            f"  {s}: ev/s | CPU ms/seg | peak RSS MiB, {small}->{big}",
                            f"{e['events_per_s'][0]:.2f}->{e['events_per_s'][1]:.2f} | "
                            f"{e['cpu_ms_per_segment'][0]:.0f}->{e['cpu_ms_per_segment'][1]:.0f}"
                            f" | {e['peak_rss_mb'][0]:.0f}->{e['peak_rss_mb'][1]:.0f}",
                        )
                    )
        return out, rows

    return run


def _growth(small: dict, big: dict) -> dict:
    per_service = {}
    for name in ("condition", "gb-search", "estimate", "catalog"):
        s, b = small["services"].get(name), big["services"].get(name)
        if not s or not b:
            continue
        per_service[name] = {
            "events_per_s": [s.get("events_per_s") or 0.0, b.get("events_per_s") or 0.0],
            "peak_rss_mb": [s["peak_rss_mb"], b["peak_rss_mb"]],
            "cpu_ms_per_segment": [s["cpu_ms_per_segment"], b["cpu_ms_per_segment"]],
            "peak_rss_ratio": b["peak_rss_mb"] / s["peak_rss_mb"],
        }
    worst = max(per_service, key=lambda k: per_service[k]["peak_rss_ratio"])
    return {
        "segments": [small["segments"], big["segments"]],
        "wall_per_segment": (big["wall_s"] / big["segments"])
        / (small["wall_s"] / small["segments"]),
        "cpu_per_segment": (big["cpu_s_total"] / big["segments"])
        / (small["cpu_s_total"] / small["segments"]),
        "services": per_service,
        "worst": worst,
        "peak_rss_worst": per_service[worst]["peak_rss_ratio"],
        "peak_rss_median": statistics.median(v["peak_rss_ratio"] for v in per_service.values()),
    }


# -- 7. recovery -----------------------------------------------------------------------------


def recovery(state: State) -> Section:
    def run():
        from bench.recovery import run_recovery

        cfg = state.cfg
        steps, modes = cfg.recovery_steps, cfg.recovery_modes
        days = 6 + len(modes) * (1 + 2 * len(steps) * cfg.recovery_rounds)  # fresh segments
        data = state.dataset("lines", days, seed=7)
        r = run_recovery(state.ctx, data, modes, steps, cfg.recovery_rounds)
        rows = []
        for kind, what in (
            ("sigkill", "SIGKILL -> first input by the replacement"),
            ("sigterm", "SIGTERM -> first input by the other replica"),
        ):
            for step in steps:
                ms = " | ".join(f"{r[m]['steps'][step][f'{kind}_ms_median']:.0f}" for m in modes)
                rows.append(Row(f"{step}: {what}, ms ({' | '.join(modes)})", ms))
        return r, rows

    return run


# -- 8. study: the same steps orchestrated (Temporal) and choreographed (Kafka) ---------------


def study(state: State) -> Section:
    def run():
        from bench.study import StudyConfig, run_study

        # smoke: the small backlog only, and only if the Temporal CLI is built already
        cfg = StudyConfig.make(state.cfg.smoke, light=state.cfg.smoke)
        return run_study(cfg, state.out / "study", state.ctx.workdir / "study")

    return run
