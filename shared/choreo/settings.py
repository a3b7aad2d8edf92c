"""Settings from environment variables, each with a documented default (see README)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def home() -> Path:
    """``LISA_CHOREO_HOME``: the services' and the local stack's state (default: the user's cache
    folder, ``~/.cache/lisa-choreo``); created on first use."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lisa-choreo"
    path = Path(os.environ.get("LISA_CHOREO_HOME", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


class KafkaSettings(BaseSettings):
    """How to reach the cluster. ``LISA_KAFKA_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="LISA_KAFKA_")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # The password in a file (mode 0600) instead: the secret stays out of the environment, so
    # `env`, /proc/<pid>/environ and a printed `stack env` show only where it is. A value in
    # LISA_KAFKA_SASL_PASSWORD wins over the file.
    sasl_password_file: Path | None = None
    ssl_cafile: str | None = None
    # A prefix on every topic name lets several deployments (or test runs) share one cluster.
    topic_prefix: str = ""
    max_request_bytes: int = Field(
        1_048_576,
        gt=0,
        description="largest record a producer sends: the broker's message.max.bytes (1 MiB "
        "by default, set so in the local stack)",
    )

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments common to aiokafka producers, consumers and admin clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(cafile=self.ssl_cafile)
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.password()
        return options

    def password(self) -> str | None:
        """The SASL password: ``sasl_password``, else the content of ``sasl_password_file``
        (read at each client's creation, so a rotated file is picked up by the next client)."""
        if self.sasl_password is not None:
            return self.sasl_password.get_secret_value()
        if self.sasl_password_file is not None:
            return self.sasl_password_file.read_text().strip()
        return None

    def faust_broker_options(self) -> dict[str, Any]:
        """The same connection for a faust app (its clients are aiokafka's too)."""
        import faust

        ssl_context = self.client_options().get("ssl_context")
        credentials: Any = None
        if self.security_protocol.startswith("SASL"):
            credentials = faust.SASLCredentials(
                username=self.sasl_username,
                password=self.password(),
                ssl_context=ssl_context,
                mechanism=self.sasl_mechanism,
            )
        elif ssl_context is not None:
            credentials = faust.SSLCredentials(ssl_context)
        return {
            "broker": [f"kafka://{h.strip()}" for h in self.bootstrap_servers.split(",")],
            "broker_credentials": credentials,
        }

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


class StepSettings(BaseSettings):
    """How one step service consumes. ``LISA_STEP_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="LISA_STEP_")

    group_id: str | None = Field(None, description="consumer group; defaults to the step name")
    client_id: str | None = Field(None, description="defaults to <step>-<hostname>-<pid>")
    max_batch: int = Field(500, ge=1, description="records per getmany round")
    poll_timeout_ms: int = Field(500, ge=10)
    max_retries: int = Field(4, ge=0, description="attempts after the first on transient errors")
    retry_backoff_s: float = Field(0.5, gt=0, description="first backoff; doubles, with jitter")
    retry_backoff_max_s: float = Field(15.0, gt=0)
    linger_ms: int = Field(0, ge=0, description="producer batching delay; 0 = lowest latency")
    settle_behind: bool = Field(
        True,
        description="wait for a batch's acknowledgements and commit it while the next batch is "
        "fetched and handled (false: settle each batch before fetching the next, the former "
        "behaviour, kept for side-by-side measurement)",
    )
    commit_interval_ms: int = Field(
        500,
        ge=0,
        description="commit the offsets of settled batches (outputs acknowledged) at most this "
        "often, and whenever the step goes idle, is revoked or stops; 0 = one commit per batch. "
        "A commit per batch of one record is a request to the broker per input; a crash replays "
        "at most this long's acknowledged inputs more (deterministic ids make them repeats)",
    )
    static_membership: bool = Field(
        True,
        description="join the group as a static member (KIP-345, group.instance.id): a replica "
        "restarted with the same instance id takes its partitions back at once, without a "
        "rebalance; a clean stop (SIGTERM) still hands them over at once (explicit LeaveGroup)",
    )
    instance_id: str | None = Field(
        None,
        description="group.instance.id; unique among the group's live members and stable across "
        "restarts of one replica (in Kubernetes: the pod name, which is the hostname). Default "
        "<step>-<hostname>-<replica>",
    )
    replica: int | None = Field(
        None,
        ge=0,
        description="replica index in the default instance id; default: the lowest index no "
        "live process of the same group holds on this host (a lock file under "
        "$LISA_CHOREO_HOME/instances), so a restarted replica takes its predecessor's",
    )
    session_timeout_ms: int = Field(
        10_000,
        ge=6_000,
        description="a member not heard of for this long is removed and its partitions move: "
        "the bound on recovery when a dead replica is not restarted",
    )
    heartbeat_interval_ms: int = Field(
        500,
        ge=100,
        description="heartbeat period; also how soon the other replicas learn of a rebalance "
        "(a SIGTERMed replica's hand-over)",
    )
    fetch_max_wait_ms: int = Field(
        100,
        ge=0,
        description="how long the broker holds a fetch that finds no data; a partition handed "
        "over waits for the fetch in flight on the connection (aiokafka's default: 500)",
    )
    max_poll_interval_ms: int = 300_000
