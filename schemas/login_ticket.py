"""Login tickets: how a browser in the host page's iframe logs in to the hub.

A contract between the gateway, which mints a ticket each time it hands a
host an iframe URL and later redeems it, and the hub's login handler
(``infra/hub/ticket_login.py``), which only carries it from the browser to
the gateway. A ticket is self-contained: the hub user it logs in, the one
page it leads to, the session it belongs to, an expiry under a minute away
and a random nonce, signed with HMAC-SHA256 under a key only the gateway
holds. Nothing in a database makes a ticket valid, so whoever can write the
store cannot forge one; the store only remembers which nonces were used
(``_id`` of ``redeemed_tickets``: the unique index is what makes redemption
single-use on any MongoDB-compatible server). Tickets never travel on Kafka.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, StringConstraints

QUERY_PARAMETER = "login_token"  # the hub's access log scrubs parameters named *token*
LOGIN_PATH = "/hub/nbembed/login"
REDEEM_PATH = "/internal/tickets/redeem"
"""The gateway's route the hub calls, with its own token, to redeem a ticket."""
MAX_TICKET_LENGTH = 2048


class RedeemRequest(BaseModel):
    """What the hub sends the gateway: the ticket exactly as it came in the URL."""

    model_config = ConfigDict(extra="forbid")

    ticket: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TICKET_LENGTH)]


class Redemption(BaseModel):
    """The gateway's answer for a valid ticket, now used: who to log in, where to go."""

    hub_user: str
    next_path: str
    session_id: str
    frame_ancestors: list[str] = []
    """The origins of the user's tenant: the only pages that may frame this login's answer."""


REFUSAL_CODES = ("ticket-expired", "ticket-used", "ended")
"""Why a ticket with a valid signature was refused: the code the hub's refusal page
posts to the host page (the SDK's ``error`` event), in the gateway's 410 answer."""


def is_own_page(hub_user: str, next_path: str) -> bool:
    """Whether ``next_path`` is a page on ``hub_user``'s own server and nowhere else.

    Both sides check it: the gateway before signing, the hub before redirecting.
    Dot segments (also percent-encoded) and backslashes are refused, since a
    browser would resolve ``/user/alice/../bob/`` to bob's server.
    """
    parts = urlsplit(next_path)
    if parts.scheme or parts.netloc or not parts.path.startswith(f"/user/{hub_user}/"):
        return False
    if any(ord(ch) < 0x21 for ch in next_path):
        return False  # no control characters or spaces (a header injection, a split URL)
    path = unquote(parts.path)
    return "\\" not in path and not any(segment in (".", "..") for segment in path.split("/"))
