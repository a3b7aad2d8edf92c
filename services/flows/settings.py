"""``LISA_FLOWS_*``: the flow monitor's deadlines, its web view and the replay credentials.

The default deadline, 30 s, comes from what was measured (README "Benchmark", bench/README.md)
and from what a healthy step may legitimately spend on one segment without taking anything else:

- a segment goes through every stage in p50 275 ms / p99 389 ms end to end (published ->
  catalogued at 2 segments/s); one runtime hop is 25 ms at p99; the slowest step, ``estimate``,
  spends ~130 ms of CPU per segment (7.8 events/s on one replica);
- a transient error is retried 4 times with backoff 0.5, 1, 2, 4 s (``LISA_STEP_*``): 7.5 s at
  most before the input is dead-lettered; a killed replica's partitions move after the session
  timeout, 10 s.

The deadline is a bound on a partition making NO progress (see ``state``), not on queueing: a
burst of 365 segments queues for ~80 s but makes progress every ~200 ms, and is never stuck. 30 s
is ~75x the p99 of a whole flow and 4x the retry budget, so a slow segment, a retried store hiccup
or a replica's hand-over never alerts, while a stopped step alerts within half a minute. Set
``LISA_FLOWS_DEADLINE_S`` for all stages, or ``LISA_FLOWS_DEADLINES`` per stage label or service
(JSON: ``{"catalogued": 60}``; the faust catalogue's own session timeout is 30 s).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from choreo.settings import KafkaSettings
from lisa_pipeline.stages import Stage

DAY_S = 86_400.0


class FlowsSettings(BaseSettings):
    """``LISA_FLOWS_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="LISA_FLOWS_")

    deadline_s: float = Field(
        30.0,
        gt=0,
        description="a segment waiting longer, on a partition without progress, is stuck",
    )
    deadlines: dict[str, float] = Field(
        default_factory=dict,
        description="per stage label (conditioned, searched, estimated, catalogued) or service",
    )
    check_interval_s: float = Field(1.0, gt=0, description="how often stuck flows are looked for")
    offsets_interval_s: float = Field(
        2.0, gt=0, description="how often committed and end offsets are read (lag, throughput)"
    )
    window_s: float = Field(60.0, gt=0, description="throughput window")
    retain_s: float = Field(
        30 * DAY_S, gt=0, description="an ended flow is forgotten this long after its last event"
    )
    http_host: str = Field("127.0.0.1", description="the flow view's address (0.0.0.0: anyone)")
    http_port: int | None = Field(
        8790, ge=0, le=65535, description="the flow view's port (0: any free one)"
    )
    replay: bool = Field(True, description="offer the replay action in the view")
    replay_sasl_username: str | None = Field(
        None, description="the operator principal replay runs as when the cluster has SASL"
    )
    replay_sasl_password_file: Path | None = Field(
        None, description="its password file (e.g. $LISA_CHOREO_HOME/secure/operator.password)"
    )

    def deadline_for(self, stage: Stage) -> float:
        """Seconds a segment may wait to reach ``stage``."""
        for name in (stage.reached, stage.service):
            if name in self.deadlines:
                return float(self.deadlines[name])
        return self.deadline_s

    def replay_kafka(self, kafka: KafkaSettings) -> tuple[KafkaSettings | None, str]:
        """The connection replay uses, or None and why not.

        The monitor reads with its own principal, which may write none of the pipeline's topics;
        replay writes a letter back to its home topic, so on a cluster with SASL it runs as the
        operator (``LISA_FLOWS_REPLAY_SASL_*``), whose ACLs allow exactly that. Without SASL there
        are no principals and replay uses the monitor's connection."""
        if not self.replay:
            return None, "replay is switched off (LISA_FLOWS_REPLAY=false)"
        if not kafka.sasl_mechanism:
            return kafka, "the cluster has no authentication: replay uses the monitor's connection"
        if not (self.replay_sasl_username and self.replay_sasl_password_file):
            return None, (
                "replay needs the operator's credentials: set LISA_FLOWS_REPLAY_SASL_USERNAME "
                "and LISA_FLOWS_REPLAY_SASL_PASSWORD_FILE"
            )
        operator = kafka.model_copy(
            update={
                "sasl_username": self.replay_sasl_username,
                "sasl_password": None,
                "sasl_password_file": self.replay_sasl_password_file,
            }
        )
        return operator, f"replay runs as {self.replay_sasl_username}"


def zipkin_url() -> str:
    """``LISA_ZIPKIN_URL``, the tracing UI the view links each segment's trace to."""
    return os.environ.get("LISA_ZIPKIN_URL", "http://127.0.0.1:9411").rstrip("/")
