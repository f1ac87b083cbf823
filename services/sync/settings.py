"""Sync settings (env prefix ``NBEMBED_SYNC_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import STORE_ANSWER_SECONDS, STORE_SELECTION_SECONDS, ServiceSettings


class SyncSettings(ServiceSettings):
    """Where the hub and the provisioner are, how notebooks are shown, what a save may cost.

    Sync holds no hub credential: it reaches each user's server with a token of
    that user, scoped to that server, which the provisioner mints.
    """

    model_config = SettingsConfigDict(env_prefix="NBEMBED_SYNC_", extra="ignore")

    hub_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where sync reaches the users' servers (the hub's proxy).",
    )
    public_hub_url: str | None = Field(
        default=None,
        description="The hub as browsers reach it, for notebook page URLs (default: hub_url).",
    )
    subdomain_host: str | None = Field(
        default=None,
        description="JupyterHub's subdomain_host when each user's server has its own origin "
        "(<hub user>.<its host>): sync then names that host in each request to the proxy, "
        "which routes by it, and in page URLs. Empty or unset: one origin for all.",
    )
    provisioner_url: str = Field(
        default="http://127.0.0.1:8091", description="The provisioner's HTTP server."
    )
    provisioner_token: SecretStr | None = None
    provisioner_token_file: Path | None = Field(
        default=None, description="Sync's secret for the provisioner's server-token API."
    )
    token_refresh_margin_seconds: float = Field(
        default=60, ge=0, description="A server token is replaced this long before it expires."
    )
    health_port: int = 8092
    internal_token: SecretStr | None = None
    internal_token_file: Path | None = Field(
        default=None, description="Token the gateway shows to read stored notebooks."
    )
    revisions_kept: int = Field(default=50, ge=1, description="Revisions kept per notebook.")
    group_id: str = "nbembed-sync"
    saves_group_id: str = "nbembed-sync-saves"
    inputs_group_id: str = "nbembed-sync-inputs"
    max_input_bytes: int = Field(
        default=11 * 2**20,
        gt=0,
        description="Largest input file kept (the gateway's limit is the one hosts see).",
    )
    concurrency: int = Field(
        default=12,
        ge=1,
        description="Consumers per replica of each topic, each handling its partitions' "
        "events in order: with concurrency x replicas equal to the partitions (the stack's "
        "topics have 12; it sets this to 12 / replicas), one partition each.",
    )
    max_notebook_bytes: int = Field(
        default=15 * 2**20,
        gt=0,
        le=15 * 2**20,
        description="Larger notebooks are refused with a clear reason (MongoDB's 16 MB "
        "document limit, less room for the revision's own fields); never truncated.",
    )
    save_read_seconds: float = Field(
        default=15, gt=0, description="Longest a saved file's read from its server may take."
    )
    placement_seconds: float = Field(
        default=20,
        gt=0,
        description="Longest putting a session's notebook on its server may take; a server "
        "that does not answer by then fails the session (server_unavailable) instead of "
        "holding up the other sessions of its partition. Must outlast a store call that "
        "gets no answer (checked at start); a placement held up by a store that does not "
        "answer is waited out as an outage, not blamed on the server.",
    )
    prestart_kernel: bool = Field(
        default=True,
        description="Start the notebook's kernel (the session profile's) on the user's server "
        "while the notebook is placed, before the session is ready, so the page connects to a "
        "running kernel; off: the page starts it as it loads (about a second later).",
    )
    prestart_seconds: float = Field(
        default=5,
        gt=0,
        description="Longest the kernel's start may hold up session.ready; past it, or on any "
        "error, the session is ready anyway and the page starts the kernel.",
    )
    max_json_depth: int = Field(
        default=100, ge=10, le=500, description="Deepest nesting accepted in a saved notebook."
    )
    work_folder: str = Field(default="work", pattern=r"^[A-Za-z0-9_-]+$")
    ui: Literal["notebook", "lab"] = Field(
        default="notebook",
        description="notebook: Notebook 7's single-document page; lab: JupyterLab.",
    )

    required_secrets: ClassVar[tuple[str, ...]] = ("provisioner_token", "internal_token")

    @model_validator(mode="after")
    def _placement_outlasts_a_hung_store_call(self) -> SyncSettings:
        # PyMongo gives up on a store that does not answer after STORE_ANSWER_SECONDS
        # (it may try a read or write twice); that error waits out the outage. A
        # placement bound below it would fail the session as its server's fault.
        hung_store_call = STORE_SELECTION_SECONDS + 2 * STORE_ANSWER_SECONDS
        if self.placement_seconds <= hung_store_call:
            raise ValueError(
                f"placement_seconds must exceed {hung_store_call:.0f}s, the longest a store "
                "call takes to fail when the store does not answer"
            )
        return self
