"""Settings every service shares; each service subclasses with its own env prefix."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SecretFileSettings(BaseSettings):
    """Settings whose secrets may come from files: a secret ``x`` is read from ``x_file``.

    Files keep secrets out of the environment and argv (a Kubernetes Secret or the
    local stack's ``.run/secrets``). Any ``SecretStr`` field with a ``<name>_file``
    sibling is filled from that file when not set directly; the names in
    ``required_secrets`` must end up set one way or the other.
    """

    required_secrets: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _read_secret_files(self) -> Self:
        fields = type(self).model_fields
        for name in fields:
            file = getattr(self, f"{name}_file", None) if f"{name}_file" in fields else None
            if getattr(self, name) is None and isinstance(file, Path):
                setattr(self, name, SecretStr(file.read_text().strip()))
        prefix = str(self.model_config.get("env_prefix", "")).upper()
        for name in self.required_secrets:
            if getattr(self, name) is None:
                variable = f"{prefix}{name.upper()}"
                raise ValueError(f"set {variable} or {variable}_FILE")
        return self


STORE_SELECTION_SECONDS = 5.0
"""How long one try waits to reach the store: to select it, to connect, and for the
client's own checks of it (``serverSelectionTimeoutMS``, ``connectTimeoutMS`` in mongo.py)."""
STORE_ANSWER_SECONDS = 6.0
"""How long one try waits for the store's answer (``socketTimeoutMS`` in mongo.py).

With the selection time, and twice (PyMongo may retry a read or write once), it
stays below sync's 20 s placement bound (checked at start): a store that accepts
connections and never answers is then told as the store being unavailable, and
waited out, not blamed on the user's server.
"""


class ServiceSettings(SecretFileSettings):
    """Connection settings common to all services.

    A subclass sets ``env_prefix`` (``NBEMBED_GATEWAY_``, …) so each service can
    be pointed at its own Kafka or MongoDB when ops split them.
    """

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, comma separated."
    )
    kafka_username: str | None = Field(
        default=None,
        description="SASL/SCRAM-SHA-512 user (the stack gives each service its own); "
        "None: connect without authentication.",
    )
    kafka_password: SecretStr | None = None
    kafka_password_file: Path | None = Field(
        default=None, description="A file holding the Kafka password (preferred over env)."
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
    reuse_port: bool = Field(
        default=False,
        description="Bind the service's port with SO_REUSEPORT, so several replicas on one "
        "host share it and the kernel spreads connections among them (the local stack's "
        "replicas; pods have an address each and leave it off).",
    )
    replica_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="A second port this replica alone listens on (same app), so a supervisor "
        "can check each replica behind a shared port; 0: none.",
    )
    http_keep_alive_seconds: float = Field(
        default=65,
        gt=0,
        le=600,
        description="How long an idle client connection stays open. Longer than a client's "
        "or load balancer's own idle limit (httpx 5 s, many balancers 60 s), so a client "
        "never reuses a connection the server is closing at that instant (a reset request).",
    )
    kafka_max_poll_interval_seconds: float = Field(
        default=300,
        ge=60,
        le=3600,
        description="Kafka's max.poll.interval.ms, in seconds: a consumer whose handler runs "
        "longer is taken for stuck, leaves its group, and its partitions go to another "
        "member while it still handles the message. Every wait a handler may do in line "
        "must fit in it (checked at start). A dead process is found by its missed "
        "heartbeats instead, within seconds.",
    )
    dlq_after_attempts: int = Field(default=5, ge=1, description="Tries before dead-lettering.")
    retry_backoff_seconds: float = Field(default=0.5, gt=0, description="First retry delay.")
    store_outage_seconds: float = Field(
        default=120,
        ge=0,
        description="How long a handler that cannot reach the store waits for it, trying "
        "again every second, before its failures count as retries: an outage is not the "
        "message's fault, and dead-lettering every message in flight would fail sessions "
        "and saves that work a minute later. With the retries after it, it must stay below "
        "kafka_max_poll_interval_seconds (300 s), so a consumer waiting is never taken "
        "for a stuck one (checked at start).",
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=100,
        ge=1,
        le=500,
        description="Longest a consumer's fetch waits at the broker for data. aiokafka keeps "
        "one fetch per broker in flight and cannot add a partition to it, so an event on a "
        "partition left out of the fetch in flight waits up to this long (500 ms by default: "
        "the warm sessions' 0.4-0.5 s outliers); lower costs idle fetches.",
    )
    kafka_partition_fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        le=500,
        description="The same wait for consumers whose wait delays nothing: a concurrent "
        "subscriber's (sync, the provisioner, the gateway's outcomes), sized to hold one "
        "partition each (concurrency times replicas equal to the partitions), as a fetch of "
        "one partition returns as soon as an event arrives on it, and the audit trail's, "
        "which nobody waits for. Idle fetches cost CPU: at 100 ms for every consumer, an idle "
        "two-replica stack took 95 % of a core. A consumer left with two partitions, while "
        "a replica is away, or right after a rebalance, can again delay an event this long.",
    )

    kafka_heartbeat_interval_ms: int = Field(
        default=500,
        ge=100,
        le=3000,
        description="How often a consumer-group member heartbeats. A member joining or "
        "leaving its group (a replica starting or stopping, each subscriber of a service "
        "as it starts) waits until every other member has heard of it on its next "
        "heartbeat: at aiokafka's 3 s a gateway, whose five audit subscribers share one "
        "group, took 33 s to start beside its second replica.",
    )

    otlp_endpoint: str | None = Field(
        default=None,
        description="OpenTelemetry: the collector's OTLP/HTTP traces URL (e.g. "
        "http://otel-collector:4318/v1/traces). Unset (and no trace_dir): tracing is off, "
        "nothing is instrumented or exported.",
    )
    trace_dir: Path | None = Field(
        default=None,
        description="OpenTelemetry: also write every recorded span as one JSON line to "
        "<trace_dir>/<service>-<pid>.jsonl (the local stack and its tests).",
    )
    trace_sample_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of new traces recorded; a trusted caller's sampled traceparent "
        "and the events' trace context decide for the rest. 0: only traces a caller asks for.",
    )

    @field_validator("otlp_endpoint", "trace_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty value (the chart's default) means off, not the current folder."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _longest_handling_fits_the_poll_interval(self) -> ServiceSettings:
        # A consumer that does not poll for max.poll.interval.ms leaves its group and
        # its partitions go to another replica while it still handles the message.
        backoff = self.retry_backoff_seconds * (2 ** (self.dlq_after_attempts - 1) - 1)
        tries = (STORE_SELECTION_SECONDS + 2 * STORE_ANSWER_SECONDS) * self.dlq_after_attempts
        longest = self.store_outage_seconds + backoff + tries
        if longest >= self.kafka_max_poll_interval_seconds:
            raise ValueError(
                f"store_outage_seconds plus the retries ({longest:.0f}s in all) must stay "
                f"below Kafka's poll interval ({self.kafka_max_poll_interval_seconds:.0f}s)"
            )
        return self

    @model_validator(mode="after")
    def _kafka_user_has_password(self) -> ServiceSettings:
        if self.kafka_username is not None and self.kafka_password is None:
            raise ValueError("a Kafka username needs ..._KAFKA_PASSWORD or ..._KAFKA_PASSWORD_FILE")
        return self
