"""Settings of the local stack (env prefix ``NBEMBED_STACK_``) and of the hub it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class StackSettings(BaseSettings):
    """Ports, folders and external components of the local stack.

    Every component can be replaced by an external one: set ``kafka_bootstrap``,
    ``mongodb_uri`` or ``hub_url`` + ``hub_api_token`` and the stack neither
    starts nor stops that component, it only checks that it answers.
    """

    model_config = SettingsConfigDict(env_prefix="NBEMBED_STACK_", extra="ignore")

    state_dir: Path = Field(default=REPO_ROOT / ".run", description="Config, data, logs, secrets.")
    cache_dir: Path = Field(default=REPO_ROOT / ".cache", description="Downloads and builds.")

    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    kafka_partitions: int = 12
    kafka_bootstrap: str | None = Field(default=None, description="External Kafka instead.")

    mongodb_port: int = 27017
    mongodb_uri: SecretStr | None = Field(default=None, description="External MongoDB instead.")
    postgres_bin_dir: Path = Field(
        default=Path("/usr/lib/postgresql/15/bin"),
        description="Debian's PostgreSQL programs (FerretDB's backend on the local stack).",
    )

    hub_port: int = 8000
    hub_api_port: int = 8081
    proxy_api_port: int = 8001
    hub_url: str | None = Field(default=None, description="External hub (public URL) instead.")
    hub_api_token: SecretStr | None = Field(default=None, description="Its service token.")

    gateway_port: int = 8080
    provisioner_health_port: int = 8091
    sync_health_port: int = 8092
    demo_port: int = 8090
    replicas: int = Field(
        default=1,
        ge=1,
        le=9,
        description="Processes of each service (gateway, provisioner, sync). Replicas of a "
        "service share its port (SO_REUSEPORT: the kernel spreads connections) and its "
        "consumer groups (Kafka spreads partitions); each also listens on a port of its own "
        "(`replica_ports_from`) so the stack checks every one. No more than "
        "`kafka_partitions`: a member beyond the partition count gets none and idles.",
    )
    replica_ports_from: int = Field(
        default=8100,
        description="First of the replicas' own ports: replica i (from 1) of the gateway, "
        "provisioner and sync listens on this + 10 * service index + i (8101, 8111, 8121…).",
    )

    tenants: list[str] = Field(
        default=["demo", "acme", "vault"],
        description="Tenant ids of the demo host apps; each gets an API key in secrets/.",
    )
    restricted_tenants: list[str] = Field(
        default=["vault"],
        description="Those of `tenants` that run in restricted-data mode (no download or "
        "export path on their users' servers).",
    )
    allowed_origins: list[str] = Field(
        default=["http://127.0.0.1:8090", "http://127.0.0.1:8190"],
        description="Host-page origins that may frame the hub and notebooks (CSP frame-ancestors): "
        "the demo host page and the minimal Node host of examples/node-host.",
    )
    per_user_origins: bool = Field(
        default=False,
        description="Serve each hub user's server on its own origin "
        "(JupyterHub's subdomain_host with __Host- cookies): the hub on "
        "jupyter.<origins_domain>, each user on <hub user>.jupyter.<origins_domain>, "
        "the demo host page on app.<origins_domain>. Browsers must resolve those names "
        "to 127.0.0.1 (chromium: --host-resolver-rules); services keep using 127.0.0.1.",
    )
    origins_domain: str = Field(
        default="nbembed.localhost",
        description="The site of the hub, the users' servers and the host page when "
        "per_user_origins is on. Must be under .localhost: the local stack serves plain "
        "HTTP, and only there do browsers treat it as a secure context (Fetch Metadata "
        "headers for the ticket login, __Host- cookies).",
    )
    allow_top_level_login: bool = Field(
        default=False,
        description="Let iframe URLs also log in when opened as a top-level page. Off, the "
        "hub's login answers only inside a frame (Fetch Metadata), which stops login CSRF.",
    )
    spawner_class: str = Field(
        default="local-users",
        description="JupyterHub spawner: 'local-users' (a local process per hub user, each as "
        "its own OS account, created on first start; needs root), 'simple' (local processes "
        "as the stack's own account: isolates nothing) or a class such as "
        "dockerspawner.DockerSpawner / kubespawner.KubeSpawner.",
    )
    egress_filter: bool = Field(
        default=True,
        description="With the local-users spawner, let the servers' and kernels' accounts "
        "connect only to the hub API and the gateway (nftables, see infra/egress.py). Needs "
        "Debian's nftables and root; off, kernels reach every listener on the machine.",
    )
    kernel_runtime_root: Path = Field(
        default=Path("/run/nbembed"),
        description="Per-account folders (<root>/<account>, 0700) for the servers' "
        "runtime files and their kernels' IPC sockets: short, since a Unix socket's path "
        "is limited to 107 bytes.",
    )
    singleuser_base_python: Path = Field(
        default=Path("/usr/bin/python3.11"),
        description="A Python 3.11 every account may run: the single-user servers' "
        "environment is made from it (see infra/singleuser.py).",
    )
    cull_idle_seconds: int = Field(default=3600, ge=60)
    concurrent_spawn_limit: int = Field(
        default=4,
        ge=1,
        description="Spawns the hub runs at once; beyond it answers 429. Low by default: a "
        "2-core machine starts servers no faster in bigger batches.",
    )
    spawn_retry_after: tuple[int, int] = Field(
        default=(1, 3), description="Range of the Retry-After seconds the hub sends with 429."
    )
    trace_sample_ratio: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of new traces the services record, as JSON lines in "
        '<state_dir>/traces (README "Tracing"). 0: only requests whose caller sends a '
        "sampled W3C traceparent (the tracing tests' way), so the suite pays next to nothing.",
    )
    otlp_endpoint: str | None = Field(
        default=None, description="Also export the services' spans to this OTLP/HTTP URL."
    )

    @field_validator("origins_domain")
    @classmethod
    def _localhost_only(cls, value: str) -> str:
        value = value.strip(".").lower()
        if value != "localhost" and not value.endswith(".localhost"):
            raise ValueError(
                "the local stack serves HTTP: over HTTP browsers send Fetch Metadata and "
                "keep __Host- cookies only for *.localhost names"
            )
        return value

    @model_validator(mode="after")
    def _partitions_for_every_replica(self) -> StackSettings:
        if self.replicas > self.kafka_partitions:
            raise ValueError(
                f"{self.replicas} replicas need at least as many Kafka partitions "
                f"(kafka_partitions is {self.kafka_partitions})"
            )
        return self

    @model_validator(mode="after")
    def _origins_follow_the_mode(self) -> StackSettings:
        # With per-user origins the host page must be on the hub's site: the demo's
        # app.<domain> is then the one allowed framer, unless origins were given.
        if self.per_user_origins and "allowed_origins" not in self.model_fields_set:
            self.allowed_origins = [self.host_page_origin]
        return self

    @property
    def subdomain_host(self) -> str | None:
        """JupyterHub's ``subdomain_host`` (the hub's own origin), or None: one origin."""
        if not self.per_user_origins:
            return None
        return f"http://jupyter.{self.origins_domain}:{self.hub_port}"

    @property
    def browser_hub_url(self) -> str:
        """The hub as browsers open it (iframe URLs); `public_hub_url` is for programs."""
        return self.subdomain_host or self.public_hub_url

    @property
    def host_page_origin(self) -> str:
        """The demo host page's origin (same site as the hub in either mode)."""
        host = f"app.{self.origins_domain}" if self.per_user_origins else "127.0.0.1"
        return f"http://{host}:{self.demo_port}"

    def replica_port(self, service_index: int, replica: int) -> int:
        """The own port of ``replica`` (from 1) of the service at ``service_index``."""
        return self.replica_ports_from + 10 * service_index + replica

    # Derived locations: one place to change the layout of the state folder.
    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def traces_dir(self) -> Path:
        """Spans the services recorded, one JSON line each, a file per process."""
        return self.state_dir / "traces"

    @property
    def service_token_file(self) -> Path:
        return self.secrets_dir / "hub-service-token"

    def kafka_password_file(self, user: str) -> Path:
        """Where the local stack keeps a Kafka user's password (``admin``, ``gateway``, …)."""
        return self.secrets_dir / f"kafka-{user}"

    @property
    def ticket_key_file(self) -> Path:
        """The gateway's HMAC key for login tickets (the gateway alone reads it)."""
        return self.secrets_dir / "ticket-key"

    @property
    def hub_login_token_file(self) -> Path:
        """The hub's credential for redeeming tickets at the gateway."""
        return self.secrets_dir / "hub-login-token"

    @property
    def admin_token_file(self) -> Path:
        """The operator credential for the gateway's admin API (python -m nbembed.admin)."""
        return self.secrets_dir / "admin-token"

    @property
    def metrics_token_file(self) -> Path:
        """Prometheus's credential for the gateway's /metrics."""
        return self.secrets_dir / "metrics-token"

    @property
    def hub_provisioner_token_file(self) -> Path:
        """The hub's credential for telling the provisioner that a server stopped."""
        return self.secrets_dir / "hub-provisioner-token"

    @property
    def hub_culler_token_file(self) -> Path:
        """The idle culler's hub token (a fixed one, so a test can run a culler of its own)."""
        return self.secrets_dir / "hub-culler-token"

    @property
    def hub_ops_token_file(self) -> Path:
        """The operators' hub service token: stop (or start) a server by hand."""
        return self.secrets_dir / "hub-ops-token"

    @property
    def venv_bin(self) -> Path:
        return REPO_ROOT / ".venv" / "bin"

    @property
    def local_kafka(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def local_mongodb(self) -> bool:
        return self.mongodb_uri is None

    @property
    def local_hub(self) -> bool:
        return self.hub_url is None

    @property
    def kafka_bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def mongodb(self) -> str:
        if self.mongodb_uri is not None:
            return self.mongodb_uri.get_secret_value()
        return f"mongodb://127.0.0.1:{self.mongodb_port}/"

    @property
    def public_hub_url(self) -> str:
        """Where services and tests reach the hub (with per-user origins, still 127.0.0.1)."""
        return self.hub_url or f"http://127.0.0.1:{self.hub_port}"


class HubSettings(BaseSettings):
    """What ``infra/hub/jupyterhub_config.py`` needs; set by the stack as ``NBEMBED_HUB_*``."""

    model_config = SettingsConfigDict(env_prefix="NBEMBED_HUB_", extra="ignore")

    state_dir: Path
    bind_url: str = "http://127.0.0.1:8000"
    hub_bind_url: str = "http://127.0.0.1:8081"
    proxy_api_url: str = "http://127.0.0.1:8001"
    proxy_command: str = "configurable-http-proxy"
    singleuser_python: str = "python3"
    python: str = "python3"
    service_token_file: Path
    allowed_origins: Annotated[list[str], NoDecode] = []
    spawner_class: str = "local-users"
    cull_idle_seconds: int = 3600
    concurrent_spawn_limit: int = 100
    spawn_retry_after: tuple[int, int] = (30, 60)
    fast_readiness_poll: bool = True
    gateway_url: str = "http://127.0.0.1:8080"
    kernel_runtime_root: Path = Path("/run/nbembed")
    login_token_file: Path | None = Field(
        default=None,
        description="The token the login handler presents to the gateway to redeem tickets "
        "(default: secrets/hub-login-token in the state folder).",
    )
    allow_top_level_login: bool = False
    provisioner_url: str = Field(
        default="http://127.0.0.1:8091",
        description="Where the hub tells nbembed's provisioner that a server stopped.",
    )
    provisioner_token_file: Path | None = Field(
        default=None,
        description="The token the hub presents to the provisioner for those notices "
        "(default: secrets/hub-provisioner-token in the state folder).",
    )
    culler_token_file: Path | None = Field(
        default=None,
        description="The idle culler service's token (default: secrets/hub-culler-token).",
    )
    ops_token_file: Path | None = Field(
        default=None,
        description="The `ops` service's token, for operators who stop servers through the "
        "hub API (default: secrets/hub-ops-token).",
    )
    server_poll_seconds: int = Field(
        default=1,
        ge=1,
        description="Spawner.poll_interval: how soon the hub notices a server whose "
        "process died (a local process poll costs a system call).",
    )
    kernels_path: str = Field(
        default="",
        description="Extra Jupyter data folders (JUPYTER_PATH) of the single-user servers: "
        "where the kernels of the tenants' profiles beyond python3 are (infra/kernels.py).",
    )
    subdomain_host: str = Field(
        default="",
        description="JupyterHub's subdomain_host: when set, each user's server on its own "
        "origin with __Host- cookies (empty: every server on the hub's origin).",
    )

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # Comma separated in the environment (origins never contain commas).
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    def secret(self, given: Path | None, name: str) -> str:
        """A secret file's content: ``given``, or ``name`` in the state folder's secrets."""
        return (given or self.state_dir / "secrets" / name).read_text().strip()

    def frame_ancestors(self) -> str:
        """The CSP that lets the allowed host pages, and nothing else, frame Jupyter."""
        return " ".join(["frame-ancestors", "'self'", *self.allowed_origins])

    def singleuser_tornado_settings(self) -> str:
        """``--ServerApp.tornado_settings`` for the single-user servers, as JSON.

        The CSP lets the allowed host pages frame the server; the page config
        tells the nbembed bridge which of them may ask it to save.
        """
        return json.dumps(
            {
                "headers": {"Content-Security-Policy": self.frame_ancestors()},
                "page_config_data": {"nbembedAllowedOrigins": ",".join(self.allowed_origins)},
            }
        )
