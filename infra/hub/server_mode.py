"""How the hub turns a spawn's ``user_options`` into the single-user server's mode.

The provisioner starts every server with ``{"user_options": {"restricted":
bool}}``; `apply_user_options` (``c.Spawner.apply_user_options``) then sets
the server's arguments and environment for that spawn. Only the hub's
service can start servers (the ``user`` role holds no ``servers`` scope), so
a user cannot start their own server unrestricted; and a kernel cannot
change the mode of the running server: its command line and environment
come from here, and ``disable_user_config`` keeps ``~/.jupyter`` out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

EMBED_ARGS = ("--ServerApp.jpserver_extensions=nbembed_embed=True",)
"""Every server: the extension that trims the embedded page (nbembed_embed.py)."""

RESTRICTED_ARGS = (
    "--ServerApp.authorizer_class=nbembed_embed.RestrictedAuthorizer",
    "--ServerApp.terminals_enabled=False",
    "--ServerApp.jpserver_extensions=jupyter_lsp=False",
)
"""Restricted-data mode: downloads and exports refused (403), no terminals, no language servers."""


def wants_restricted(user_options: Mapping[str, Any] | None) -> bool:
    """Whether a spawn asked for restricted-data mode (only a literal ``true`` counts)."""
    return isinstance(user_options, Mapping) and user_options.get("restricted") is True


def server_args(base: list[str], restricted: bool) -> list[str]:
    """The server's arguments for one spawn: the configured ones, then this mode's."""
    return [*base, *EMBED_ARGS, *(RESTRICTED_ARGS if restricted else ())]


def apply_user_options_hook(
    base_args: list[str], base_environment: Mapping[str, str]
) -> Callable[[Any, Mapping[str, Any] | None], None]:
    """``c.Spawner.apply_user_options``: set the mode of the spawn about to start.

    Built from the configured arguments and environment and assigned fresh
    on every spawn: a spawner object is reused across its user's spawns, so
    appending would carry a previous spawn's mode over.
    """

    def apply_user_options(spawner: Any, user_options: Mapping[str, Any] | None) -> None:
        restricted = wants_restricted(user_options)
        spawner.args = server_args(base_args, restricted)
        spawner.environment = {
            **base_environment,
            "NBEMBED_RESTRICTED": "1" if restricted else "0",
        }
        spawner.log.info(
            "nbembed: starting %s %s", spawner._log_name, "restricted" if restricted else "open"
        )

    return apply_user_options
