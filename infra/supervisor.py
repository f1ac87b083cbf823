"""Render supervisord's configuration and talk to it through supervisorctl."""

from __future__ import annotations

import shlex
import subprocess
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from infra.settings import REPO_ROOT, StackSettings


@dataclass
class Program:
    """One process supervisord runs."""

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    autostart: bool = True
    priority: int = 100
    stop_wait_seconds: int = 30
    stop_signal: str = "TERM"


def config_path(settings: StackSettings) -> Path:
    return settings.state_dir / "supervisord.conf"


def _escape(value: str) -> str:
    # supervisord expands %(name)s in its config; a literal % must be doubled.
    return value.replace("%", "%%")


def _env_value(value: str) -> str:
    # supervisord splits environment= with non-POSIX shlex: quotes cannot be escaped.
    if '"' in value:
        raise ValueError(f"environment values cannot contain double quotes: {value!r}")
    return '"' + _escape(value) + '"'


def write_config(settings: StackSettings, programs: list[Program]) -> Path:
    """Write supervisord.conf (mode 0600: it holds the services' environment)."""
    state = settings.state_dir
    lines = [
        "[unix_http_server]",
        f"file={state / 'supervisor.sock'}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={settings.logs_dir / 'supervisord.log'}",
        f"pidfile={state / 'supervisord.pid'}",
        f"directory={REPO_ROOT}",
        "nodaemon=false",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{state / 'supervisor.sock'}",
        "",
    ]
    for program in programs:
        env = ",".join(f"{key}={_env_value(value)}" for key, value in program.env.items())
        lines += [
            f"[program:{program.name}]",
            f"command={_escape(shlex.join(program.command))}",
            f"autostart={'true' if program.autostart else 'false'}",
            "autorestart=true",
            "startsecs=2",
            "startretries=5",
            f"priority={program.priority}",
            f"stopwaitsecs={program.stop_wait_seconds}",
            f"stopsignal={program.stop_signal}",
            # The hub's proxy and the JVM's helpers live in the program's process group.
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={settings.logs_dir / (program.name + '.log')}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=2",
        ]
        if env:
            lines.append(f"environment={env}")
        lines.append("")
    path = config_path(settings)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def pid(settings: StackSettings) -> int | None:
    """supervisord's pid when it runs, else None."""
    return pid_in(settings.state_dir)


def pid_in(state_dir: Path) -> int | None:
    """The pid of the supervisord that runs the stack of ``state_dir``, else None."""
    pid_file = state_dir / "supervisord.pid"
    try:
        value = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        import psutil

        proc = psutil.Process(value)
        if proc.is_running() and "supervisord" in " ".join(proc.cmdline()):
            return value
    except Exception:  # noqa: S110 - a stale pid file means "not running"
        pass
    return None


def start_daemon(settings: StackSettings) -> None:
    """Start supervisord in the background with the rendered configuration."""
    subprocess.run(
        [str(settings.venv_bin / "supervisord"), "-c", str(config_path(settings))], check=True
    )


def start_programs(settings: StackSettings, names: tuple[str, ...]) -> None:
    """Start programs without waiting for supervisord's ``startsecs``.

    ``supervisorctl start a b c`` waits for each in turn; the stack has its own
    readiness checks, so it asks supervisord over its RPC socket not to wait.
    """
    transport = SupervisorTransport(None, None, f"unix://{settings.state_dir / 'supervisor.sock'}")
    rpc = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
    for name in names:
        try:
            rpc.supervisor.startProcess(name, False)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise


def ctl(settings: StackSettings, *args: str, check: bool = True) -> str:
    """Run ``supervisorctl <args>`` and return its output."""
    result = subprocess.run(
        [str(settings.venv_bin / "supervisorctl"), "-c", str(config_path(settings)), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    # supervisorctl exits 3 when some program is not RUNNING; status output is still useful.
    if check and result.returncode not in (0, 3):
        raise RuntimeError(f"supervisorctl {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result.stdout
