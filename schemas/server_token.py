"""Server tokens: how sync gets a credential for one user's single-user server.

A contract between the provisioner, which alone holds the hub service token
and mints these through the hub, and sync, which calls users' servers with
them. Each token belongs to the hub user whose server it reaches, carries
only the scope ``access:servers!server=<user>/`` and expires; a hostile
server that records it gains nothing it did not already have. It travels
only over the provisioner's internal HTTP API, never on Kafka.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from schemas.naming import HUB_USER_PATTERN

TOKEN_PATH = "/internal/users/{hub_user}/server-token"  # noqa: S105 - a URL path
"""``POST`` here (on the provisioner) with ``Authorization: Bearer <sync's secret>``."""
TOKEN_NOTE = "nbembed-sync"  # noqa: S105 - a label, not a secret
"""The hub note of every such token: how the provisioner finds them to revoke."""


def server_scope(hub_user: str) -> str:
    """The one scope a server token carries: reach this user's default server."""
    return f"access:servers!server={hub_user}/"


class ServerToken(BaseModel):
    """The provisioner's answer: a token of ``hub_user`` for that user's server only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hub_user: str = Field(pattern=HUB_USER_PATTERN, max_length=64)
    token: str = Field(min_length=1, max_length=256, repr=False)
    expires_in: int = Field(gt=0, description="Seconds the token stays valid from now.")
    expires_at: datetime
