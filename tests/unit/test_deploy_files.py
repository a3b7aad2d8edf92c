"""The compose file and the Dockerfile, read as data (the real tools run in
tests/integration/test_deploy_checks.py and test_container.py)."""

from pathlib import Path

import yaml

from lisa_choreo.registry import OBSERVERS, SERVICE_MODULES

ROOT = Path(__file__).parents[2]


def test_compose_runs_every_pipeline_service_with_kafka_and_tracing():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.1")
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2")
    runs = {s["command"][1] for s in services.values() if s.get("command", [""])[0] == "run"}
    pipeline = {n for n in SERVICE_MODULES if not n.startswith("toy")}
    assert runs == pipeline | set(OBSERVERS)  # the flow monitor too, its view on loopback
    assert services["flows"]["ports"] == ["127.0.0.1:8790:8790"]
    for name in runs:
        env = services[name]["environment"]
        assert env["LISA_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["OTEL_TRACES_EXPORTER"] == "otlp"
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_dockerfile_installs_the_project_and_runs_the_cli():
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#")
    # The base is a build argument (a local Debian where no registry answers), used by every stage.
    assert "ARG BASE_IMAGE=python:3.12-slim" in text
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert froms
    assert all(line.split()[1] == "${BASE_IMAGE}" for line in froms)
    assert 'ENTRYPOINT ["lisa-choreo"]' in text
    assert "USER 10001:10001" in text  # not root, numeric for runAsNonRoot
    assert "HEALTHCHECK" in text
    assert "readyz" in text
