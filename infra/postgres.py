"""The local stack's PostgreSQL: FerretDB's backend, reachable only through a Unix socket.

Debian's PostgreSQL 15 runs from a cluster initialised under ``.run/postgresql``
(no system service, no TCP port). The server and the cluster belong to the
``postgres`` account when the stack runs as root (PostgreSQL refuses root),
otherwise to the stack's own account. The stack administers it as that
account through the socket (``peer``); every other role must give a password
(``scram-sha-256``), and only for the ``nbembed`` database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

from infra.settings import StackSettings

SUPERUSER = "postgres"
DATABASE = "nbembed"


def os_account() -> str:
    """The OS account that owns the cluster and runs the server."""
    return SUPERUSER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def _as_owner(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", SUPERUSER, "--", *command]
    return command


def data_dir(settings: StackSettings) -> Path:
    return settings.state_dir / "postgresql"


def socket_dir(settings: StackSettings) -> Path:
    """The socket's folder; FerretDB's URL names it as ``host``."""
    return settings.state_dir / "postgresql-socket"


def _own(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    if os.geteuid() == 0:
        shutil.chown(path, user=SUPERUSER, group=SUPERUSER)


def _check_reachable(folder: Path) -> None:
    # As root the cluster belongs to `postgres`, which must be able to pass
    # through every folder above the state folder (not so under a 0700 one).
    if os.geteuid() == 0:
        reachable = subprocess.run(
            _as_owner(["test", "-x", str(folder)]), capture_output=True, check=False
        )
        if reachable.returncode != 0:
            raise RuntimeError(
                f"the {SUPERUSER} account cannot reach {folder}: PostgreSQL's cluster lives "
                "there, so every folder above it must let others pass (mode o+x)"
            )


def init_once(settings: StackSettings) -> None:
    """Create the cluster on first start (``initdb``, about 2 s) and (re)write its access rules."""
    _check_reachable(settings.state_dir)
    data = data_dir(settings)
    _own(socket_dir(settings))
    if not (data / "PG_VERSION").exists():
        _own(data)
        subprocess.run(
            _as_owner(
                [
                    str(settings.postgres_bin_dir / "initdb"),
                    f"--pgdata={data}",
                    f"--username={SUPERUSER}",
                    "--auth=reject",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            check=True,
            capture_output=True,
        )
    # Written every start, so a changed rule set reaches existing clusters.
    hba = data / "pg_hba.conf"
    hba.write_text(
        "# Written by infra/postgres.py: the superuser only as its OS account,\n"
        "# every other role with a password and only into the nbembed database.\n"
        f"local all {SUPERUSER} peer map=stack\n"
        f"local {DATABASE} all scram-sha-256\n"
    )
    (data / "pg_ident.conf").write_text(f"stack {os_account()} {SUPERUSER}\n")
    if os.geteuid() == 0:
        for path in (hba, data / "pg_ident.conf"):
            shutil.chown(path, user=SUPERUSER, group=SUPERUSER)


def server_command(settings: StackSettings) -> list[str]:
    """The server in the foreground, for supervisord: no TCP listener, socket only."""
    return _as_owner(
        [
            str(settings.postgres_bin_dir / "postgres"),
            "-D",
            str(data_dir(settings)),
            "-c",
            "listen_addresses=",
            "-c",
            f"unix_socket_directories={socket_dir(settings)}",
            "-c",
            "unix_socket_permissions=0777",
            "-c",
            "password_encryption=scram-sha-256",
        ]
    )


def run_sql(settings: StackSettings, sql: str, database: str = DATABASE) -> str:
    """Run SQL as the superuser through the socket; the SQL goes through stdin, never argv."""
    result = subprocess.run(
        _as_owner(
            [
                str(settings.postgres_bin_dir / "psql"),
                f"--host={socket_dir(settings)}",
                f"--username={SUPERUSER}",
                f"--dbname={database}",
                "--no-psqlrc",
                "--quiet",
                "--tuples-only",
                "--no-align",
                "--set=ON_ERROR_STOP=1",
            ]
        ),
        input=sql,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        # psql echoes only the failing statement's error; passwords never reach
        # it in clear (see scram_verifier).
        raise RuntimeError(f"psql failed: {result.stderr.strip()[:500]}")
    return result.stdout.strip()


def answers(settings: StackSettings) -> bool:
    """The server accepts the superuser's connection."""
    try:
        return run_sql(settings, "SELECT 1", database="postgres") == "1"
    except (RuntimeError, subprocess.TimeoutExpired):
        return False


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier for a password (RFC 5802/7677).

    The stack sets role passwords as verifiers, so the clear password never
    reaches psql, PostgreSQL's statement log or an error message.
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def quote_literal(value: str) -> str:
    """A SQL string literal (standard_conforming_strings is on)."""
    return "'" + value.replace("'", "''") + "'"


def quote_ident(value: str) -> str:
    """A SQL identifier."""
    return '"' + value.replace('"', '""') + '"'
