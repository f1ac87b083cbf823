"""Provisioner settings (env prefix ``NBEMBED_PROVISIONER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr
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
        default=180,
        gt=0,
        description="How long a session waits while the hub answers 429 (busy spawning "
        "other users' servers, beyond its concurrent_spawn_limit); not counted in "
        "spawn_timeout_seconds, which runs from the hub's acceptance. Keep the two together "
        "under the consumer's max poll interval (300 s), or a handler still waiting is "
        "taken for dead and its partition moved to another member.",
    )
    hub_outage_seconds: float = Field(
        default=30, gt=0, description="How long to retry while the hub does not answer at all."
    )
    concurrency: int = Field(
        default=6, ge=1, description="Sessions provisioned in parallel (one per partition)."
    )

    required_secrets: ClassVar[tuple[str, ...]] = ("hub_api_token", "sync_token")
