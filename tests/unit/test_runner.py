"""The services' listening sockets (services/common/runner.py)."""

from __future__ import annotations

import asyncio
import socket

from services.common.runner import listening_socket


async def test_accepted_connections_send_at_once_without_nagle() -> None:
    # asyncio sets TCP_NODELAY only on sockets whose proto says TCP; without it
    # an answer written in two parts waits ~40 ms for the client's delayed ACK.
    sock = listening_socket("127.0.0.1", 0, reuse_port=True)
    nodelay: list[int] = []

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nodelay.append(
            writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        )
        writer.close()

    server = await asyncio.start_server(accepted, sock=sock)
    _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
    for _ in range(100):
        if nodelay:
            break
        await asyncio.sleep(0.01)
    writer.close()
    server.close()
    await server.wait_closed()
    assert nodelay == [1]
