"""Gateway settings (env prefix ``NBEMBED_GATEWAY_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    """Where the gateway listens and where it finds its tenants."""

    model_config = SettingsConfigDict(env_prefix="NBEMBED_GATEWAY_", extra="ignore")

    port: int = 8080
    tenants_file: Path = Field(description="JSON list of tenants (id, api_key_sha256, origins).")
    group_id: str = "nbembed-gateway"
    hub_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The hub's public URL, on the same site as the host pages.",
    )
    sync_url: str = Field(default="http://127.0.0.1:8092", description="Sync's HTTP server.")
    internal_token: SecretStr | None = None
    internal_token_file: Path | None = Field(
        default=None, description="Token for sync's internal API."
    )
    login_ticket_seconds: float = Field(
        default=60, gt=0, le=300, description="How long an iframe URL's login ticket is valid."
    )
    max_body_bytes: int = Field(default=64 * 1024, gt=0, description="Largest request body.")
    max_wait_seconds: float = Field(default=30, gt=0, description="Longest long-poll allowed.")

    @model_validator(mode="after")
    def _load_internal_token(self) -> GatewaySettings:
        if self.internal_token is None and self.internal_token_file is not None:
            self.internal_token = SecretStr(self.internal_token_file.read_text().strip())
        if self.internal_token is None:
            raise ValueError("set NBEMBED_GATEWAY_INTERNAL_TOKEN or ..._INTERNAL_TOKEN_FILE")
        return self
