"""JupyterHub configuration for nbembed's local stack.

Read by ``jupyterhub -f``; every value comes from `infra.settings.HubSettings`
(``NBEMBED_HUB_*``), which the stack sets. Nothing secret is written here: the
service token is read from a file only the stack user can read.
"""

# ruff: noqa: F821  (``c`` is injected by JupyterHub's config loader)
import os
import sys
from pathlib import Path

# ``jupyterhub -f`` runs this file as config, not as a module of the repository: put the
# repository it lives in first on the path, so the hub runs this checkout's code (its
# login handler, settings), not that of the checkout the environment was installed from.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.hub import hub_frames, server_mode, server_stops
from infra.settings import HubSettings
from schemas.naming import user_domain

hub = HubSettings()
state = hub.state_dir / "hub"
state.mkdir(parents=True, exist_ok=True)

c.JupyterHub.bind_url = hub.bind_url
c.JupyterHub.hub_bind_url = hub.hub_bind_url
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(hub.state_dir / "secrets" / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every single-user server
c.JupyterHub.cleanup_proxy = True

if hub.subdomain_host:
    # Per-user origins: each user's server on <hub user>.<hub host> (the proxy routes
    # by Host header), so one user's pages cannot script another's server. Login
    # cookies get the __Host- prefix: host-only, Secure, path /, so no subdomain
    # can set or overwrite them (cookie tossing). The hub keeps listening on
    # bind_url; services reach it there.
    c.JupyterHub.subdomain_host = hub.subdomain_host
    c.JupyterHub.subdomain_hook = user_domain  # the services compute the same hosts
    c.JupyterHub.cookie_host_prefix_enabled = True

# Idle connections kept 30 s, not node's 5 s: a client (httpx keeps them 5 s) then
# never reuses one the proxy is closing at that instant, which resets its request.
# Below node's 60 s headersTimeout, which must stay the longer of the two.
c.ConfigurableHTTPProxy.command = [hub.proxy_command, "--keep-alive-timeout", "30000"]
c.ConfigurableHTTPProxy.api_url = hub.proxy_api_url
c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")

# Users are created by the provisioner through the API; browsers log in only
# with single-use tickets the gateway signs and redeems (see ticket_login.py).
c.JupyterHub.authenticator_class = "infra.hub.ticket_login.TicketAuthenticator"
c.TicketAuthenticator.gateway_url = hub.gateway_url
c.TicketAuthenticator.redeem_token_file = str(
    hub.login_token_file or hub.state_dir / "secrets" / "hub-login-token"
)
c.TicketAuthenticator.allow_top_level = hub.allow_top_level_login
c.TicketAuthenticator.allow_all = True  # the ticket is the gate
c.JupyterHub.concurrent_spawn_limit = hub.concurrent_spawn_limit

# nbembed's services act through one hub service whose role holds only what they
# use: create users and servers, read them, reach servers' contents API.
c.JupyterHub.services = [
    {"name": "nbembed", "api_token": hub.service_token_file.read_text().strip()},
    {
        "name": "idle-culler",
        # A fixed token (the hub would make one per start): the stack's tests run a
        # culler of their own, with a short timeout, as this same service.
        "api_token": hub.secret(hub.culler_token_file, "hub-culler-token"),
        "command": [
            hub.python,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={hub.cull_idle_seconds}",
        ],
    },
    # Operators stop (or start) a user's server by hand through the hub API with this
    # token; there are no admin users (browsers log in only through tickets).
    {"name": "ops", "api_token": hub.secret(hub.ops_token_file, "hub-ops-token")},
]
c.JupyterHub.load_roles = [
    {
        "name": "nbembed",
        "description": "nbembed provisioner and sync",
        "scopes": [
            "admin:users",
            "admin:servers",
            "access:servers",
            "list:users",
            "read:users",
            "tokens",
        ],
        "services": ["nbembed"],
    },
    {
        # Replaces JupyterHub's default user role ("self": start and stop servers,
        # mint tokens with every scope of the user, read the user's model). A
        # browser needs to reach its own server (OAuth) and nothing else: nbembed's
        # provisioner starts and stops servers. users:activity lets the server's
        # own token (Spawner.server_token_scopes, the "server" role, only the
        # user's scopes survive) report activity that the idle culler reads. The
        # read:users:name/groups pair is what the OAuth flow to the user's server
        # asks for (JupyterHub's "identify" scopes); without it that flow fails.
        "name": "user",
        "description": "nbembed users: reach their own server; their server reports activity",
        "scopes": [
            "access:servers!user",
            "users:activity!user",
            "read:users:name!user",
            "read:users:groups!user",
        ],
    },
    {
        # read:metrics: Prometheus scrapes /hub/metrics with this token (the hub
        # answers 403 to anyone else: authenticate_prometheus stays on).
        "name": "ops",
        "description": "Operators: see users and servers, stop or start a server, read metrics",
        "scopes": ["list:users", "read:users", "admin:servers", "read:metrics"],
        "services": ["ops"],
    },
    {
        "name": "idle-culler",
        "description": "Stop servers idle longer than the configured timeout",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    },
]

# Hub pages: framed by the hub itself only, except the pages about one user, which
# that user's tenant's pages may frame too (hub_frames.py; JupyterHub's default is
# frame-ancestors 'none'). Servers narrow theirs the same way (nbembed_frames.py).
c.JupyterHub.tornado_settings = {
    "headers": {"Content-Security-Policy": hub_frames.HUB_DEFAULT},
    # Tornado's own list, which this replaces, is empty (no compress_response).
    "transforms": [hub_frames.TenantFrameAncestors],
    # Every cookie Secure when they carry the __Host- prefix (per-user origins). The
    # servers get this as JUPYTERHUB_COOKIE_OPTIONS: JupyterHub 6.1.1 marks their
    # OAuth state cookie (__Host-jupyterhub-user-<name>-oauth-state) Secure only
    # when the public URL is https, and browsers drop a __Host- cookie that is not,
    # so the local stack's http://*.localhost login would fail its OAuth callback.
    "cookie_options": {"secure": True} if hub.subdomain_host else {},
    # Retry-After range of the 429 beyond concurrent_spawn_limit. JupyterHub 6.1's
    # `spawn_throttle_retry_range` trait lacks config=True, so it is set here.
    "spawn_throttle_retry_range": tuple(hub.spawn_retry_after),
}

SPAWNERS = {
    "local-users": "infra.hub.local_users.LocalUserSpawner",
    "simple": "jupyterhub.spawner.SimpleLocalProcessSpawner",
}
c.JupyterHub.spawner_class = SPAWNERS.get(hub.spawner_class, hub.spawner_class)
# The servers' interpreter is one every account may run (infra/singleuser.py).
# jupyterhub.singleuser, started and stopped faster (singleuser_python/nbembed_singleuser.py).
c.Spawner.cmd = [hub.singleuser_python, "-m", "nbembed_singleuser"]
# singleuser_python/ holds that launcher, the save hook and a stand-in for a module
# that costs ~1 s of every server start (see their docstrings).
c.Spawner.environment = {
    "PYTHONPATH": str(Path(__file__).parent / "singleuser_python"),
    # A user's ~/.local site-packages (and usercustomize) never load into the server.
    "PYTHONNOUSERSITE": "1",
    "PATH": f"{Path(hub.singleuser_python).parent}:/usr/local/bin:/usr/bin:/bin",
    "NBEMBED_GATEWAY_URL": hub.gateway_url,
}
if hub.kernels_path:
    # The kernels profiles may name beyond python3 (infra/kernels.py): outside the
    # users' homes, so no kernel can add or change one.
    c.Spawner.environment["JUPYTER_PATH"] = hub.kernels_path
# Config files in the user's home (~/.jupyter, ~/.local/share/jupyter) are ignored:
# the kernel can write them, and the server would load them at its next start.
c.Spawner.disable_user_config = True
c.Spawner.args = [
    f"--ServerApp.tornado_settings={hub.singleuser_tornado_settings()}",
    # Every save the server makes is reported to nbembed and stored.
    "--ContentsManager.post_save_hook=nbembed_save_hook.report_save",
    # Input files a host attached, placed read-only by sync (nbembed_inputs.py).
    "--ServerApp.jpserver_extensions=nbembed_inputs=True",
    # Facts only the server sees (kernel starts; other parts call
    # nbembed_audit.report_audit) go to nbembed's audit trail.
    "--ServerApp.jpserver_extensions=nbembed_audit=True",
    # Only the pages of the user's tenant may frame the server, as an operator
    # sets them now (the gateway says which; nbembed_frames.py).
    "--ServerApp.jpserver_extensions=nbembed_frames=True",
]
# Every stop (culler, admin, crash, the hub's shutdown, nbembed's own) is told to the
# provisioner, which ends the sessions that lived on that server (server_stops.py).
# The token stays in this process: it is in no spawner's environment or arguments.
server_stops.install()
c.Spawner.post_stop_hook = server_stops.post_stop_hook(
    hub.provisioner_url, hub.secret(hub.provisioner_token_file, "hub-provisioner-token")
)
# A dead server's process is noticed within this many seconds (default 30).
c.Spawner.poll_interval = hub.server_poll_seconds
c.Spawner.http_timeout = 60
c.Spawner.start_timeout = 120
homes = str(hub.state_dir / "homes")
if hub.spawner_class == "local-users":
    # One OS account per hub user, home <state>/homes/<hub user> (0700).
    c.LocalUserSpawner.homes_dir = homes
    c.LocalUserSpawner.runtime_root = str(hub.kernel_runtime_root)
    # Kernels talk to their server over Unix sockets in the account's runtime folder
    # (0700), not over TCP on loopback: the egress filter refuses these accounts
    # every loopback port but the hub API's and the gateway's (infra/egress.py), and
    # no other account can reach another's kernel ports.
    c.Spawner.args.append("--KernelManager.transport=ipc")
elif hub.spawner_class == "simple":
    # Local processes as the stack's own account, one home folder per hub user.
    # Isolates nothing: every kernel can read the stack's secrets and other homes.
    c.SimpleLocalProcessSpawner.home_dir_template = homes + "/{username}"
    if os.geteuid() == 0:
        # CI machines run everything as root; Jupyter Server refuses that unless told.
        c.Spawner.args.append("--allow-root")

# Each spawn's mode (restricted-data or not) comes from the provisioner's
# user_options and becomes that spawn's arguments (infra/hub/server_mode.py).
c.Spawner.apply_user_options = server_mode.apply_user_options_hook(
    list(c.Spawner.args), dict(c.Spawner.environment)
)

if hub.fast_readiness_poll:
    # The hub notices a new server by polling it with exponential backoff (0.2 s
    # doubling, up to 5 s): up to 4 s after the server already answers. On a
    # local spawner a 20-100 ms poll costs nothing and halves a new user's wait.
    import jupyterhub.utils as hub_utils

    _exponential_backoff = hub_utils.exponential_backoff

    async def _quick_backoff(
        pass_func,
        fail_message,
        start_wait=0.2,
        scale_factor=2,
        max_wait=5,
        timeout=10,
        *args,
        **kwargs,
    ):
        return await _exponential_backoff(
            pass_func,
            fail_message,
            min(start_wait, 0.02),
            scale_factor,
            min(max_wait, 0.1),
            timeout,
            *args,
            **kwargs,
        )

    hub_utils.exponential_backoff = _quick_backoff
