"""Provisioner settings (env prefix ``NBEMBED_PROVISIONER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class ProvisionerSettings(ServiceSettings):
    """Where the hub is and how the provisioner talks to it.

    The provisioner is the only nbembed service that holds the hub service
    token; sync gets per-user server tokens from it with its own secret.
    """

    model_config = SettingsConfigDict(env_prefix="NBEMBED_PROVISIONER_", extra="ignore")

    hub_url: str = Field(
        default="http://127.0.0.1:8000", description="The hub's public URL (proxy)."
    )
    hub_api_token: SecretStr | None = Field(default=None, description="The hub service token.")
    hub_api_token_file: Path | None = Field(
        default=None, description="A file holding the service token (preferred over env)."
    )
    health_port: int = 8091
    sync_token: SecretStr | None = Field(
        default=None, description="The secret sync shows to get server tokens."
    )
    sync_token_file: Path | None = Field(default=None, description="A file holding it.")
    hub_notice_token: SecretStr | None = Field(
        default=None,
        description="The secret the hub shows when it reports a stopped server; None: no "
        "notices are taken, and stopped servers are found by reconciliation alone.",
    )
    hub_notice_token_file: Path | None = Field(default=None, description="A file holding it.")
    reconcile_seconds: float = Field(
        default=30,
        gt=0,
        description="How often the hub is asked whether the servers of open sessions still "
        "run (catches a stop whose notice was lost).",
    )
    server_token_seconds: int = Field(
        default=900,
        ge=120,
        le=86400,
        description="Lifetime of the per-user server tokens minted for sync.",
    )
    group_id: str = "nbembed-provisioner"
    spawn_timeout_seconds: float = Field(
        default=120, gt=0, description="Longest a session waits for its server."
    )
    hub_busy_seconds: float = Field(
        default=420,
        gt=0,
        description="How long a session waits while the hub answers 429 (busy spawning "
        "other users' servers, beyond its concurrent_spawn_limit); not counted in "
        "spawn_timeout_seconds, which runs from the hub's acceptance. A burst of 100 new "
        "users at the hub's default limit kept one of them waiting more than 180 s. With "
        "spawn_timeout_seconds and hub_outage_seconds it must fit in "
        "kafka_max_poll_interval_seconds (checked at start).",
    )
    hub_outage_seconds: float = Field(
        default=30, gt=0, description="How long to retry while the hub does not answer at all."
    )
    concurrency: int = Field(
        default=6, ge=1, description="Sessions provisioned in parallel (one per partition)."
    )

    kafka_max_poll_interval_seconds: float = Field(
        default=600,
        ge=60,
        le=3600,
        description="As for every service (300 s there), longer here: a session's handler "
        "waits in line for the hub (busy, then spawning, then unreachable).",
    )

    required_secrets: ClassVar[tuple[str, ...]] = ("hub_api_token", "sync_token")

    @model_validator(mode="after")
    def _hub_waits_fit_the_poll_interval(self) -> ProvisionerSettings:
        longest = self.hub_busy_seconds + self.spawn_timeout_seconds + self.hub_outage_seconds
        if longest >= self.kafka_max_poll_interval_seconds:
            raise ValueError(
                f"hub_busy_seconds, spawn_timeout_seconds and hub_outage_seconds "
                f"({longest:.0f}s in all) must stay below kafka_max_poll_interval_seconds "
                f"({self.kafka_max_poll_interval_seconds:.0f}s): a session's handler waits "
                "for each in line"
            )
        return self
