"""Demo host app settings (env prefix ``NBEMBED_DEMO_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DemoSettings(BaseSettings):
    """Where the demo listens and how it reaches the gateway."""

    model_config = SettingsConfigDict(env_prefix="NBEMBED_DEMO_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8090
    gateway_url: str = "http://127.0.0.1:8080"
    """The gateway as the demo's backend reaches it."""
    public_gateway_url: str = "http://127.0.0.1:8080"
    """The gateway as the browser reaches it (for the SDK)."""
    api_key: SecretStr | None = None
    api_key_file: Path | None = None

    @model_validator(mode="after")
    def _load_key(self) -> DemoSettings:
        if self.api_key is None and self.api_key_file is not None:
            self.api_key = SecretStr(self.api_key_file.read_text().strip())
        if self.api_key is None:
            raise ValueError("set NBEMBED_DEMO_API_KEY or NBEMBED_DEMO_API_KEY_FILE")
        return self
