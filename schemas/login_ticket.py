"""Login tickets: how a browser in the host page's iframe logs in to the hub.

This is a contract between the gateway, which issues a ticket each time it
hands a host an iframe URL, and the hub's login handler
(``infra/hub/ticket_login.py``), which redeems it. A ticket is a random token
in the iframe URL; only its SHA-256 digest is stored, in MongoDB's
``login_tickets`` collection, with the one hub user it logs in, the one page
it leads to, an expiry under a minute away, and when it was used. Redeeming
sets ``used_at`` atomically, so a ticket works once. Tickets never travel on
Kafka.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

COLLECTION = "login_tickets"
QUERY_PARAMETER = "login_token"  # the hub's access log scrubs parameters named *token*
LOGIN_PATH = "/hub/nbembed/login"


class LoginTicket(BaseModel):
    """A stored ticket (never the token itself)."""

    model_config = ConfigDict(populate_by_name=True)

    digest: str = Field(alias="_id", pattern=r"^[0-9a-f]{64}$")
    hub_user: str
    next_path: str = Field(description="Where the login leads: a page on the user's server.")
    expires_at: datetime
    used_at: datetime | None = None


def new_token() -> str:
    """A fresh random ticket token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What is stored instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()
