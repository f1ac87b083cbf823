"""How the hub turns a spawn's ``user_options`` into the single-user server's mode.

The provisioner starts every server with ``{"user_options": {"restricted":
bool, "instance": nonce, "profile": name, "kernel": name, "mem_limit": ...,
"cpu_limit": ..., "image": ...}}`` (the profile's fields only when the
session has a profile); `apply_user_options` (``c.Spawner.apply_user_options``)
then sets the server's arguments, environment and traits for that spawn. It
reads only those keys, each checked against the contract's own patterns, so
any other key is ignored and a malformed value starts the server without it
(logged). Only the hub's
service can start servers (the ``user`` role holds no ``servers`` scope), so
a user cannot start their own server unrestricted; and a kernel cannot
change the mode of the running server: its command line and environment
come from here, and ``disable_user_config`` keeps ``~/.jupyter`` out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from schemas.profiles import (
    IMAGE_PATTERN,
    KERNEL_NAME_PATTERN,
    MEM_LIMIT_PATTERN,
    PROFILE_NAME_PATTERN,
)

EMBED_ARGS = (
    "--ServerApp.jpserver_extensions=nbembed_embed=True",
    "--ServerApp.jpserver_extensions=jupyter_lsp=False",
)
"""Every server: the extension that trims the embedded page (nbembed_embed.py), and no
jupyter_lsp: no nbembed image installs a language server, and its search for one took
0.7 s of CPU at every server start (JupyterLab's LSP features then stay off quietly)."""

RESTRICTED_ARGS = (
    "--ServerApp.authorizer_class=nbembed_embed.RestrictedAuthorizer",
    "--ServerApp.terminals_enabled=False",
    "--ServerApp.jpserver_extensions=jupyter_lsp=False",
)
"""Restricted-data mode: downloads and exports refused (403), no terminals, no language servers."""


def wants_restricted(user_options: Mapping[str, Any] | None) -> bool:
    """Whether a spawn asked for restricted-data mode (only a literal ``true`` counts)."""
    return isinstance(user_options, Mapping) and user_options.get("restricted") is True


def _matching(user_options: Mapping[str, Any] | None, key: str, pattern: str) -> str | None:
    """``user_options[key]`` when it is a string matching ``pattern``, else None."""
    value = user_options.get(key) if isinstance(user_options, Mapping) else None
    return value if isinstance(value, str) and re.fullmatch(pattern, value) else None


def profile_of(user_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The profile fields of a spawn's options that pass the contract's checks.

    ``profile``, ``kernel``, ``mem_limit`` and ``image`` must match their
    patterns, ``cpu_limit`` must be a number in (0, 64]; anything else is
    dropped: the spawn goes on with the server's defaults for that field.
    """
    fields: dict[str, Any] = {}
    for key, pattern in (
        ("profile", PROFILE_NAME_PATTERN),
        ("kernel", KERNEL_NAME_PATTERN),
        ("mem_limit", MEM_LIMIT_PATTERN),
        ("image", IMAGE_PATTERN),
    ):
        if (value := _matching(user_options, key, pattern)) is not None:
            fields[key] = value
    cpu = user_options.get("cpu_limit") if isinstance(user_options, Mapping) else None
    if isinstance(cpu, int | float) and not isinstance(cpu, bool) and 0 < cpu <= 64:
        fields["cpu_limit"] = float(cpu)
    return fields


def server_args(base: list[str], restricted: bool, kernel: str | None = None) -> list[str]:
    """The server's arguments for one spawn: the configured ones, then this mode's.

    With a profile's ``kernel``, that kernel is the server's default: a
    notebook that names no kernel (or one created in the page) runs it too.
    """
    default_kernel = (f"--MappingKernelManager.default_kernel_name={kernel}",) if kernel else ()
    return [*base, *EMBED_ARGS, *(RESTRICTED_ARGS if restricted else ()), *default_kernel]


def apply_profile(spawner: Any, profile: Mapping[str, Any]) -> None:
    """Set the spawner's traits the profile names, where this spawner has them.

    ``mem_limit`` and ``cpu_limit`` are traits of every spawner (container
    spawners enforce them; local ones pass them on as ``MEM_LIMIT`` and
    ``CPU_LIMIT`` in the server's environment); ``image`` exists only on
    container spawners and is ignored elsewhere. Unset fields are reset, as
    the spawner object is reused across its user's spawns.
    """
    spawner.mem_limit = profile.get("mem_limit")
    spawner.cpu_limit = profile.get("cpu_limit")
    if "image" in profile and spawner.has_trait("image"):
        spawner.image = profile["image"]
    elif "image" in profile:
        spawner.log.warning("nbembed: %s has no image; profile image ignored", type(spawner))


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
        profile = profile_of(user_options)
        spawner.args = server_args(base_args, restricted, profile.get("kernel"))
        spawner.environment = {
            **base_environment,
            "NBEMBED_RESTRICTED": "1" if restricted else "0",
            **({"NBEMBED_PROFILE": profile["profile"]} if "profile" in profile else {}),
        }
        apply_profile(spawner, profile)
        spawner.log.info(
            "nbembed: starting %s %s, profile %s",
            spawner._log_name,
            "restricted" if restricted else "open",
            profile.get("profile", "(none)"),
        )

    return apply_user_options
