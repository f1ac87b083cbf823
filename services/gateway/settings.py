"""Gateway settings (env prefix ``NBEMBED_GATEWAY_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from schemas.login_ticket import REDEEM_PATH
from services.common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    """Where the gateway listens and where it finds its tenants."""

    model_config = SettingsConfigDict(env_prefix="NBEMBED_GATEWAY_", extra="ignore")

    port: int = 8080
    tenants_file: Path | None = Field(
        default=None,
        description="Bootstrap tenants (a JSON list: id, api_key_sha256, allowed_origins, "
        "restricted) written into the store at start; the file wins for its ids. Leave it "
        "out in production and manage tenants with python -m nbembed.admin.",
    )
    tenants_refresh_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How often each replica reloads the tenants from the store: a tenant "
        "created, rotated or changed by an operator takes effect within this.",
    )
    admin_token: SecretStr | None = None
    admin_token_file: Path | None = Field(
        default=None,
        description="The operator credential for the admin API (/admin/v1) and "
        "python -m nbembed.admin. Unset: the admin API answers 401 to everyone.",
    )
    metrics_token: SecretStr | None = None
    metrics_token_file: Path | None = Field(
        default=None,
        description="The credential Prometheus shows to read /metrics (Bearer). The gateway's "
        "port is reachable by hosts and users' servers, and its metrics name tenants, so they "
        "are not public. Unset: /metrics answers 401 to everyone.",
    )
    group_id: str = "nbembed-gateway"
    saves_group_id: str = Field(
        default="nbembed-gateway-saves",
        description="Consumer group of the save outcomes (notebook.stored / store_failed): "
        "its partitions are handled in parallel, so twenty saves finishing at once do not "
        "wait in line behind each other's store writes.",
    )
    concurrency: int = Field(
        default=6,
        ge=1,
        description="Consumers per replica of the session outcomes and of the save outcomes, "
        "each handling its partitions in order: with concurrency x replicas equal to the "
        "partitions, one partition each.",
    )
    hub_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where the gateway reaches the hub's API.",
    )
    public_hub_url: str | None = Field(
        default=None,
        description="The hub as browsers reach it (iframe URLs), on the same site as the "
        "host pages; with per-user origins, JupyterHub's subdomain_host. Default: hub_url.",
    )
    subdomain_host: str | None = Field(
        default=None,
        description="JupyterHub's subdomain_host when each user's server has its own origin: "
        "sessions then name the user's origin as notebook_origin. Empty: one origin.",
    )
    sync_url: str = Field(default="http://127.0.0.1:8092", description="Sync's HTTP server.")
    internal_token: SecretStr | None = None
    internal_token_file: Path | None = Field(
        default=None, description="Token for sync's internal API."
    )
    login_ticket_seconds: float = Field(
        default=60, gt=0, le=60, description="How long an iframe URL's login ticket is valid."
    )
    ticket_key: SecretStr | None = None
    ticket_key_file: Path | None = Field(
        default=None,
        description="HMAC-SHA256 key that signs login tickets: only the gateway (all its "
        "replicas) may read it.",
    )
    hub_login_token: SecretStr | None = None
    hub_login_token_file: Path | None = Field(
        default=None,
        description="Token the hub's login handler presents to redeem tickets "
        f"(POST {REDEEM_PATH}); only the hub and the gateway may read it.",
    )
    max_body_bytes: int = Field(default=64 * 1024, gt=0, description="Largest request body.")
    max_wait_seconds: float = Field(default=30, gt=0, description="Longest long-poll allowed.")
    max_input_bytes: int = Field(
        default=10 * 2**20,
        gt=0,
        le=11 * 2**20,
        description="Largest input file a host may upload (kept in one store document).",
    )
    max_diff_bytes: int = Field(
        default=4 * 2**20,
        gt=0,
        le=64 * 2**20,
        description="Largest pair of revisions (their stored JSON together) a diff compares: "
        "nbdime's work grows with the product of cell counts and line lengths, so a diff of "
        "two notebooks near the 15 MiB revision limit is refused (422) rather than run.",
    )
    view_cache_entries: int = Field(
        default=128,
        ge=0,
        le=10_000,
        description="Rendered read-only views kept per replica (revisions never change, so a "
        "view is rendered once per revision and mode).",
    )
    audit_projector: bool = Field(
        default=True,
        description="Run the audit projector (group audit_group_id) in this process. Turn it "
        "off on replicas that should only serve the API, while at least one replica runs it.",
    )
    audit_group_id: str = Field(
        default="nbembed-gateway-audit",
        description="Consumer group of the audit projector (nbembed's events → the audit trail).",
    )
    audit_report_burst: int = Field(
        default=30, ge=1, description="Audit reports one user's server may send at once."
    )
    audit_report_per_second: float = Field(
        default=0.5,
        gt=0,
        description="Audit reports per second one user's server may send after its burst "
        "(per gateway replica); beyond that, 429 and one reports.throttled record.",
    )

    publish_timeout_seconds: float = Field(
        default=3,
        gt=0,
        description="Longest a request waits for Kafka to take its event; after that the "
        "event stays in the record's outbox for the relay, and new writes answer 503.",
    )
    outbox_relay_seconds: float = Field(
        default=1,
        gt=0,
        description="How often the outbox relay republishes events left pending (after a "
        "crash or a Kafka outage) and, while Kafka is down, pings it.",
    )
    broker_retry_after_seconds: int = Field(
        default=5, ge=1, description="Retry-After of the 503 answered while Kafka is down."
    )
    store_retry_after_seconds: int = Field(
        default=5, ge=1, description="Retry-After of the 503 answered while the store is down."
    )
    dead_letters: bool = Field(
        default=True,
        description="Consume dead-lettered commands (group dead_letters_group_id) and fail "
        "their sessions and saves with code internal. Any number of replicas may.",
    )
    dead_letters_group_id: str = Field(
        default="nbembed-gateway-dead-letters",
        description="Consumer group reading the dead-letter topics of nbembed's commands.",
    )

    required_secrets: ClassVar[tuple[str, ...]] = (
        "internal_token",
        "ticket_key",
        "hub_login_token",
    )

    @model_validator(mode="after")
    def _ticket_key_is_long(self) -> GatewaySettings:
        if self.ticket_key is not None and len(self.ticket_key.get_secret_value()) < 32:
            raise ValueError("the ticket key needs at least 32 characters of randomness")
        return self
