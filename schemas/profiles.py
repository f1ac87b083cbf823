"""Profiles: the environments a tenant offers its sessions (kernel, resources, image).

A tenant declares its profiles (an operator does, through the admin API);
a session names one, and the gateway resolves the name within the session's
own tenant into a `Profile`, which travels whole in the session's events. The
provisioner turns it into the spawn's ``user_options`` and the hub's config
applies only the fields below, each checked again there: nothing a host or
a user sends reaches the spawner except a profile name that an operator
defined for that tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

PROFILE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
"""Profile names are short slugs (they appear in user_options and the hub's logs)."""
KERNEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Jupyter's own rule for kernelspec names (letters, digits, ``.``, ``_``, ``-``)."""
MEM_LIMIT_PATTERN = r"^[1-9][0-9]{0,5}[KMGT]?$"
"""JupyterHub's byte specification: a number with an optional K, M, G or T suffix."""
IMAGE_PATTERN = r"^[a-z0-9][a-z0-9._/:@-]{0,254}$"
"""An OCI image reference (registry/name:tag or @digest), lowercase, no spaces."""
MAX_PROFILES = 20
SERVER_OPTION_KEYS = ("mem_limit", "cpu_limit", "image")
"""The fields of a profile that shape the server itself (the kernel is per notebook)."""

ProfileName = Annotated[str, StringConstraints(pattern=PROFILE_NAME_PATTERN)]
KernelName = Annotated[str, StringConstraints(pattern=KERNEL_NAME_PATTERN)]


class Profile(BaseModel):
    """One environment a tenant offers: which kernel its notebooks run, with what.

    ``mem_limit``, ``cpu_limit`` and ``image`` reach the spawner's traits of
    the same names; spawners that run containers (KubeSpawner, DockerSpawner)
    enforce them, the local process spawners only pass the limits on to the
    server's environment (``MEM_LIMIT``, ``CPU_LIMIT``) and have no image.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ProfileName
    display_name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    kernel: KernelName = Field(
        default="python3",
        description="The kernelspec the session's notebook runs (its metadata names it, "
        "so Jupyter starts that kernel). Must be installed in the user's server.",
    )
    mem_limit: Annotated[str, StringConstraints(pattern=MEM_LIMIT_PATTERN)] | None = Field(
        default=None, description="Memory limit of the user's server, e.g. 512M or 2G."
    )
    cpu_limit: float | None = Field(
        default=None, gt=0, le=64, description="CPU cores the user's server may use."
    )
    image: Annotated[str, StringConstraints(pattern=IMAGE_PATTERN)] | None = Field(
        default=None, description="Container image of the user's server (container spawners)."
    )

    def server_options(self) -> dict[str, Any]:
        """What the server itself is started with (the kernel is the notebook's choice).

        Two profiles with the same server options share a running server: one
        server runs the kernels of both.
        """
        options = {key: getattr(self, key) for key in SERVER_OPTION_KEYS}
        return {key: value for key, value in options.items() if value is not None}

    def user_options(self) -> dict[str, Any]:
        """The profile as the spawn's ``user_options`` (beside ``restricted`` and ``instance``)."""
        return {"profile": self.name, "kernel": self.kernel, **self.server_options()}


def server_options_of(user_options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A spawn's server options, comparable: sorted (key, value) pairs of the set ones."""
    return tuple(
        sorted((key, user_options[key]) for key in SERVER_OPTION_KEYS if user_options.get(key))
    )
