"""The service image, built and run: the four step services as podman containers on the real
broker, a file store bind-mounted, segments processed end to end.

The image is built from the repository's Dockerfile on a Debian bookworm made here
(``lisa_choreo.localstack.containers``: debootstrap, offline wheels, ``podman build --network
none``), cached by a content-hash tag, so a second run builds nothing. Containers run with the
``runc`` runtime, explicit ulimits and the host's network (the broker is on loopback), as the
chart's pods do (non-root, read-only root file system, no capability); the store and the inbox
are the test's folders, mounted at the same path so that the claim checks' URIs mean the same
inside and out; the catalogue (stateful) runs as a plain process on that store. Every container
is removed at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from choreo import codec
from choreo.settings import KafkaSettings
from lisa_choreo.processes import free_port
from lisa_pipeline.events import SegmentRaw, SourceEstimates
from lisa_pipeline.topics import SEGMENTS_RAW, SOURCES_ESTIMATES
from tests.conftest import Services, read_all, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.containers]

STEPS = ("ingest", "condition", "gb-search", "estimate")
DAYS = 3


@pytest.fixture(scope="session")
def image() -> str:
    from lisa_choreo.localstack import containers

    if not containers.podman_available():
        pytest.skip("podman is not installed (apt-get install -y podman runc debootstrap)")
    return containers.build_image()


class Pod:
    """The test's containers: started detached with a label, removed together."""

    def __init__(self, image: str, env: dict[str, str], mounts: list[Path]) -> None:
        from lisa_choreo.localstack.containers import PODMAN, ULIMITS

        self.image = image
        self.env = env
        self.mounts = mounts
        self.label = f"lisa-choreo-test={uuid.uuid4().hex[:12]}"
        self.podman = list(PODMAN)
        self.ulimits = list(ULIMITS)
        self.names: dict[str, str] = {}
        self.ports: dict[str, int] = {}

    def run(self, service: str, home: Path) -> str:
        name = f"lisa-{service}-{self.label.rsplit('=', 1)[1]}"
        port = free_port()
        home.mkdir()
        home.chmod(0o777)
        env = {**self.env, "LISA_HEALTH_PORT": str(port), "LISA_HEALTH_HOST": "127.0.0.1"}
        cmd = [
            *self.podman,
            "run",
            "--detach",
            "--name",
            name,
            "--label",
            self.label,
            "--network",
            "host",
            # The test asks /readyz itself; podman's timer for HEALTHCHECK needs systemd.
            "--no-healthcheck",
            *self.ulimits,
            # What the chart's securityContext asks (deploy/k8s): a read-only root, no
            # capability, no privilege gain; $LISA_CHOREO_HOME is the one writable folder.
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--volume",
            f"{home}:/var/lib/lisa-choreo",
            *[a for k, v in env.items() for a in ("--env", f"{k}={v}")],
            *[a for m in self.mounts for a in ("--volume", f"{m}:{m}")],
            self.image,
            "run",
            service,
        ]
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
        self.names[service], self.ports[service] = name, port
        return name

    def state(self, service: str) -> str:
        out = subprocess.run(
            ["podman", "inspect", "--format", "{{.State.Status}}", self.names[service]],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip()

    def logs(self, service: str) -> str:
        out = subprocess.run(
            ["podman", "logs", self.names[service]], capture_output=True, text=True, check=False
        )
        return out.stdout + out.stderr

    def exec(self, service: str, *cmd: str) -> str:
        out = subprocess.run(
            ["podman", "exec", self.names[service], *cmd],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return out.stdout.strip()

    def health(self, service: str, probe: str) -> int | None:
        import urllib.error
        import urllib.request

        url = f"http://127.0.0.1:{self.ports[service]}/{probe}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def ready(self, service: str) -> bool:
        if self.state(service) not in ("running", "created", "configured"):
            pytest.fail(f"{service} container {self.state(service)}:\n{self.logs(service)[-3000:]}")
        return self.health(service, "readyz") == 200

    def remove_all(self) -> None:
        ids = subprocess.run(
            ["podman", "ps", "--all", "--quiet", "--filter", f"label={self.label}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if ids:
            subprocess.run(["podman", "rm", "--force", "--time", "5", *ids], check=False)


@pytest.fixture
def pod(image: str, services: Services) -> Iterator[Pod]:
    store = services.workdir / "store"
    inbox = services.workdir / "inbox"
    for folder in (store, inbox):
        folder.mkdir()
        folder.chmod(0o777)  # the image's user (uid 10001) writes there
    settings = services.settings
    env = {
        "LISA_KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "LISA_KAFKA_TOPIC_PREFIX": settings.topic_prefix,
        "LISA_STORE_URI": store.as_uri(),
        "LISA_INGEST_INBOX": str(inbox),
        "LISA_INGEST_POLL_S": "0.5",
        "OTEL_TRACES_EXPORTER": "none",
    }
    pod = Pod(image, env, [store, inbox])
    try:
        yield pod
    finally:
        pod.remove_all()
    left = subprocess.run(
        ["podman", "ps", "--all", "--quiet", "--filter", f"label={pod.label}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert left == [], f"containers left behind: {left}"


def _estimates(settings: KafkaSettings) -> list:
    types = {SourceEstimates.ce_type: SourceEstimates}
    return [
        codec.decode(r.key, r.value, r.headers, types)
        for r in read_all(settings, SOURCES_ESTIMATES)
    ]


def test_the_step_services_run_as_containers_end_to_end(services: Services, pod: Pod):
    # The catalogue, stateful, as a plain process on the same store: the end of the chain.
    catalog = services.start("catalog", wait=False)
    for service in STEPS:
        pod.run(service, services.workdir / f"home-{service}")
    catalog.wait_ready(120)
    for service in STEPS:
        wait_until(lambda s=service: pod.ready(s), 120, f"{service} container ready")
        assert pod.health(service, "livez") == 200

    # The image's promises, asked inside a running container: not root, bookworm's Python, and
    # its HEALTHCHECK command passes against the running service.
    (inspected,) = json.loads(
        subprocess.run(
            ["podman", "image", "inspect", pod.image], capture_output=True, text=True, check=True
        ).stdout
    )
    assert inspected["Config"]["User"] == "10001:10001"
    check = inspected["Healthcheck"]["Test"]
    assert check[0] == "CMD"
    assert "/readyz" in check[-1]
    pod.exec("condition", *check[1:])  # raises on a non-zero exit
    assert pod.exec("condition", "id", "-u") == "10001"
    assert pod.exec("condition", "python3", "-c", "import sys; print(sys.version_info[:2])") == (
        "(3, 11)"
    )

    simulated = services.workdir / "sim.h5"
    result = services.cli(
        "simulate", str(simulated), "--days", str(DAYS), "--sources", "none", "--seed", "7"
    )
    assert result.returncode == 0, result.stderr
    # Into the inbox in one rename: the ingest container never sees a partial file.
    staged = services.workdir / "inbox" / ".sim.h5.part"
    staged.write_bytes(simulated.read_bytes())
    os.replace(staged, services.workdir / "inbox" / "sim.h5")

    estimates = wait_until(
        lambda: (e := _estimates(services.settings)) and len(e) >= DAYS and e,
        240,
        f"estimates of {DAYS} segments",
    )
    raw_types = {SegmentRaw.ce_type: SegmentRaw}
    raw = [
        codec.decode(r.key, r.value, r.headers, raw_types)
        for r in read_all(services.settings, SEGMENTS_RAW)
    ]
    segments = {e.subject for e in raw}
    assert len(segments) == DAYS
    assert sorted(e.subject for e in estimates) == sorted(segments)  # each once
    assert (services.workdir / "inbox" / "done" / "sim.h5").exists()

    # Each step's work was done inside its container: its own log names every segment.
    for service in STEPS[1:]:
        processed = {
            line.get("subject")
            for line in map(_json, pod.logs(service).splitlines())
            if line.get("event") == "processed"
        }
        assert segments <= processed, (service, processed)

    def stacked() -> set[str]:
        lines = map(_json, catalog.log_path.read_text(errors="replace").splitlines())
        return {line.get("segment_id") for line in lines if line.get("event") == "segment stacked"}

    wait_until(lambda: segments <= stacked(), 60, "every segment stacked by the catalogue")


def _json(line: str) -> dict:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
