"""Keep the single-user servers and their kernels off the network, except for two doors.

On the local stack every hub user's server and kernels run as that user's own
OS account, all in the group ``nbembed-users`` (infra/hub/local_users.py). A
server legitimately needs two things over the network: the hub API (its OAuth
code exchange, its activity reports) and the gateway (its save reports), both
with the user's own token. This module keeps every other connection from those
accounts' sockets from leaving: Kafka, the store, the proxy's API, the
provisioner's and sync's internal APIs, another user's server, any listener on
loopback, the outside world, over IPv4 and IPv6, TCP, UDP and everything else.

The mechanism is nftables' owner match (``meta skgid``) in a table of nbembed's
own (``inet nbembed_<hash of the state folder>``, one per stack), on the output
hook, generated here from the stack's ports, created at ``up`` and removed at
``down``. A network namespace per server was the other route; it would also need
a veth pair and routes (or a proxy) for the two doors and for the proxy to reach
each server, per spawn, and the spawner would have to enter the namespace before
``setuid``. The owner match is one table for all servers, made once per ``up``.

The table is replaced whole in one ``nft -f`` transaction (create, delete,
create), so ``up`` works whether a crashed stack left it behind or not. Its
comment names the stack's state folder: every stack's table filters the same
group, and a reject in any of them is final, so ``up`` removes the tables of
stacks that no longer run (a clone deleted without ``down``) and refuses to
start beside one that does.
"""

from __future__ import annotations

import grp
import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra import supervisor
from infra.settings import StackSettings

TABLE = "nbembed"
FAMILY = "inet"
"""IPv4 and IPv6 in one table."""
USER_CHAIN = "user_servers"
ADMIN_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"
USERS_GROUP = "nbembed-users"
"""The primary group of every hub user's account (infra/hub/local_users.py)."""


class EgressError(RuntimeError):
    """nftables is missing or refused the rules."""


@dataclass(frozen=True)
class Doors:
    """What a user's server may connect to: TCP ports on 127.0.0.1."""

    hub_api_port: int
    gateway_port: int

    @classmethod
    def of(cls, settings: StackSettings) -> Doors:
        return cls(hub_api_port=settings.hub_api_port, gateway_port=settings.gateway_port)


def ruleset(gid: int, doors: Doors, table: str = TABLE, owner: Path | None = None) -> str:
    """The nft script that (re)creates nbembed's table: pure, so the rules are testable.

    Sockets of group ``gid`` may open TCP connections only to the hub API and
    the gateway on 127.0.0.1, and may answer connections made to them over
    loopback (the proxy and the hub reaching a server; the first answer, a
    SYN-ACK, belongs to no full socket and passes anyway). Everything else
    they send is rejected at once (a TCP reset, or ICMP for other protocols),
    so a refused program fails fast instead of hanging. ``owner``, the stack's
    state folder, becomes the table's comment when nft can hold it.
    """
    ports = ", ".join(str(port) for port in sorted({doors.hub_api_port, doors.gateway_port}))
    return "\n".join(
        [
            f"table {FAMILY} {table}",
            f"delete table {FAMILY} {table}",
            f"table {FAMILY} {table} {{",
            *([f'    comment "{owner}"'] if _fits_a_comment(owner) else []),
            "    chain output {",
            "        type filter hook output priority filter; policy accept;",
            f"        meta skgid {gid} jump {USER_CHAIN}",
            "    }",
            f"    chain {USER_CHAIN} {{",
            '        oifname "lo" ct direction reply accept',
            f'        oifname "lo" ip daddr 127.0.0.1 tcp dport {{ {ports} }} accept',
            "        meta l4proto tcp reject with tcp reset",
            "        reject with icmpx admin-prohibited",
            "    }",
            "}",
            "",
        ]
    )


def _fits_a_comment(owner: Path | None) -> bool:
    # nft keeps at most 128 bytes of comment, and has no escape for a quote.
    return owner is not None and '"' not in str(owner) and len(str(owner).encode()) <= 128


def _nft() -> str:
    program = shutil.which("nft", path=ADMIN_PATH)
    if program is None:
        raise EgressError(
            "nft not found: install Debian's nftables (infra/install.sh does), or run "
            "without the filter (NBEMBED_STACK_EGRESS_FILTER=false: kernels then reach "
            "every listener on the machine)"
        )
    return program


def _run(args: list[str], script: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_nft(), *args], input=script, capture_output=True, text=True, check=False, timeout=30
    )


def ensure_group(group: str = USERS_GROUP) -> int:
    """The group's id, creating the group first if no server has started yet."""
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        groupadd = shutil.which("groupadd", path=ADMIN_PATH)
        if groupadd is None:
            raise EgressError("groupadd not found (Debian package passwd)") from None
        subprocess.run([groupadd, "--force", group], check=True, capture_output=True)
        return grp.getgrnam(group).gr_gid


def check(gid: int, doors: Doors) -> None:
    """Let nft parse and check the rules without applying them (``nft -c``)."""
    done = _run(["-c", "-f", "-"], ruleset(gid, doors))
    if done.returncode != 0:
        raise EgressError(f"nft refused the rules: {done.stderr.strip()}")


def load(gid: int, doors: Doors, table: str = TABLE, owner: Path | None = None) -> None:
    """Create or replace the table, atomically (idempotent)."""
    done = _run(["-f", "-"], ruleset(gid, doors, table, owner))
    if done.returncode != 0:
        raise EgressError(f"nft refused the rules: {done.stderr.strip()}")


def table_of(settings: StackSettings) -> str:
    """The stack's own table: one per state folder, so a second stack on the machine
    never replaces or deletes another's."""
    digest = hashlib.sha256(str(settings.state_dir.resolve()).encode()).hexdigest()[:10]
    return f"{TABLE}_{digest}"


def apply(settings: StackSettings) -> None:
    """Create or replace the stack's table for its users' group and ports."""
    load(ensure_group(), Doors.of(settings), table_of(settings), settings.state_dir.resolve())


def clear_others(settings: StackSettings, prefix: str = TABLE) -> list[str]:
    """Remove the tables (named ``prefix``…) that stacks no longer running left behind.

    Each filters the users' group: one left by a stack on other ports would refuse
    this stack's doors. Raises EgressError, removing nothing, when such a table's
    stack still runs; a table without an owner (older nbembed) counts as stale.
    """
    own = table_of(settings)
    others = [table for table in tables(prefix) if table != own]
    for table in others:
        owner = owner_of(table)
        if owner is not None and supervisor.pid_in(owner) is not None:
            raise EgressError(
                f"another nbembed stack runs user servers on this machine (state folder "
                f"{owner}); its filter would refuse this stack's doors: stop it first"
            )
    return [table for table in others if remove(table)]


def tables(prefix: str = TABLE) -> list[str]:
    """The loaded tables of the family whose names start with ``prefix``."""
    listed = _run(["list", "tables", FAMILY]).stdout.split()
    # "table inet NAME" per line.
    return [name for name in listed[2::3] if name.startswith(prefix)]


def owner_of(table: str) -> Path | None:
    """The state folder named in the table's comment, if it has one."""
    for line in _run(["list", "table", FAMILY, table]).stdout.splitlines():
        line = line.strip()
        if line.startswith('comment "') and line.endswith('"'):
            return Path(line[len('comment "') : -1])
    return None


def remove(table: str = TABLE) -> bool:
    """Delete the table if it exists; whether it existed."""
    if shutil.which("nft", path=ADMIN_PATH) is None:
        return False
    if not active(table):
        return False
    done = _run(["delete", "table", FAMILY, table])
    if done.returncode != 0:
        raise EgressError(f"nft could not delete table {FAMILY} {table}: {done.stderr.strip()}")
    return True


def active(table: str = TABLE) -> bool:
    """The table is loaded."""
    return _run(["list", "table", FAMILY, table]).returncode == 0


def wanted(settings: StackSettings) -> bool:
    """The stack filters its servers: it runs them itself, each as a user account."""
    return settings.egress_filter and settings.local_hub and settings.spawner_class == "local-users"
