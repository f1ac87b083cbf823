"""Sync's client for the single-user servers' REST API (through the hub's proxy).

Files through the contents API, and the notebook's kernel through the sessions API.

Every request carries a token of the user whose server it goes to (from
`ServerTokens`), never a service credential: a server runs its user's code and
may record what reaches it. Requests go only to the hub's own path for a user
(``/user/<name>/``); reads of saved notebooks are bounded in size and time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

import httpx

from schemas.naming import user_origin
from services.sync.server_tokens import ServerTokenError, ServerTokens

SERVER_PATH = re.compile(r"^/user/([a-z0-9-]{1,64})/$")
"""The only server paths sync calls: the hub's path of one user's default server."""
ENVELOPE_BYTES = 64 * 1024
"""Room for the contents model's own fields around a file's base64 content."""


class ContentsError(Exception):
    """The server refused or failed a contents request (``status`` 0: unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class KernelSession(NamedTuple):
    """A Jupyter server session: the notebook's kernel as the server records it."""

    session_id: str
    kernel_id: str
    kernel_name: str


class TooLarge(ContentsError):
    """The file is over the limit; ``size`` in bytes when the server said it."""

    def __init__(self, message: str, size: int | None) -> None:
        super().__init__(message, 413)
        self.size = size


def hub_user_of(server_path: str) -> str:
    """The hub user whose server ``server_path`` is; ContentsError for any other path."""
    match = SERVER_PATH.match(server_path)
    if match is None:
        raise ContentsError(f"not a user's server path: {server_path[:100]!r}", 400)
    return match.group(1)


def base64_cap(max_bytes: int) -> int:
    """The largest contents-API answer a file of ``max_bytes`` can give in base64.

    Jupyter encodes with `base64.encodebytes`: a newline after every 76
    characters, which JSON escapes as two.
    """
    encoded = 4 * math.ceil(max_bytes / 3)
    return encoded + 2 * math.ceil(encoded / 76) + ENVELOPE_BYTES


class ContentsClient:
    """Files on users' servers, each reached with a token of its own user."""

    def __init__(
        self,
        hub_url: str,
        tokens: ServerTokens,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        subdomain_host: str | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=hub_url.rstrip("/"),
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
        )
        self._tokens = tokens
        self._subdomain_host = subdomain_host

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    def _url(self, server_path: str, path: str) -> tuple[str, str]:
        hub_user = hub_user_of(server_path)
        return hub_user, f"/user/{hub_user}/api/contents/{quote(path)}"

    def _headers(self, hub_user: str, token: str) -> dict[str, str]:
        """The user's token and, with per-user origins, the user's host.

        With JupyterHub's ``subdomain_host`` the proxy routes ``/user/<name>/``
        only for the host ``<name>.<hub host>``; sync still connects to the
        proxy's own address (``hub_url``) and names the host, so no name needs
        to resolve for sync.
        """
        headers = {"Authorization": f"token {token}"}
        if self._subdomain_host:
            headers["Host"] = urlsplit(user_origin(hub_user, self._subdomain_host)).netloc
        return headers

    async def _token(self, hub_user: str) -> str:
        try:
            return await self._tokens.token_for(hub_user)
        except ServerTokenError as exc:
            raise ContentsError(
                f"no credential for {hub_user}'s server: {exc}", exc.status
            ) from exc

    async def _request(
        self, method: str, server_path: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        """One contents-API request with the user's token (see `_call`)."""
        hub_user, url = self._url(server_path, path)
        return await self._call(method, hub_user, url, **kwargs)

    async def _call(self, method: str, hub_user: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request with the user's token; once more with a fresh token on 401/403."""
        for attempt in (1, 2):
            token = await self._token(hub_user)
            try:
                response = await self._http.request(
                    method, url, headers=self._headers(hub_user, token), **kwargs
                )
            except httpx.TransportError as exc:
                raise ContentsError(f"server unreachable: {type(exc).__name__}: {exc}") from exc
            if response.status_code not in (401, 403) or attempt == 2:
                return response
            self._tokens.forget(hub_user, token)
        raise AssertionError("unreachable")

    async def ensure_directory(self, server_path: str, path: str) -> None:
        """Create folder ``path`` (idempotent: 201 on create, 200 if it exists)."""
        response = await self._request("PUT", server_path, path, json={"type": "directory"})
        if response.status_code not in (200, 201):
            raise ContentsError(
                f"creating {path}: {response.status_code} {response.text[:500]}",
                response.status_code,
            )

    async def list_folder(self, server_path: str, path: str) -> set[str]:
        """The names in folder ``path``, creating the folder if it does not exist."""
        response = await self._request("GET", server_path, path, params={"content": "1"})
        if response.status_code == 404:
            await self.ensure_directory(server_path, path)
            return set()
        if response.status_code != 200:
            raise ContentsError(f"listing {path}: {response.status_code}", response.status_code)
        return {item["name"] for item in response.json()["content"]}

    async def exists(self, server_path: str, path: str) -> bool:
        """Whether a file or folder exists at ``path``."""
        response = await self._request("GET", server_path, path, params={"content": "0"})
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise ContentsError(f"reading {path}: {response.status_code}", response.status_code)
        return True

    async def put_notebook(self, server_path: str, path: str, notebook: dict[str, Any]) -> None:
        """Write ``notebook`` (a validated nbformat dict) at ``path``, replacing any file there."""
        response = await self._request(
            "PUT",
            server_path,
            path,
            json={"type": "notebook", "format": "json", "content": notebook},
        )
        if response.status_code not in (200, 201):
            raise ContentsError(
                f"writing {path}: {response.status_code} {response.text[:500]}",
                response.status_code,
            )

    async def start_kernel_session(
        self, server_path: str, path: str, kernel_name: str
    ) -> KernelSession:
        """Start the notebook's kernel on its server, as opening its page would (idempotent).

        Jupyter Server's ``POST /api/sessions`` answers an existing session for
        ``path`` instead of creating one, so a redelivery starts no second
        kernel; JupyterLab 4 and Notebook 7, opening ``path``, list the
        server's sessions and connect to the one for that path
        (``SessionContext._initialize`` in @jupyterlab/apputils) rather than
        start their own. The session is named like the page names it (the
        file's name). The answer is the user's server's, so it is read
        defensively: only the ids are kept.
        """
        hub_user = hub_user_of(server_path)
        body = {
            "path": path,
            "type": "notebook",
            "name": path.rsplit("/", 1)[-1],
            "kernel": {"name": kernel_name},
        }
        response = await self._call("POST", hub_user, f"/user/{hub_user}/api/sessions", json=body)
        if response.status_code not in (200, 201):
            raise ContentsError(
                f"starting the kernel of {path}: {response.status_code} {response.text[:200]}",
                response.status_code,
            )
        try:
            model = response.json()
            return KernelSession(
                str(model["id"]), str(model["kernel"]["id"]), str(model["kernel"]["name"])
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ContentsError(f"starting the kernel of {path}: unexpected answer", 502) from exc

    async def list_inputs(self, server_path: str) -> dict[str, str]:
        """The input files in place on the server: name → SHA-256 (nbembed's extension)."""
        hub_user = hub_user_of(server_path)
        response = await self._call("GET", hub_user, f"/user/{hub_user}/nbembed/inputs")
        if response.status_code != 200:
            raise ContentsError(f"listing inputs: {response.status_code}", response.status_code)
        return {item["name"]: item["sha256"] for item in response.json()["inputs"]}

    async def put_input(self, server_path: str, name: str, content: bytes) -> None:
        """Place one input file, read-only, in the server's ``inputs/``."""
        hub_user = hub_user_of(server_path)
        url = f"/user/{hub_user}/nbembed/inputs/{quote(name)}"
        response = await self._call("PUT", hub_user, url, content=content)
        if response.status_code != 204:
            raise ContentsError(
                f"placing input {name}: {response.status_code}", response.status_code
            )

    async def delete_input(self, server_path: str, name: str) -> None:
        """Remove one input file from the server's ``inputs/`` (idempotent)."""
        hub_user = hub_user_of(server_path)
        url = f"/user/{hub_user}/nbembed/inputs/{quote(name)}"
        response = await self._call("DELETE", hub_user, url)
        if response.status_code != 204:
            raise ContentsError(
                f"removing input {name}: {response.status_code}", response.status_code
            )

    async def read_file(
        self, server_path: str, path: str, *, max_bytes: int, timeout: float
    ) -> bytes:
        """The file at ``path`` as last saved, as bytes; `TooLarge` past ``max_bytes``.

        Bounded work whatever the server (the user's own code) does: the size
        the server reports is checked before any content is asked for, the
        content is read as a stream and abandoned past the cap (the file may
        have grown since), and the whole read ends within ``timeout`` seconds
        (ContentsError 504). Base64 makes the answer's size a fixed function of
        the file's, unlike JSON-escaped text.
        """
        try:
            async with asyncio.timeout(timeout):
                size = await self._size(server_path, path)
                if size is not None and size > max_bytes:
                    raise TooLarge(f"{path} is {size} bytes", size)
                body = await self._read_capped(server_path, path, base64_cap(max_bytes))
        except TimeoutError as exc:
            raise ContentsError(f"reading {path} took over {timeout:.0f}s", 504) from exc
        try:
            content = base64.b64decode(json.loads(body)["content"])  # skips the newlines
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ContentsError(f"reading {path}: unexpected answer ({exc})", 502) from exc
        if len(content) > max_bytes:
            raise TooLarge(f"{path} is {len(content)} bytes", len(content))
        return content

    async def _size(self, server_path: str, path: str) -> int | None:
        """The file's size as the server reports it, without its content."""
        response = await self._request("GET", server_path, path, params={"content": "0"})
        if response.status_code != 200:
            raise ContentsError(f"reading {path}: {response.status_code}", response.status_code)
        try:
            model = response.json()
        except ValueError as exc:
            raise ContentsError(f"reading {path}: unexpected answer", 502) from exc
        if not isinstance(model, dict) or model.get("type") not in ("notebook", "file"):
            raise ContentsError(f"{path} is not a file", 404)
        size = model.get("size")
        return size if isinstance(size, int) else None

    async def _read_capped(self, server_path: str, path: str, cap: int) -> bytes:
        """The raw answer to a base64 read of ``path``, abandoned past ``cap`` bytes."""
        hub_user, url = self._url(server_path, path)
        params = {"type": "file", "format": "base64", "content": "1"}
        for attempt in (1, 2):
            token = await self._token(hub_user)
            headers = self._headers(hub_user, token) | {"Accept-Encoding": "identity"}
            request = self._http.build_request("GET", url, params=params, headers=headers)
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise ContentsError(f"server unreachable: {type(exc).__name__}: {exc}") from exc
            try:
                if response.status_code in (401, 403) and attempt == 1:
                    self._tokens.forget(hub_user, token)
                    continue
                if response.status_code != 200:
                    raise ContentsError(
                        f"reading {path}: {response.status_code}", response.status_code
                    )
                return await _read_at_most(response, cap, path)
            finally:
                await response.aclose()
        raise AssertionError("unreachable")


async def _read_at_most(response: httpx.Response, cap: int, path: str) -> bytes:
    """The body of ``response``, or `TooLarge` as soon as it passes ``cap`` bytes."""
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise TooLarge(f"{path}: answer of {declared} bytes", None)
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in response.aiter_bytes():  # decoded: a compressed answer counts in full
            total += len(chunk)
            if total > cap:
                raise TooLarge(f"{path}: answer over {cap} bytes", None)
            chunks.append(chunk)
    except httpx.TransportError as exc:
        raise ContentsError(f"server unreachable: {type(exc).__name__}: {exc}") from exc
    return b"".join(chunks)
