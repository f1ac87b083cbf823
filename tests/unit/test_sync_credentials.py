"""Sync's server credentials and bounded reads, against stand-ins for the provisioner and servers.

The stand-ins (httpx mock transports) are the only mocks in the suite; the real
flow is in tests/security/test_sync_credentials.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from schemas import ServerReady
from schemas.server_token import ServerToken
from services.sync import notebooks
from services.sync.contents import ContentsClient, ContentsError, TooLarge, base64_cap
from services.sync.server_tokens import ServerTokenError, ServerTokens
from services.sync.settings import SyncSettings

ALICE = "demo-alice"


class Provisioner:
    """Mints numbered tokens for whoever is asked, and counts the requests."""

    def __init__(self, expires_in: int = 900, delay: float = 0.0) -> None:
        self.expires_in = expires_in
        self.delay = delay
        self.minted: list[str] = []
        self.auth: list[str | None] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(self.delay)
        self.auth.append(request.headers.get("Authorization"))
        hub_user = request.url.path.split("/")[3]
        token = f"{hub_user}-token-{len(self.minted) + 1}"
        self.minted.append(token)
        body = ServerToken(
            hub_user=hub_user,
            token=token,
            expires_in=self.expires_in,
            expires_at=datetime.now(UTC) + timedelta(seconds=self.expires_in),
        )
        return httpx.Response(200, content=body.model_dump_json())


def tokens_from(provisioner: Any, **kwargs: Any) -> ServerTokens:
    return ServerTokens(
        "http://provisioner",
        "sync-secret",
        transport=httpx.MockTransport(provisioner),
        **kwargs,
    )


async def test_token_is_cached_per_user_and_shared_by_concurrent_callers() -> None:
    provisioner = Provisioner(delay=0.05)
    tokens = tokens_from(provisioner)
    first = await asyncio.gather(*(tokens.token_for(ALICE) for _ in range(10)))
    again = await tokens.token_for(ALICE)
    bob = await tokens.token_for("demo-bob")
    assert set(first) == {again} == {"demo-alice-token-1"}
    assert bob == "demo-bob-token-2"
    assert provisioner.auth == ["Bearer sync-secret"] * 2


async def test_token_is_replaced_before_it_expires() -> None:
    provisioner = Provisioner(expires_in=1)  # margin clamps to half the lifetime: 0.5 s
    tokens = tokens_from(provisioner, refresh_margin=60)
    assert await tokens.token_for(ALICE) == "demo-alice-token-1"
    assert await tokens.token_for(ALICE) == "demo-alice-token-1"
    await asyncio.sleep(0.6)
    assert await tokens.token_for(ALICE) == "demo-alice-token-2"


async def test_forget_drops_only_the_refused_token() -> None:
    tokens = tokens_from(Provisioner())
    old = await tokens.token_for(ALICE)
    tokens.forget(ALICE, old)
    new = await tokens.token_for(ALICE)
    assert new != old
    tokens.forget(ALICE, old)  # a late refusal of the old token keeps the new one
    assert await tokens.token_for(ALICE) == new


async def test_provisioner_refusals_and_foreign_tokens_are_errors() -> None:
    refused = tokens_from(lambda _: httpx.Response(401, json={"detail": "no"}))
    with pytest.raises(ServerTokenError) as caught:
        await refused.token_for(ALICE)
    assert caught.value.status == 401

    def someone_else(_: httpx.Request) -> httpx.Response:
        body = ServerToken(
            hub_user="demo-bob", token="t", expires_in=900, expires_at=datetime.now(UTC)
        )
        return httpx.Response(200, content=body.model_dump_json())

    with pytest.raises(ServerTokenError, match="token of demo-bob"):
        await tokens_from(someone_else).token_for(ALICE)


def test_sync_settings_hold_no_hub_credential() -> None:
    settings = SyncSettings(provisioner_token="p", internal_token="i")  # type: ignore[arg-type]
    assert not [name for name in SyncSettings.model_fields if "hub_api" in name]
    assert "hub_api_token" not in settings.model_dump()


class Server:
    """A user's server behind the hub's proxy: a file of ``size`` bytes at any path.

    ``grown`` makes the content longer than the size it reports (a file that
    grows between the two requests); ``drip`` sends it slowly.
    """

    def __init__(self, content: bytes, *, grown: int = 0, drip: float = 0.0) -> None:
        self.content = content
        self.grown = grown
        self.drip = drip
        self.requests: list[httpx.Request] = []
        self.chunks_sent = 0
        self.refuse_tokens: set[str] = set()

    async def _body(self) -> AsyncIterator[bytes]:
        # As Jupyter sends it: encodebytes (newlines), escaped in a JSON string.
        encoded = json.dumps(base64.encodebytes(self.content + b"x" * self.grown).decode())
        encoded_bytes = encoded[1:-1].encode()
        yield b'{"type": "file", "format": "base64", "content": "'
        for start in range(0, len(encoded_bytes), 65536):
            if self.drip:
                await asyncio.sleep(self.drip)
            self.chunks_sent += 1
            yield encoded_bytes[start : start + 65536]
        yield b'"}'

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        token = request.headers["Authorization"].removeprefix("token ")
        if token in self.refuse_tokens:
            return httpx.Response(403)
        if request.url.params.get("content") == "0":
            return httpx.Response(200, json={"type": "notebook", "size": len(self.content)})
        return httpx.Response(200, content=self._body())


def client_for(server: Server, provisioner: Provisioner | None = None) -> ContentsClient:
    tokens = tokens_from(provisioner or Provisioner())
    return ContentsClient("http://hub", tokens, transport=httpx.MockTransport(server))


async def test_a_file_at_the_limit_fits_under_the_cap() -> None:
    limit = 3 * 2**20
    content = await client_for(Server(b"\x00" * limit)).read_file(
        f"/user/{ALICE}/", "a.ipynb", max_bytes=limit, timeout=5
    )
    assert content == b"\x00" * limit


async def test_small_file_is_read_with_the_users_own_token() -> None:
    server = Server(b'{"nbformat": 4}')
    content = await client_for(server).read_file(
        f"/user/{ALICE}/", "work/a.ipynb", max_bytes=1000, timeout=5
    )
    assert content == b'{"nbformat": 4}'
    assert [r.url.path for r in server.requests] == [f"/user/{ALICE}/api/contents/work/a.ipynb"] * 2
    assert {r.headers["Authorization"] for r in server.requests} == {"token demo-alice-token-1"}


async def test_size_is_checked_before_any_content_is_asked_for() -> None:
    server = Server(b"x" * 5000)
    with pytest.raises(TooLarge) as caught:
        await client_for(server).read_file(f"/user/{ALICE}/", "a.ipynb", max_bytes=1000, timeout=5)
    assert caught.value.size == 5000
    assert [r.url.params.get("content") for r in server.requests] == ["0"]


async def test_a_file_that_grew_is_abandoned_past_the_cap() -> None:
    server = Server(b"x" * 1000, grown=50 * 2**20)  # reports 1000 bytes, sends 50 MiB
    with pytest.raises(TooLarge):
        await client_for(server).read_file(f"/user/{ALICE}/", "a.ipynb", max_bytes=1000, timeout=5)
    # The stream was dropped after the cap (1,400 B + the envelope), not read to its end.
    assert server.chunks_sent * 65536 <= base64_cap(1000) + 2 * 65536


async def test_a_slow_server_costs_at_most_the_read_timeout() -> None:
    server = Server(b"x" * 2**20, drip=0.2)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ContentsError) as caught:
        await client_for(server).read_file(f"/user/{ALICE}/", "a.ipynb", max_bytes=2**21, timeout=1)
    assert caught.value.status == 504
    assert asyncio.get_running_loop().time() - started < 2


async def test_a_refused_token_is_replaced_once() -> None:
    server = Server(b"{}")
    server.refuse_tokens = {"demo-alice-token-1"}
    provisioner = Provisioner()
    client = client_for(server, provisioner)
    assert await client.read_file(f"/user/{ALICE}/", "a.ipynb", max_bytes=10, timeout=5) == b"{}"
    assert provisioner.minted == ["demo-alice-token-1", "demo-alice-token-2"]
    server.refuse_tokens = {"demo-alice-token-2", "demo-alice-token-3"}
    with pytest.raises(ContentsError) as caught:  # refused twice: no third try
        await client.exists(f"/user/{ALICE}/", "a.ipynb")
    assert caught.value.status == 403
    assert provisioner.minted[-1] == "demo-alice-token-3"


@pytest.mark.parametrize(
    "server_path",
    [
        "/user/demo-bob/../demo-alice/",
        "http://127.0.0.1:9/",
        "//evil.example/",
        "/hub/api/",
        "/user/Demo-Alice/",
        "/user/demo-alice",
    ],
)
async def test_no_request_leaves_for_a_path_that_is_not_a_users_server(server_path: str) -> None:
    server = Server(b"{}")
    provisioner = Provisioner()
    with pytest.raises(ContentsError):
        await client_for(server, provisioner).exists(server_path, "a.ipynb")
    assert server.requests == []
    assert provisioner.minted == []


def test_deep_nesting_is_an_invalid_notebook_not_a_crash() -> None:
    for depth in (101, 5000, 200_000):
        raw = '{"nbformat": 4, "nbformat_minor": 5, "metadata": {"x": ' + "[" * depth
        raw += "]" * depth + '}, "cells": []}'
        with pytest.raises(notebooks.InvalidNotebook, match="nested"):
            notebooks.parse(raw.encode())


def test_parse_accepts_a_real_notebook_and_names_what_is_wrong() -> None:
    good = json.dumps(notebooks.new_notebook()).encode()
    assert notebooks.parse(good)["nbformat"] == 4
    with pytest.raises(notebooks.InvalidNotebook, match="not JSON"):
        notebooks.parse(b"\xff\xfe not json")


@pytest.mark.parametrize(
    "server_path",
    ["/user/demo-bob/", "http://127.0.0.1:9/", "/user/demo-alice/../demo-bob/", "/user/demo-alice"],
)
def test_server_ready_names_only_the_users_own_server(server_path: str) -> None:
    fields = {
        "session_id": "s1",
        "tenant_id": "demo",
        "hub_user": ALICE,
        "host_user_id": "alice",
    }
    assert ServerReady(**fields, server_path=f"/user/{ALICE}/").server_path == "/user/demo-alice/"
    with pytest.raises(ValidationError, match="server_path"):
        ServerReady(**fields, server_path=server_path)


async def test_with_per_user_origins_each_request_names_the_users_own_host() -> None:
    # The proxy routes /user/<name>/ only for <name>.<hub host>; sync still
    # connects to the proxy's address and says which host it means.
    server = Server(b'{"nbformat": 4}')
    client = ContentsClient(
        "http://127.0.0.1:8000",
        tokens_from(Provisioner()),
        transport=httpx.MockTransport(server),
        subdomain_host="https://jupyter.example.com",
    )
    await client.read_file(f"/user/{ALICE}/", "work/a.ipynb", max_bytes=1000, timeout=5)
    assert {r.url.host for r in server.requests} == {"127.0.0.1"}
    assert {r.headers["Host"] for r in server.requests} == {f"{ALICE}.jupyter.example.com"}
