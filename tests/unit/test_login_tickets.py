"""Login tickets without the stack: what a signature binds, and where a login may happen."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from infra.hub.ticket_login import REFUSED, Refusal, TicketAuthenticator, refused_page
from schemas.login_ticket import is_own_page
from services.gateway.tickets import Claims, TicketRefused, Tickets, _b64, _unb64

USER = "demo-abcdefghijklmnopqrstuvwxyz"
PAGE = f"/user/{USER}/notebooks/work/a.ipynb"


def tickets(key: bytes = b"k" * 32, ttl: float = 60) -> Tickets:
    # The client connects lazily: verifying and minting never touch the store.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient("mongodb://127.0.0.1:1/")
    return Tickets(client, "x", key=key, public_hub_url="http://hub", ttl_seconds=ttl)


def with_claims(ticket: str, **changes: Any) -> str:
    """The ticket with some claims changed and the original signature kept."""
    version, encoded, mac = ticket.split(".")
    claims = json.loads(_unb64(encoded)) | changes
    return f"{version}.{_b64(json.dumps(claims).encode())}.{mac}"


def test_a_minted_ticket_verifies_to_its_claims() -> None:
    issuer = tickets()
    claims = issuer.verify(issuer.mint(USER, PAGE, "s1"))
    assert (claims.u, claims.p, claims.s) == (USER, PAGE, "s1")
    assert time.time() < claims.e <= time.time() + 60


def test_every_ticket_is_new() -> None:
    issuer = tickets()
    assert issuer.mint(USER, PAGE, "s1") != issuer.mint(USER, PAGE, "s1")


@pytest.mark.parametrize(
    "changes",
    [
        {"u": "demo-other"},
        {"p": f"/user/{USER}/notebooks/work/b.ipynb"},
        {"s": "another-session"},
        {"e": int(time.time()) + 3600},
        {"n": "another-nonce"},
    ],
)
def test_changing_any_claim_breaks_the_signature(changes: dict[str, Any]) -> None:
    issuer = tickets()
    forged = with_claims(issuer.mint(USER, PAGE, "s1"), **changes)
    with pytest.raises(TicketRefused) as refused:
        issuer.verify(forged)
    assert refused.value.status == 403


def test_a_ticket_signed_with_another_key_is_refused() -> None:
    with pytest.raises(TicketRefused) as refused:
        tickets(b"k" * 32).verify(tickets(b"j" * 32).mint(USER, PAGE, "s1"))
    assert refused.value.status == 403


@pytest.mark.parametrize("garbage", ["", "v1", "v1..", "v2.e30.AA", "v1.%%%.###", "v1.é.é"])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(TicketRefused):
        tickets().verify(garbage)


def test_an_expired_ticket_is_refused_as_gone() -> None:
    issuer = tickets(ttl=0.001)
    ticket = issuer.mint(USER, PAGE, "s1")
    time.sleep(1.01)
    with pytest.raises(TicketRefused) as refused:
        issuer.verify(ticket)
    assert refused.value.status == 410


def test_a_ticket_for_another_users_page_is_never_minted() -> None:
    with pytest.raises(ValueError, match="not a page"):
        tickets().mint(USER, "/user/demo-other/notebooks/a.ipynb", "s1")


def test_the_login_url_carries_only_the_ticket() -> None:
    url = tickets().login_url(USER, f"http://hub{PAGE}?reset", "s1")
    assert url.startswith("http://hub/hub/nbembed/login?login_token=v1.")
    claims = Claims.model_validate_json(_unb64(url.split("=", 1)[1].split(".")[1]))
    assert claims.p == f"{PAGE}?reset"


@pytest.mark.parametrize(
    ("path", "own"),
    [
        (PAGE, True),
        (f"/user/{USER}/lab/tree/work/a%20b.ipynb?reset", True),
        (f"/user/{USER}", False),
        (f"/user/{USER}x/notebooks/a.ipynb", False),
        (f"/user/{USER}/../demo-other/notebooks/a.ipynb", False),
        (f"/user/{USER}/%2e%2e/demo-other/notebooks/a.ipynb", False),
        (f"/user/{USER}/%2E%2E%2Fdemo-other/notebooks/a.ipynb", False),
        (f"/user/{USER}/..%5Cdemo-other/a.ipynb", False),
        (f"/user/{USER}/a\r\nSet-Cookie: x=1", False),
        (f"//evil.example/user/{USER}/", False),
        (f"https://evil.example/user/{USER}/", False),
    ],
)
def test_next_paths_stay_on_the_users_own_server(path: str, own: bool) -> None:
    assert is_own_page(USER, path) is own


@pytest.mark.parametrize(
    ("headers", "top_level", "allowed"),
    [
        ({"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Site": "same-site"}, False, True),
        ({"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Site": "same-origin"}, False, True),
        ({"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Site": "cross-site"}, False, False),
        ({"Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "none"}, False, False),
        ({"Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "cross-site"}, False, False),
        ({}, False, False),
        ({"Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "none"}, True, True),
        ({"Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "cross-site"}, True, False),
        ({"Sec-Fetch-Dest": "empty", "Sec-Fetch-Site": "same-site"}, True, False),
    ],
)
def test_the_login_answers_only_inside_a_frame_of_the_same_site(
    headers: dict[str, str], top_level: bool, allowed: bool
) -> None:
    authenticator = TicketAuthenticator(allow_top_level=top_level)
    assert authenticator.navigation_allowed(headers) is allowed


def test_the_login_ends_on_the_users_own_origin_with_per_user_origins() -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient("mongodb://127.0.0.1:1/")
    hub = "https://jupyter.example.com"
    per_user = Tickets(
        client, "x", key=b"k" * 32, public_hub_url=hub, ttl_seconds=60, subdomain_host=hub
    )
    url = per_user.login_url(USER, f"https://{USER}.jupyter.example.com{PAGE}", "s1")
    assert url.startswith(f"{hub}/hub/")  # the login itself is the hub's
    assert per_user.notebook_origin(USER) == f"https://{USER}.jupyter.example.com"
    assert tickets().notebook_origin(USER) == "http://hub"  # one origin for all


def test_an_expired_ticket_names_its_user_and_code_for_the_refusal_page() -> None:
    issuer = tickets(ttl=-1)
    with pytest.raises(TicketRefused) as refused:
        issuer.verify(issuer.mint(USER, PAGE, "s1"))
    assert (refused.value.code, refused.value.hub_user) == ("ticket-expired", USER)


def test_a_forged_ticket_names_nobody() -> None:
    with pytest.raises(TicketRefused) as refused:
        tickets().verify(tickets(key=b"x" * 32).mint(USER, PAGE, "s1"))
    assert (refused.value.code, refused.value.hub_user) == (None, None)


def test_the_refusal_page_tells_only_the_tenants_origins_and_only_a_known_code() -> None:
    page = refused_page(
        Refusal(
            "ticket-used", ("http://127.0.0.1:8090", "javascript:alert(1)", "http://a</script>")
        )
    )
    script = page[page.index("<script>") + len("<script>") : page.index("</script>")]
    data = json.loads(script[script.index("= ") + 2 : script.index(";")])
    assert data == [
        {"protocol": "nbembed.v1", "type": "refused", "code": "ticket-used"},
        ["http://127.0.0.1:8090"],
    ]
    assert page.count("<script>") == 1 and "</script>" not in script
    assert "*" not in script
    # A code it does not know, or no refusal of ours: the plain page, no script.
    assert refused_page(Refusal("owned", ("http://127.0.0.1:8090",))) == REFUSED
    assert refused_page(None) == REFUSED
