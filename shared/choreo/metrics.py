"""Per-service metrics through OpenTelemetry: events consumed, produced and failed, processing
time, consumer lag, and whether the step is paused (``lisa.step.paused``: 1 paused, 0 running;
see ``choreo.control``).

Exporters follow ``OTEL_METRICS_EXPORTER`` (``otlp``, ``console``, ``none``; default ``none`` since
Zipkin takes no metrics) and ``LISA_METRICS_PORT``, which, when set, serves a Prometheus scrape
endpoint on that port (``/metrics``), the usual way operators collect them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

_ALIASES = {"otlp": "otlp_proto_http"}


def configure_metrics(service_name: str) -> MeterProvider:
    readers: list[MetricReader] = []
    port = os.environ.get("LISA_METRICS_PORT")
    if port:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        start_http_server(int(port), addr=os.environ.get("LISA_METRICS_ADDR", "127.0.0.1"))
        readers.append(PrometheusMetricReader())
    for name in os.environ.get("OTEL_METRICS_EXPORTER", "none").split(","):
        name = name.strip()
        if not name or name in ("none", "prometheus"):
            continue
        wanted = _ALIASES.get(name, name)
        eps = [
            ep for ep in entry_points(group="opentelemetry_metrics_exporter") if ep.name == wanted
        ]
        if not eps:
            raise ValueError(f"OTEL_METRICS_EXPORTER={name!r}: no such exporter")
        readers.append(PeriodicExportingMetricReader(eps[0].load()()))
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = MeterProvider(resource=resource, metric_readers=readers)
    metrics.set_meter_provider(provider)
    return provider


def observe_paused(step: str, paused: Callable[[], bool]) -> None:
    """The gauge ``lisa.step.paused`` of one step (the runner's, and the faust catalogue's)."""

    def observe(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(1 if paused() else 0, {"lisa.step": step})

    metrics.get_meter("choreo").create_observable_gauge(
        "lisa.step.paused",
        callbacks=[observe],
        unit="1",
        description="1 while the step is paused by a control command (it keeps its partitions "
        "and group membership and fetches nothing), 0 while it runs",
    )


class StepMetrics:
    """The instruments of one step; cheap no-ops when no exporter is configured."""

    def __init__(
        self,
        step: str,
        lag: Callable[[], Iterable[tuple[str, int, int]]],
        paused: Callable[[], bool] | None = None,
    ) -> None:
        meter = metrics.get_meter("choreo")
        if paused is not None:
            observe_paused(step, paused)
        self._attrs = {"lisa.step": step}
        self.consumed = meter.create_counter("lisa.events.consumed", unit="{event}")
        self.produced = meter.create_counter("lisa.events.produced", unit="{event}")
        self.failed = meter.create_counter(
            "lisa.events.failed", unit="{event}", description="inputs dead-lettered, by reason"
        )
        self.duration = meter.create_histogram(
            "lisa.processing.duration", unit="s", description="decode + handler + send, per input"
        )

        def observe(_: CallbackOptions) -> Iterable[Observation]:
            for topic, partition, value in lag():
                yield Observation(
                    value,
                    {
                        **self._attrs,
                        "messaging.destination.name": topic,
                        "messaging.destination.partition.id": str(partition),
                    },
                )

        meter.create_observable_gauge(
            "lisa.consumer.lag",
            callbacks=[observe],
            unit="{event}",
            description="records behind the partition's high watermark",
        )

    def record(self, topic: str, outputs: int, seconds: float) -> None:
        attrs = {**self._attrs, "messaging.destination.name": topic}
        self.consumed.add(1, attrs)
        self.produced.add(outputs, attrs)
        self.duration.record(seconds, attrs)

    def record_failure(self, topic: str, reason: str) -> None:
        self.consumed.add(1, {**self._attrs, "messaging.destination.name": topic})
        self.failed.add(1, {**self._attrs, "messaging.destination.name": topic, "reason": reason})
