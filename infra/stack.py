"""Bring the local stack up and down: the programs, their order, their checks."""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import functools
import hashlib
import json
import re
import secrets
import socket
import stat
import time
from pathlib import Path

import psutil

from infra import (
    egress,
    kafka,
    kafka_access,
    kernels,
    postgres,
    readiness,
    singleuser,
    store,
    supervisor,
)
from infra.settings import REPO_ROOT, StackSettings
from infra.supervisor import Program

SERVICES = ("gateway", "provisioner", "sync")
DEMO = "demo"
"""The demo host app: started with the services, checked like them."""


def _secret_file(path: Path, nbytes: int = 32) -> str:
    """Read a secret, creating it (random, owner-only) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(nbytes))
    return path.read_text().strip()


def sync_provisioner_token_file(settings: StackSettings) -> Path:
    """Sync's secret for the provisioner's server-token API (only those two read it)."""
    return settings.secrets_dir / "sync-provisioner-token"


def api_key_file(settings: StackSettings, tenant_id: str) -> Path:
    """Where the local stack keeps a demo tenant's API key."""
    return settings.secrets_dir / f"{tenant_id}-api-key"


def ensure_hub_token(settings: StackSettings) -> str:
    """The hub service token: generated on first start, or the external hub's."""
    if settings.hub_api_token is None:
        return _secret_file(settings.service_token_file)
    # An external hub's token reaches the services through the same file.
    token = settings.hub_api_token.get_secret_value()
    settings.service_token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.service_token_file.touch(mode=0o600)
    settings.service_token_file.write_text(token)
    return token


def ensure_kafka_passwords(settings: StackSettings) -> None:
    """One password per Kafka user of the stack (admin and each service), made once."""
    for user in kafka_access.USERS:
        _secret_file(settings.kafka_password_file(user))


DEMO_PROFILES = [
    {"name": "python", "display_name": "Python 3", "kernel": "python3"},
    {"name": "data", "display_name": "Python 3 with tabulate", "kernel": kernels.DATA_KERNEL},
]
"""The demo tenants' profiles: the default kernel, and the second environment that
infra/install.sh makes (infra/kernels.py). The first is the default."""


def write_tenants(settings: StackSettings) -> Path:
    """The gateway's tenants file; API keys are generated once and stored only as hashes."""
    path = settings.state_dir / "tenants.json"
    tenants = [
        {
            "id": tenant_id,
            "name": f"Demo host app {tenant_id}",
            "api_key_sha256": hashlib.sha256(
                _secret_file(api_key_file(settings, tenant_id)).encode()
            ).hexdigest(),
            "allowed_origins": settings.allowed_origins,
            "restricted": tenant_id in settings.restricted_tenants,
            "profiles": DEMO_PROFILES,
        }
        for tenant_id in settings.tenants
    ]
    path.touch(mode=0o600)  # API key hashes and origins: the stack's own reading
    path.write_text(json.dumps(tenants, indent=2) + "\n")
    return path


def _store_programs(settings: StackSettings) -> list[Program]:
    """PostgreSQL (socket only) and FerretDB on top of it; see infra/store.py."""
    postgres.init_once(settings)
    ferretdb = [
        str(settings.cache_dir / "bin" / "ferretdb"),
        f"--listen-addr=127.0.0.1:{settings.mongodb_port}",
        "--handler=postgresql",
        f"--postgresql-url={store.ferretdb_postgresql_url(settings)}",
    ]
    return [
        # INT is PostgreSQL's fast shutdown; TERM would wait for FerretDB's pools.
        Program("postgresql", postgres.server_command(settings), priority=5, stop_signal="INT"),
        Program("ferretdb", ferretdb, priority=10),
    ]


def _store_env(prefix: str, settings: StackSettings, account: str) -> dict[str, str]:
    """One process's store settings: URI, database, user, password file (never the password)."""
    credential = store.credential(settings, account)
    database = store.DATABASES[account]
    env = {prefix + "MONGODB_URI": credential.uri, prefix + "MONGODB_DATABASE": database}
    if credential.username is not None and credential.password_file is not None:
        env[prefix + "MONGODB_USERNAME"] = credential.username
        env[prefix + "MONGODB_PASSWORD_FILE"] = str(credential.password_file)
    return env


def replica_name(service: str, replica: int) -> str:
    """The supervisord program of a service's replica: ``sync``, ``sync-2``, ``sync-3``…

    The first replica keeps the service's name, so one replica is named as before.
    """
    return service if replica == 1 else f"{service}-{replica}"


def service_programs(settings: StackSettings, service: str) -> list[str]:
    """The program names of every replica of ``service``."""
    return [replica_name(service, r) for r in range(1, settings.replicas + 1)]


def all_service_programs(settings: StackSettings) -> list[str]:
    """Every replica of every service."""
    return [name for service in SERVICES for name in service_programs(settings, service)]


def running_replicas(settings: StackSettings) -> int | None:
    """How many replicas of each service the running stack has (None: no stack runs).

    Read from supervisord's rendered configuration, so commands and tests that
    were not told ``NBEMBED_STACK_REPLICAS`` still see every replica.
    """
    if supervisor.pid(settings) is None:
        return None
    parser = configparser.RawConfigParser()
    parser.read(supervisor.config_path(settings))
    return sum(
        1
        for section in parser.sections()
        if section == "program:gateway" or re.fullmatch(r"program:gateway-\d+", section)
    )


def adopt_running_replicas(settings: StackSettings) -> StackSettings:
    """``settings`` with the running stack's replica count, unless it was given."""
    running = running_replicas(settings)
    if "replicas" in settings.model_fields_set or not running:
        return settings
    return settings.model_copy(update={"replicas": running})


def _service_env(
    settings: StackSettings, service: str, common: dict[str, str], tenants_file: Path
) -> dict[str, str]:
    """One service's environment, the same for each of its replicas."""
    ports = {
        "gateway": ("PORT", settings.gateway_port),
        "provisioner": ("HEALTH_PORT", settings.provisioner_health_port),
        "sync": ("HEALTH_PORT", settings.sync_health_port),
    }
    prefix = f"NBEMBED_{service.upper()}_"
    env = {prefix + key: value for key, value in common.items()}
    # Each service logs in to Kafka and to the store as itself.
    env[prefix + "KAFKA_USERNAME"] = kafka_access.principal(service)
    env[prefix + "KAFKA_PASSWORD_FILE"] = str(settings.kafka_password_file(service))
    env |= _store_env(prefix, settings, service)
    port_key, port = ports[service]
    env[prefix + port_key] = str(port)
    if service == "gateway":
        env[prefix + "TENANTS_FILE"] = str(tenants_file)
        env[prefix + "SYNC_URL"] = f"http://127.0.0.1:{settings.sync_health_port}"
        env[prefix + "TICKET_KEY_FILE"] = str(settings.ticket_key_file)
        env[prefix + "HUB_LOGIN_TOKEN_FILE"] = str(settings.hub_login_token_file)
        env[prefix + "ADMIN_TOKEN_FILE"] = str(settings.admin_token_file)
        env[prefix + "METRICS_TOKEN_FILE"] = str(settings.metrics_token_file)
    if service == "provisioner":
        # The only service with the hub service token; sync asks it for
        # per-user server tokens with their shared secret.
        env[prefix + "HUB_API_TOKEN_FILE"] = str(settings.service_token_file)
        env[prefix + "SYNC_TOKEN_FILE"] = str(sync_provisioner_token_file(settings))
        # The hub's notices of stopped servers carry their own secret.
        env[prefix + "HUB_NOTICE_TOKEN_FILE"] = str(settings.hub_provisioner_token_file)
    if service in ("gateway", "sync"):
        # Both hand browsers URLs of the hub (iframe URLs, notebook pages, origins).
        env[prefix + "PUBLIC_HUB_URL"] = settings.browser_hub_url
        env[prefix + "SUBDOMAIN_HOST"] = settings.subdomain_host or ""
    if service == "sync":
        env[prefix + "PROVISIONER_URL"] = f"http://127.0.0.1:{settings.provisioner_health_port}"
        env[prefix + "PROVISIONER_TOKEN_FILE"] = str(sync_provisioner_token_file(settings))
    return env


def replica_programs(settings: StackSettings, tenants_file: Path) -> list[Program]:
    """Every replica of each service: same environment, the shared port, a port of its own."""
    python = str(settings.venv_bin / "python")
    common = {
        "INTERNAL_TOKEN_FILE": str(settings.secrets_dir / "internal-token"),
        "KAFKA_BOOTSTRAP": settings.kafka_bootstrap_servers,
        "HUB_URL": settings.public_hub_url,
        "TRACE_DIR": str(settings.traces_dir),
        "TRACE_SAMPLE_RATIO": str(settings.trace_sample_ratio),
        "OTLP_ENDPOINT": settings.otlp_endpoint or "",
    }
    result = []
    for index, service in enumerate(SERVICES):
        env = _service_env(settings, service, common, tenants_file)
        prefix = f"NBEMBED_{service.upper()}_"
        # One partition per consumer: concurrent subscribers then fetch with a long
        # wait and no event waits for a fetch of other partitions (see the setting).
        env[prefix + "CONCURRENCY"] = str(-(-settings.kafka_partitions // settings.replicas))
        for replica in range(1, settings.replicas + 1):
            own = {
                prefix + "REUSE_PORT": str(settings.replicas > 1),
                prefix + "REPLICA_PORT": str(settings.replica_port(index, replica)),
            }
            result.append(
                Program(
                    replica_name(service, replica),
                    [python, "-m", f"services.{service}"],
                    env=env | own,
                    autostart=False,
                )
            )
    return result


def programs(settings: StackSettings, tenants_file: Path) -> list[Program]:
    """Every process of the stack, infrastructure first (services start after checks)."""
    python = str(settings.venv_bin / "python")
    result: list[Program] = []
    if settings.local_kafka:
        properties = kafka.write_config(settings)
        kafka.prepare_storage(settings, properties)
        result.append(Program("kafka", kafka.server_command(settings, properties), priority=10))
    if settings.local_mongodb:
        result += _store_programs(settings)
    if settings.local_hub:
        node_bin = REPO_ROOT / "infra" / "hub" / "node_modules" / ".bin"
        result.append(
            Program(
                "jupyterhub",
                [
                    str(settings.venv_bin / "jupyterhub"),
                    "-f",
                    str(REPO_ROOT / "infra" / "hub" / "jupyterhub_config.py"),
                ],
                env={
                    "NBEMBED_HUB_STATE_DIR": str(settings.state_dir),
                    "NBEMBED_HUB_BIND_URL": settings.public_hub_url,
                    "NBEMBED_HUB_HUB_BIND_URL": f"http://127.0.0.1:{settings.hub_api_port}",
                    "NBEMBED_HUB_PROXY_API_URL": f"http://127.0.0.1:{settings.proxy_api_port}",
                    "NBEMBED_HUB_PROXY_COMMAND": str(node_bin / "configurable-http-proxy"),
                    "NBEMBED_HUB_SINGLEUSER_PYTHON": str(singleuser.runtime_python(settings)),
                    "NBEMBED_HUB_PYTHON": python,
                    "NBEMBED_HUB_SERVICE_TOKEN_FILE": str(settings.service_token_file),
                    "NBEMBED_HUB_ALLOWED_ORIGINS": ",".join(settings.allowed_origins),
                    "NBEMBED_HUB_SPAWNER_CLASS": settings.spawner_class,
                    "NBEMBED_HUB_CULL_IDLE_SECONDS": str(settings.cull_idle_seconds),
                    "NBEMBED_HUB_CONCURRENT_SPAWN_LIMIT": str(settings.concurrent_spawn_limit),
                    "NBEMBED_HUB_SPAWN_RETRY_AFTER": json.dumps(settings.spawn_retry_after),
                    "NBEMBED_HUB_GATEWAY_URL": f"http://127.0.0.1:{settings.gateway_port}",
                    "NBEMBED_HUB_LOGIN_TOKEN_FILE": str(settings.hub_login_token_file),
                    "NBEMBED_HUB_PROVISIONER_URL": (
                        f"http://127.0.0.1:{settings.provisioner_health_port}"
                    ),
                    "NBEMBED_HUB_PROVISIONER_TOKEN_FILE": str(settings.hub_provisioner_token_file),
                    "NBEMBED_HUB_KERNEL_RUNTIME_ROOT": str(settings.kernel_runtime_root),
                    "NBEMBED_HUB_ALLOW_TOP_LEVEL_LOGIN": str(settings.allow_top_level_login),
                    "NBEMBED_HUB_SUBDOMAIN_HOST": settings.subdomain_host or "",
                    "NBEMBED_HUB_KERNELS_PATH": str(kernels.jupyter_dir(settings)),
                    # The single-user servers find jupyterhub-singleuser's siblings here.
                    "PATH": f"{settings.venv_bin}:/usr/local/bin:/usr/bin:/bin",
                },
                priority=20,
                stop_wait_seconds=60,
            )
        )
    result += replica_programs(settings, tenants_file)
    demo_env = {
        "NBEMBED_DEMO_PORT": str(settings.demo_port),
        "NBEMBED_DEMO_GATEWAY_URL": f"http://127.0.0.1:{settings.gateway_port}",
        "NBEMBED_DEMO_PUBLIC_GATEWAY_URL": f"http://127.0.0.1:{settings.gateway_port}",
        "NBEMBED_DEMO_API_KEY_FILE": str(api_key_file(settings, settings.tenants[0])),
    }
    result.append(Program(DEMO, [python, "-m", "demo"], env=demo_env, autostart=False))
    return result


def _infra_checks(settings: StackSettings, token: str) -> dict[str, readiness.Check]:
    return {
        "kafka": lambda: readiness.kafka_answers(kafka.client_options(settings)),
        "mongodb": lambda: readiness.mongodb_answers(
            lambda **kwargs: store.admin_client(settings, **kwargs)
        ),
        "jupyterhub": lambda: readiness.hub_answers(settings.public_hub_url, token),
    }


def _postgres_check(settings: StackSettings) -> readiness.Check:
    async def check() -> bool:
        return await asyncio.to_thread(postgres.answers, settings)

    return check


def _service_checks(settings: StackSettings) -> dict[str, readiness.Check]:
    """One check per replica, on the replica's own port (the shared one hides which answers)."""
    checks: dict[str, readiness.Check] = {}
    for index, service in enumerate(SERVICES):
        for replica in range(1, settings.replicas + 1):
            url = f"http://127.0.0.1:{settings.replica_port(index, replica)}/readyz"
            checks[replica_name(service, replica)] = functools.partial(readiness.http_ready, url)
    checks[DEMO] = functools.partial(
        readiness.http_ready, f"http://127.0.0.1:{settings.demo_port}/"
    )
    return checks


async def _wait_all(checks: dict[str, readiness.Check], timeout: float) -> dict[str, float]:
    names = list(checks)
    seconds = await asyncio.gather(
        *(readiness.wait_until(name, checks[name], timeout) for name in names)
    )
    return dict(zip(names, seconds, strict=True))


PRIVATE_FOLDERS = ("secrets", "logs", "hub", "kafka", "ferretdb")
"""Folders of ``.run`` holding other components' data, logs or config: owner only."""
TRAVERSE_ONLY = 0o711
"""``.run`` and ``.run/homes``: each account reaches its own home but lists nothing."""


def lock_state_folder(settings: StackSettings) -> None:
    """Close the state folder to the hub users' accounts (new and existing folders).

    Single-user servers run as unprivileged accounts (``local-users`` spawner)
    whose homes are ``.run/homes/<user>``: they may traverse ``.run`` and
    ``.run/homes`` but read nothing else in them. Every file directly in ``.run``
    (supervisord's config and socket, the tenants file, pid files) is owner-only.
    """
    state = settings.state_dir
    for folder in (state, state / "homes"):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(TRAVERSE_ONLY)
    for name in PRIVATE_FOLDERS:
        (state / name).mkdir(exist_ok=True)
        (state / name).chmod(0o700)
    for path in state.iterdir():
        if not path.is_symlink() and not path.is_dir():
            path.chmod(0o600)
    for path in settings.secrets_dir.iterdir():
        if not path.is_symlink():
            path.chmod(0o600)


def check_homes_reachable(settings: StackSettings) -> None:
    """Fail early unless every folder above the homes lets other accounts through.

    With the ``local-users`` spawner each server runs as its own account and must
    reach ``<state>/homes/<user>``; a state folder under, e.g., ``/root`` or
    pytest's ``/tmp/pytest-of-root`` (both 0700) would fail every spawn with a
    bare PermissionError in the hub's log. The stack does not open them itself.
    """
    if settings.spawner_class != "local-users":
        return
    for folder in settings.state_dir.resolve().parents:
        if not folder.stat().st_mode & stat.S_IXOTH:
            raise RuntimeError(
                f"{folder} is closed to other accounts (mode "
                f"{oct(stat.S_IMODE(folder.stat().st_mode))}): the single-user servers of "
                f"the local-users spawner cannot reach {settings.state_dir}/homes. Put "
                "NBEMBED_STACK_STATE_DIR somewhere every account may traverse."
            )


def up(settings: StackSettings, timeout: float = 180) -> dict[str, float]:
    """Start whatever is not running and wait until all of it answers (idempotent).

    Returns, per component, the seconds until it answered.
    """
    for folder in (settings.state_dir, settings.logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    hub_token = ensure_hub_token(settings)
    _secret_file(settings.secrets_dir / "internal-token")  # gateway ↔ sync
    _secret_file(sync_provisioner_token_file(settings))  # sync ↔ provisioner
    _secret_file(settings.ticket_key_file)  # signs login tickets: the gateway alone
    _secret_file(settings.hub_login_token_file)  # hub → gateway: ticket redemption
    _secret_file(settings.admin_token_file)  # the operator → the gateway's admin API
    _secret_file(settings.metrics_token_file)  # Prometheus → the gateway's /metrics
    _secret_file(settings.hub_provisioner_token_file)  # hub → provisioner: servers stopped
    _secret_file(settings.hub_culler_token_file)  # the idle culler's hub service token
    _secret_file(settings.hub_ops_token_file)  # operators: stop servers through the hub API
    ensure_kafka_passwords(settings)
    tenants_file = write_tenants(settings)
    if settings.local_mongodb:
        for account in store.ACCOUNTS:
            _secret_file(store.password_file(settings, account))
    lock_state_folder(settings)
    if settings.local_hub:
        check_homes_reachable(settings)
        singleuser.ensure_runtime(settings)
    # Before any server starts: its account reaches only the hub API and the gateway.
    if egress.wanted(settings):
        for table in egress.clear_others(settings):
            print(f"  removed {table}, the egress filter of a stack that no longer runs")
        egress.apply(settings)
    else:
        egress.remove(egress.table_of(settings))  # left behind by another configuration
    if supervisor.pid(settings) is None:
        supervisor.write_config(settings, programs(settings, tenants_file))
        supervisor.start_daemon(settings)
    timings: dict[str, float] = {}
    if settings.local_mongodb:
        timings |= asyncio.run(_wait_all({"postgresql": _postgres_check(settings)}, timeout))
        store.bootstrap_roles(settings)
    timings |= asyncio.run(_wait_all(_infra_checks(settings, hub_token), timeout))
    if settings.local_mongodb:
        store.bootstrap_databases(settings)
    admin = kafka.client_options(settings)
    asyncio.run(readiness.create_topics(admin, settings.kafka_partitions))
    # A user added after the log was formatted, or a password file since deleted.
    if settings.local_kafka and (missing := asyncio.run(kafka.users_failing_login(settings))):
        kafka.add_users(settings, missing)
    asyncio.run(kafka_access.ensure_acls(admin))
    supervisor.start_programs(settings, (*all_service_programs(settings), DEMO))
    timings |= asyncio.run(_wait_all(_service_checks(settings), timeout))
    return timings


def restart_services(settings: StackSettings, timeout: float = 60) -> dict[str, float]:
    """Restart every replica of the services (after a code change) and wait until ready."""
    supervisor.ctl(settings, "restart", *all_service_programs(settings), DEMO)
    return asyncio.run(_wait_all(_service_checks(settings), timeout))


async def check_all(settings: StackSettings) -> dict[str, bool]:
    """Whether each component answers now."""
    names = ("kafka", "mongodb", "jupyterhub", *all_service_programs(settings), DEMO)
    if not (
        settings.service_token_file.exists()
        and settings.kafka_password_file(kafka_access.ADMIN).exists()
    ):
        return dict.fromkeys(names, False)
    token = settings.service_token_file.read_text().strip()
    checks = _infra_checks(settings, token) | _service_checks(settings)
    results = await asyncio.gather(*(check() for check in checks.values()))
    return dict(zip(checks, results, strict=True))


def status(settings: StackSettings) -> dict[str, bool]:
    """`check_all` for callers outside an event loop."""
    return asyncio.run(check_all(settings))


def stack_ports(settings: StackSettings) -> list[int]:
    """Every TCP port the local stack listens on."""
    ports = [
        settings.gateway_port,
        settings.provisioner_health_port,
        settings.sync_health_port,
        settings.demo_port,
        *(
            settings.replica_port(index, replica)
            for index in range(len(SERVICES))
            for replica in range(1, settings.replicas + 1)
        ),
    ]
    if settings.local_kafka:
        ports += [settings.kafka_port, settings.kafka_controller_port]
    if settings.local_mongodb:
        ports.append(settings.mongodb_port)
    if settings.local_hub:
        ports += [settings.hub_port, settings.hub_api_port, settings.proxy_api_port]
    return ports


def port_in_use(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def leftover_processes(settings: StackSettings) -> list[psutil.Process]:
    """Processes this stack started that still run.

    Recognised by the state folder: in their command line (Kafka, FerretDB), as
    their working directory (single-user servers) or in an ``NBEMBED_*``
    variable the stack gave them (hub, proxy, services). The caller and its
    ancestors are never counted, whatever their environment.
    """
    marker = str(settings.state_dir)
    me = psutil.Process()
    exclude = {me.pid, *(parent.pid for parent in me.parents())}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "environ"]):
        if proc.info["pid"] in exclude:
            continue
        cmdline = " ".join(proc.info["cmdline"] or [])
        cwd = proc.info["cwd"] or ""
        env = proc.info["environ"] or {}
        stack_env = any(
            marker in value
            for key, value in env.items()
            if key.startswith("NBEMBED_") and not key.startswith("NBEMBED_STACK_")
        )
        if marker in cmdline or cwd.startswith(marker) or stack_env:
            found.append(proc)
    return found


def down(settings: StackSettings, timeout: float = 120) -> list[str]:
    """Stop every program, then supervisord; return problems left (empty: clean)."""
    pid = supervisor.pid(settings)
    if pid is not None:
        # Services first (they drain their consumers), then the hub (it stops the
        # single-user servers), then Kafka and FerretDB.
        supervisor.ctl(settings, "stop", DEMO, *all_service_programs(settings), check=False)
        supervisor.ctl(settings, "stop", "jupyterhub", check=False)
        supervisor.ctl(settings, "shutdown", check=False)
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).wait(timeout)
    problems = []
    for proc in leftover_processes(settings):
        # Ours (started under our state folder) but orphaned: end it by its pid.
        problems.append(f"process {proc.pid} left running: {' '.join(proc.cmdline())[:120]}")
        proc.terminate()
    _gone, alive = psutil.wait_procs(leftover_processes(settings), timeout=10)
    for proc in alive:
        proc.kill()
    deadline = time.monotonic() + 10
    busy = [p for p in stack_ports(settings) if port_in_use(p)]
    while busy and time.monotonic() < deadline:
        time.sleep(0.2)
        busy = [p for p in busy if port_in_use(p)]
    problems += [f"port {p} still bound" for p in busy]
    # Last, once no server runs: the filter applies to the accounts, not to processes.
    try:
        egress.remove(egress.table_of(settings))
    except egress.EgressError as error:
        problems.append(str(error))
    return problems
