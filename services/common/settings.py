"""Settings every service shares; each service subclasses with its own env prefix."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Connection settings common to all services.

    A subclass sets ``env_prefix`` (``NBEMBED_GATEWAY_``, …) so each service can
    be pointed at its own Kafka or MongoDB when ops split them.
    """

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, comma separated."
    )
    mongodb_uri: SecretStr = Field(
        default=SecretStr("mongodb://127.0.0.1:27017/"),
        description="MongoDB URI; a secret because it may carry a password (prefer the next two).",
    )
    mongodb_username: str | None = Field(
        default=None, description="This service's own store user (with the password file)."
    )
    mongodb_password_file: Path | None = Field(
        default=None,
        description="File holding that user's password: kept out of the environment and argv.",
    )
    mongodb_database: str = "nbembed"
    log_level: str = "INFO"
    http_host: str = Field(
        default="127.0.0.1", description="Address for the HTTP/health server (0.0.0.0 in a pod)."
    )
    dlq_after_attempts: int = Field(default=5, ge=1, description="Tries before dead-lettering.")
    retry_backoff_seconds: float = Field(default=0.5, gt=0, description="First retry delay.")
