"""Which host pages may frame the hub's own pages (infra/hub/hub_frames.py)."""

from __future__ import annotations

import asyncio

import pytest
from tornado import httputil

from infra.hub import hub_frames
from infra.hub.hub_frames import CSP, HUB_DEFAULT, TenantFrameAncestors, TenantFramers


def csp_of(path: str, csp: str = HUB_DEFAULT) -> str:
    start = httputil.RequestStartLine("GET", path, "HTTP/1.1")
    host = httputil.HTTPHeaders({"Host": "127.0.0.1:8000"})
    request = httputil.HTTPServerRequest(headers=host, start_line=start)
    headers = httputil.HTTPHeaders({CSP: csp})
    _, out, _ = TenantFrameAncestors(request).transform_first_chunk(200, headers, b"", True)
    return str(out[CSP])


async def test_pages_about_a_user_get_that_users_tenants_framers_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    framers = TenantFramers()
    framers.remember("acme", ["https://acme.example", "javascript:alert(1)"])
    framers.remember("other", ["https://other.example"])
    monkeypatch.setattr(hub_frames, "FRAMERS", framers)
    for path in (
        "/hub/user/acme-abc/lab/tree/work/x.ipynb",
        "/hub/spawn-pending/acme-abc",
        "/hub/spawn/acme-abc?next=/x",
    ):
        assert csp_of(path) == "frame-ancestors 'self' https://acme.example", path
    assert csp_of("/hub/spawn-pending/other-xyz") == "frame-ancestors 'self' https://other.example"


async def test_every_other_hub_page_keeps_the_hub_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    framers = TenantFramers()
    framers.remember("acme", ["https://acme.example"])
    monkeypatch.setattr(hub_frames, "FRAMERS", framers)
    for path in (
        "/hub/token",
        "/hub/home",
        "/hub/admin",
        "/hub/login",
        "/hub/api/users",
        # Pages that only contain a path about a user of a tenant with framers.
        "/hub/user-redirect/hub/user/acme-abc",
        "/hub/token/hub/spawn/acme-abc",
        "/prefix/hub/spawn-pending/acme-abc",
        "/hub/spawn-pending/acme-abc%2F..%2F..%2Ftoken",
    ):
        assert csp_of(path) == HUB_DEFAULT, path
    # A handler's own CSP (the ticket login's) is left alone.
    own = "frame-ancestors 'self' https://acme.example"
    assert csp_of("/hub/user/other-xyz/lab", csp=own) == own


async def test_an_unknown_tenant_is_framed_by_no_host_until_the_gateway_answers(
    monkeypatch,
) -> None:  # type: ignore[no-untyped-def]
    asked: list[str] = []

    async def fetch(tenant: str) -> list[str] | None:
        asked.append(tenant)
        return ["https://new.example"]

    framers = TenantFramers(max_age=60)
    framers.connect(fetch)
    monkeypatch.setattr(hub_frames, "FRAMERS", framers)
    assert csp_of("/hub/spawn-pending/new-abc") == HUB_DEFAULT  # fail closed
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert csp_of("/hub/spawn-pending/new-abc") == "frame-ancestors 'self' https://new.example"
    assert asked == ["new"]  # fresh for max_age: not asked again


async def test_stale_framers_are_asked_again_and_kept_when_the_gateway_cannot_say() -> None:
    answers: list[list[str] | None] = [None, ["https://later.example"]]

    async def fetch(tenant: str) -> list[str] | None:
        return answers.pop(0)

    framers = TenantFramers(max_age=0)
    framers.connect(fetch)
    framers.remember("acme", ["https://acme.example"])
    assert framers.origins("acme") == ["https://acme.example"]
    await asyncio.sleep(0.01)  # the gateway could not answer: what was known stays
    assert framers.origins("acme") == ["https://acme.example"]
    await asyncio.sleep(0.01)
    assert framers.origins("acme") == ["https://later.example"]
