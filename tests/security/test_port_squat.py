"""A port a kernel listens on is never taken for another user's server.

On the local stack the hub gives each server a loopback port and takes
whatever answers HTTP there for that server. A user's kernel may listen on
loopback too: had it bound the port chosen for another user's server in the
seconds before that server did, the hub would have routed the other user's
browser, cookies included, to the kernel. `LocalUserSpawner.start` now waits
until the server's own account listens on its port and refuses the server if
another account does (`wait_for_own_listener`).

The race itself (a kernel binding the port the hub has just chosen) cannot be
forced from outside the hub, so this runs the spawner's check against a real
kernel's listener: the attack it must catch is that listener.
"""

from __future__ import annotations

import pwd

import httpx
import pytest

from infra.hub.local_users import PortTaken, account_name, listener_uids, wait_for_own_listener
from infra.settings import StackSettings
from tests.security.kernel import Kernel, session_users

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("running_stack")]

LISTEN = """
import socket
squat = socket.socket()
squat.bind(("127.0.0.1", 0))
squat.listen()
print(squat.getsockname()[1])
"""


async def still_running() -> bool:
    return True


async def test_a_port_a_kernel_listens_on_is_refused_for_another_users_server(
    gateway: httpx.AsyncClient, hub: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    mallory, bob = await session_users(gateway, hub, "demo", ("mallory", "bob"), "squat")
    uid = {user: pwd.getpwnam(account_name(user.hub_user)).pw_uid for user in (mallory, bob)}
    async with Kernel(stack_settings.public_hub_url, mallory.hub_user, mallory.token) as kernel:
        result = await kernel.run(LISTEN)
        assert result.error is None, result
        port = int(result.stdout)
        assert listener_uids(port) == {uid[mallory]}

        # Had the hub chosen this port for bob's server, his start is refused,
        # not routed to mallory's kernel.
        with pytest.raises(PortTaken):
            await wait_for_own_listener(port, uid[bob], still_running)
        # The same listener passes for its own account's server.
        await wait_for_own_listener(port, uid[mallory], still_running)
