"""Sync starts the session's kernel while it places the notebook (services/sync/handlers.py).

The page then connects to a running kernel. Starting it never fails a session:
an error or a server that does not answer leaves the kernel to the page, as
before. The real-stack counterpart is tests/stack/test_kernel_prestart.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from schemas import CloudEvent, ServerReady, SessionReady, hub_username
from schemas.profiles import Profile
from services.sync.contents import ContentsClient, ContentsError, KernelSession
from services.sync.handlers import SyncHandlers
from tests.unit.test_sync_credentials import Provisioner, tokens_from

HUB_USER = hub_username("demo", "u")
SERVER = f"/user/{HUB_USER}/"
PATH = "work/Q1.ipynb"
DATA = Profile(name="data", display_name="Data", kernel="nbembed-data")


class Server:
    """The user's server, as far as the kernel goes: what was asked and in what order."""

    def __init__(self, answer: str = "ok") -> None:
        self.answer = answer
        self.calls: list[tuple[str, str, str]] = []

    async def start_kernel_session(
        self, server_path: str, path: str, kernel_name: str
    ) -> KernelSession:
        self.calls.append((server_path, path, kernel_name))
        if self.answer == "hang":
            await asyncio.Event().wait()
        if self.answer == "refuse":
            raise ContentsError("starting the kernel: 501 nbembed-data not found", 501)
        return KernelSession("s-1", "k-1", kernel_name)


class PlacedStore:
    """A placement recorded by an earlier delivery: only the kernel and ready remain."""

    async def placement(self, session_id: str) -> dict[str, str]:
        return {"notebook_id": "n1", "path": PATH}


class NoInputs:
    async def place(self, server_path: str, tenant_id: str, inputs: list[Any]) -> None:
        return None


class Published:
    """Stands in for the broker; notes when ready went out relative to the kernel."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.events: list[tuple[str, bytes, int]] = []

    async def publish(self, value: bytes, *, topic: str, **_: Any) -> None:
        self.events.append((topic, value, len(self.server.calls)))


def handlers_for(server: Server, broker: Published, **options: Any) -> SyncHandlers:
    return SyncHandlers(
        server,  # type: ignore[arg-type]
        PlacedStore(),  # type: ignore[arg-type]
        broker,  # type: ignore[arg-type]
        NoInputs(),  # type: ignore[arg-type]
        public_hub_url="http://hub",
        work_folder="work",
        ui="notebook",
        max_notebook_bytes=1 << 20,
        **options,
    )


def server_ready(profile: Profile | None = DATA) -> CloudEvent[ServerReady]:
    ready = ServerReady(
        session_id="s1",
        tenant_id="demo",
        hub_user=HUB_USER,
        server_path=SERVER,
        host_user_id="u",
        profile=profile,
    )
    return CloudEvent.wrap(ready, source="/test")


def prestarts(outcome: str) -> float:
    return REGISTRY.get_sample_value("nbembed_kernel_prestarts_total", {"outcome": outcome}) or 0


async def test_the_profiles_kernel_is_started_for_the_notebook_before_ready() -> None:
    server = Server()
    broker = Published(server)
    started = prestarts("started")
    await handlers_for(server, broker).on_server_ready(server_ready())
    assert server.calls == [(SERVER, PATH, "nbembed-data")]
    [(topic, _, kernels_asked)] = broker.events
    assert topic == SessionReady.topic
    assert kernels_asked == 1  # the page, opened on ready, finds the kernel's session
    assert prestarts("started") == started + 1


@pytest.mark.parametrize("answer", ["refuse", "hang"])
async def test_a_kernel_that_does_not_start_fails_nothing(answer: str) -> None:
    server = Server(answer)
    broker = Published(server)
    failed = prestarts("failed")
    handlers = handlers_for(server, broker, prestart_seconds=0.2)
    async with asyncio.timeout(5):  # a hung server holds ready up for the bound only
        await handlers.on_server_ready(server_ready())
    [(topic, _, _)] = broker.events
    assert topic == SessionReady.topic
    assert prestarts("failed") == failed + 1


async def test_turned_off_or_without_a_profile_no_kernel_is_started() -> None:
    for options, profile in (({"prestart_kernel": False}, DATA), ({}, None)):
        server = Server()
        broker = Published(server)
        await handlers_for(server, broker, **options).on_server_ready(server_ready(profile))
        assert server.calls == []
        assert [topic for topic, _, _ in broker.events] == [SessionReady.topic]


class NewNotebookServer(Server):
    """A server on which a new notebook is created: its file's write returns only once
    the kernel was asked for, so a kernel started after the placement never comes."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel_asked = asyncio.Event()

    async def list_folder(self, server_path: str, folder: str) -> set[str]:
        return set()

    async def put_notebook(self, server_path: str, path: str, content: dict[str, Any]) -> None:
        await self.kernel_asked.wait()

    async def start_kernel_session(
        self, server_path: str, path: str, kernel_name: str
    ) -> KernelSession:
        self.kernel_asked.set()
        return await super().start_kernel_session(server_path, path, kernel_name)


async def test_the_kernel_starts_beside_the_new_notebooks_placement_not_after_it() -> None:
    server = NewNotebookServer()
    broker = Published(server)
    handlers = handlers_for(server, broker)
    handlers._store = NewNotebookStore()  # type: ignore[assignment]
    ready = server_ready()
    async with asyncio.timeout(5):
        await handlers.on_server_ready(ready)
    [(_, path, kernel)] = server.calls
    assert (path, kernel) == ("work/Untitled.ipynb", "nbembed-data")
    topics = [topic for topic, _, _ in broker.events]
    assert topics[0] == SessionReady.topic  # then the new notebook's announcement


class FailingPlacementServer(NewNotebookServer):
    """The notebook's file cannot be written; the kernel request never answers."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel_request_cancelled = False

    async def put_notebook(self, server_path: str, path: str, content: dict[str, Any]) -> None:
        await self.kernel_asked.wait()
        raise ContentsError(f"writing {path}: 500", 500)

    async def start_kernel_session(
        self, server_path: str, path: str, kernel_name: str
    ) -> KernelSession:
        self.kernel_asked.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.kernel_request_cancelled = True
            raise
        raise AssertionError("unreachable")


async def test_a_placement_that_fails_drops_its_kernel_request_and_announces_nothing() -> None:
    server = FailingPlacementServer()
    broker = Published(server)
    handlers = handlers_for(server, broker)
    handlers._store = NewNotebookStore()  # type: ignore[assignment]
    async with asyncio.timeout(5):
        with pytest.raises(ContentsError):  # the consumer retries the delivery
            await handlers.on_server_ready(server_ready())
        await asyncio.sleep(0)  # let the cancellation reach the request
    assert server.kernel_request_cancelled
    assert broker.events == []


class NewNotebookStore:
    """Sync's store for a session that creates its notebook (nothing placed before)."""

    async def placement(self, session_id: str) -> None:
        return None

    async def get_notebook(self, tenant_id: str, notebook_id: str) -> None:
        return None

    async def place(self, hub_user: str, notebook: dict[str, Any], choose: Any) -> str:
        return str(choose(set()))

    async def claim_new_notebook(self, notebook: dict[str, Any]) -> dict[str, Any]:
        return {**notebook, "latest_revision": 0}

    async def add_revision(
        self, notebook: dict[str, Any], content: dict[str, Any]
    ) -> tuple[int, str, bool]:
        return 1, "0" * 64, True

    async def record_placement(self, session_id: str, notebook_id: str, path: str) -> None:
        return None


class SessionsApi:
    """A server's ``POST /api/sessions``: one session per path, as Jupyter Server keeps them."""

    def __init__(self, answer: httpx.Response | None = None) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []
        self.sessions: dict[str, dict[str, Any]] = {}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.answer is not None:
            return self.answer
        body = json.loads(request.content)
        model = self.sessions.setdefault(
            body["path"],
            {
                "id": f"s{len(self.sessions)}",
                "path": body["path"],
                "kernel": {"id": f"k{len(self.sessions)}", "name": body["kernel"]["name"]},
            },
        )
        return httpx.Response(201, json=model)


def client_for(server: SessionsApi) -> ContentsClient:
    return ContentsClient(
        "http://hub", tokens_from(Provisioner()), transport=httpx.MockTransport(server)
    )


async def test_the_sessions_call_names_the_path_and_kernel_with_the_users_own_token() -> None:
    server = SessionsApi()
    client = client_for(server)
    first = await client.start_kernel_session(SERVER, PATH, "nbembed-data")
    again = await client.start_kernel_session(SERVER, PATH, "nbembed-data")
    assert first == again == KernelSession("s0", "k0", "nbembed-data")
    request = server.requests[0]
    assert (request.method, request.url.path) == ("POST", f"/user/{HUB_USER}/api/sessions")
    assert json.loads(request.content) == {
        "path": PATH,
        "type": "notebook",
        "name": "Q1.ipynb",
        "kernel": {"name": "nbembed-data"},
    }
    assert request.headers["Authorization"].startswith(f"token {HUB_USER}")


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(501, json={"message": "The 'nbembed-data' kernel is not available"}),
        httpx.Response(201, json={"id": "s0"}),
        httpx.Response(201, content=b"not json"),
    ],
)
async def test_a_refused_or_odd_answer_is_a_contents_error(answer: httpx.Response) -> None:
    with pytest.raises(ContentsError):
        await client_for(SessionsApi(answer)).start_kernel_session(SERVER, PATH, "nbembed-data")


async def test_only_a_users_own_server_path_is_called() -> None:
    server = SessionsApi()
    with pytest.raises(ContentsError):
        await client_for(server).start_kernel_session("/hub/api/", PATH, "python3")
    assert server.requests == []
