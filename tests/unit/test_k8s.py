"""The generated Kubernetes chart against the declarations it comes from (no cluster, no helm:
tests/integration/test_deploy_checks.py renders and validates it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lisa_choreo import k8s
from lisa_choreo.registry import topology
from lisa_choreo.security import acls
from lisa_pipeline.stages import RUNNER_STEPS

ROOT = Path(__file__).parents[2]
TOPO = topology()


def test_the_committed_chart_is_what_the_declarations_give():
    """The drift check: regenerate and compare (`lisa-choreo manifests` to fix)."""
    assert k8s.drift(ROOT / "deploy" / "k8s", TOPO) == []


def _docs(name: str) -> list[dict]:
    """A template's documents, with the Helm conditionals stripped (they are whole lines)."""
    text = k8s.chart(TOPO)[f"templates/{name}.yaml"]
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("{{-"))
    body = re.sub(r": (\{\{[^'\n]*\}\})$", r": '\1'", body, flags=re.M)  # unquoted numbers
    return [d for d in yaml.safe_load_all(body) if d]


def test_a_deployment_per_service_with_probes_and_measured_requests():
    services = [s.name for s in (*TOPO.steps, *TOPO.observers)]
    for name in services:
        (dep,) = _docs(name)
        assert dep["kind"] == "Deployment"
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert c["args"] == ["run", name]
        assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "health"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
        assert c["ports"] == [{"name": "health", "containerPort": 8080}]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        requests = c["resources"]["requests"]
        m = k8s.MEASURED[name]
        # The request covers the measured peak RSS and the CPU the measured rate burned.
        assert int(requests["memory"].removesuffix("Mi")) >= m.peak_rss_mib
        assert int(requests["cpu"].removesuffix("m")) >= m.cpu_ms_per_segment * m.segments_per_s
        assert (
            dep["spec"]["selector"]["matchLabels"].items()
            <= dep["spec"]["template"]["metadata"]["labels"].items()
        )


def test_a_kafka_topic_per_declared_topic_with_its_partitions_and_retention():
    topics = {d["metadata"]["name"]: d for d in _docs("kafkatopics")}
    assert set(topics) == {t.name for t in TOPO.all_topics()}
    for spec in TOPO.all_topics():
        doc = topics[spec.name]["spec"]
        assert doc["topicName"] == k8s.PREFIX + spec.name
        assert doc["partitions"] == spec.partitions
        if spec.compacted:
            assert doc["config"]["cleanup.policy"] == "compact"
        else:
            assert doc["config"]["retention.ms"] == spec.retention_ms


_OPERATIONS = {k8s.strimzi_operation(op): op for op in acls.Operation}
_RESOURCES = {v: k for k, v in k8s._STRIMZI_RESOURCE.items()}
_PATTERNS = {v: k for k, v in k8s._STRIMZI_PATTERN.items()}


def test_each_kafka_user_carries_exactly_the_derived_acls():
    """Read the Strimzi rules back into Kafka bindings: the same set ``acl plan`` prints."""
    users = _docs("kafkausers")
    back = set()
    for user in users:
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        for rule in user["spec"]["authorization"]["acls"]:
            r = rule["resource"]
            rtype = _RESOURCES[r["type"]]
            for op in rule["operations"]:
                back.add(
                    acls.AclBinding(
                        acls.principal(user["metadata"]["name"]),
                        rtype,
                        r.get("name", acls.CLUSTER),
                        _PATTERNS[r.get("patternType", "literal")],
                        _OPERATIONS[op],
                    )
                )
    assert back == set(acls.derive(TOPO, k8s.PREFIX))
    assert {u["metadata"]["name"] for u in users} == set(acls.principals(TOPO))


# The kafka scaler's metadata keys (KEDA docs, "Apache Kafka" scaler, 2.13+); KEDA's schema
# types them as string -> string only, so a key misspelt or a number unquoted passes kubeconform.
KEDA_KAFKA_KEYS = {
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "scaleToZeroOnInvalidOffset",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "version",
    "partitionLimitation",
    "sasl",
    "tls",
    "unsafeSsl",
}
KEDA_AUTH_PARAMETERS = {"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword"}


@pytest.mark.parametrize("step", RUNNER_STEPS)
def test_each_stateless_step_scales_on_its_group_lag_within_its_partitions(step: str):
    scaled, auth = _docs(f"{step}-keda")
    (declared,) = next(s for s in TOPO.steps if s.name == step).consumes
    partitions = next(t.partitions for t in TOPO.topics if t.name == declared.topic)
    assert scaled["kind"] == "ScaledObject"
    assert scaled["spec"]["scaleTargetRef"] == {"name": step}
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] <= partitions
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert set(meta) <= KEDA_KAFKA_KEYS
    assert {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} <= set(meta)
    assert all(isinstance(v, str) for v in meta.values())
    # The group the runner joins (LISA_STEP_GROUP_ID's default: the step name, prefixed).
    assert meta["consumerGroup"] == k8s.PREFIX + step
    assert meta["topic"] == k8s.PREFIX + declared.topic
    assert meta["sasl"] in ("plaintext", "scram_sha256", "scram_sha512")
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    params = [p["parameter"] for p in auth["spec"]["env"] + auth["spec"]["secretTargetRef"]]
    assert set(params) <= KEDA_AUTH_PARAMETERS
    assert {"username", "password"} <= set(params)


def test_stateful_services_are_not_autoscaled():
    files = k8s.chart(TOPO)
    scaled = {
        p.removeprefix("templates/").removesuffix("-keda.yaml") for p in files if "-keda" in p
    }
    assert scaled == set(RUNNER_STEPS)


def test_the_chart_holds_no_secret_value():
    """Secrets are referenced (Strimzi's per-user Secret, the cluster CA, the object store's
    credentials made by the operator), never defined."""
    for rel, text in k8s.chart(TOPO).items():
        assert "kind: Secret" not in text, rel
        for key in ("password:", "AWS_SECRET_ACCESS_KEY:", "stringData", "\ndata:"):
            if rel != "templates/configmap.yaml":
                assert key not in text.replace("key: password", ""), (rel, key)
    (cm,) = _docs("configmap")
    assert not any("SECRET" in k or "PASSWORD=" in k for k in cm["data"])
    (dep,) = _docs("estimate")
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["key"] == (
        "AWS_SECRET_ACCESS_KEY"
    )


def test_manifests_command_writes_and_checks(tmp_path: Path, capsys):
    from lisa_choreo.cli import main

    assert main(["manifests", "--out", str(tmp_path)]) == 0
    assert main(["manifests", "--out", str(tmp_path), "--check"]) == 0
    values = tmp_path / k8s.CHART / "values.yaml"
    values.write_text(values.read_text() + "# edited by hand\n")
    (tmp_path / k8s.CHART / "templates" / "extra.yaml").write_text("kind: ConfigMap\n")
    assert main(["manifests", "--out", str(tmp_path), "--check"]) == 1
    out = capsys.readouterr().out
    assert "values.yaml" in out
    assert "extra.yaml" in out
