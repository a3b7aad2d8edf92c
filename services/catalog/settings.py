"""``LISA_CATALOG_*`` settings, each with its default and why."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from choreo.settings import home


class CatalogSettings(BaseSettings):
    """How the catalogue promotes sources and where it keeps its state and products."""

    model_config = SettingsConfigDict(env_prefix="LISA_CATALOG_")

    fap: float = Field(
        1e-3,
        gt=0,
        lt=1,
        description="false-alarm probability of a promotion, after multiplying a bin's "
        "chi2_{4N} tail probability by the number of independent bins",
    )
    merge_bins: int = Field(2, ge=0, description="significant bins this close are one source")
    association_bins: int = Field(1, ge=0, description="estimates this close join a source")
    max_links: int = Field(
        128,
        ge=0,
        description="contributing traces kept per grid and linked from each update span "
        "(the OpenTelemetry SDK keeps 128 links per span by default)",
    )
    products_dir: Path | None = Field(
        None, description="catalog.csv and catalog.h5; default $LISA_CHOREO_HOME/products/catalog"
    )
    store: str = Field(
        "memory://",
        description="faust table store; state is rebuilt from the changelog topic at start",
    )
    partitions: int = Field(
        1,
        ge=1,
        description="partitions of the by-grid topic and the stack table: one grid lives on one "
        "partition, so more only helps when several grids (segment lengths) are stacked",
    )
    replication: int = Field(1, ge=1, description="replication of the topics faust creates")
    session_timeout_s: float = Field(
        10.0,
        ge=6.0,
        description="a killed worker that is not restarted keeps its partitions this long (a "
        "restarted one takes them back at once: static membership, LISA_STEP_INSTANCE_ID)",
    )
    heartbeat_interval_s: float = Field(
        0.5, gt=0, description="heartbeat period: how soon a rebalance (a hand-over) is noticed"
    )
    commit_interval_s: float = Field(1.0, gt=0, description="how often input offsets commit")
    request_timeout_s: float = Field(
        40.0,
        gt=0,
        description="how long a fetch or produce request waits for its broker before it is "
        "given up and retried elsewhere (the steps' aiokafka default); faust's own defaults "
        "(90 s, and 1200 s for produce) held the catalogue for minutes in the lab when a "
        "broker host vanished without closing its connections. Fetches wait at least the "
        "session timeout (faust requires it)",
    )
    data_dir: Path | None = Field(
        None, description="faust's working directory; default $LISA_CHOREO_HOME/catalog/<app id>"
    )

    delay_s: float = Field(
        0.0,
        ge=0,
        description="pause between publishing a segment's updates and persisting it; only for "
        "fault-injection tests and demos, to widen the window a crash must survive",
    )

    def products_path(self) -> Path:
        return self.products_dir or home() / "products" / "catalog"

    def data_path(self, app_id: str) -> Path:
        return self.data_dir or home() / "catalog" / app_id
