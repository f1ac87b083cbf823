"""Which input files a user's open sessions have attached: one inputs/ folder per user."""

from __future__ import annotations

from typing import Any

from schemas import CloudEvent, InputFile, InputsChanged
from schemas.events import MAX_INPUTS
from services.gateway.deps import Gateway
from services.gateway.outbox import Document, Entries, state_entry
from services.gateway.problems import Problem

INPUTS_KIND = "inputs"
"""Outbox entries that publish a user's inputs/ folder as it is when they are published."""


def input_not_found(input_id: str) -> Problem:
    """The answer for an input that does not exist for the caller."""
    return Problem(
        404, "Not found", f"No input file {input_id} for this tenant.", kind="input-not-found"
    )


async def resolve(parts: Gateway, tenant_id: str, input_ids: list[str]) -> list[InputFile]:
    """The tenant's inputs named by ``input_ids``, in order; 404 for an unknown one."""
    found: list[InputFile] = []
    for input_id in dict.fromkeys(input_ids):
        doc = await parts.inputs.get(tenant_id, input_id)
        if doc is None:
            raise input_not_found(input_id)
        found.append(
            InputFile.model_validate({k: doc[k] for k in ("id", "name", "size", "sha256")})
        )
    check_names(found)
    return found


def check_names(inputs: list[InputFile]) -> None:
    """One file per name in a user's inputs/ folder."""
    by_name: dict[str, str] = {}
    for item in inputs:
        if by_name.setdefault(item.name, item.id) != item.id:
            raise Problem(
                409,
                "Input name taken",
                f"Another input file named {item.name!r} is attached to this user's open "
                "sessions; detach it or upload under another name.",
                kind="input-name-taken",
            )
    if len(inputs) > MAX_INPUTS * 10:
        raise Problem(409, "Too many input files", "This user's open sessions have too many.")


async def user_inputs(parts: Gateway, hub_user: str) -> list[InputFile]:
    """Every input file attached to the user's open sessions (their inputs/ folder)."""
    merged: dict[str, InputFile] = {}
    for session in await parts.sessions.open_of_user(hub_user):
        for raw in session.get("inputs", []):
            item = InputFile.model_validate(raw)
            merged[item.id] = item
    return list(merged.values())


async def inputs_changed(parts: Gateway, tenant_id: str, hub_user: str) -> InputsChanged:
    """The event telling sync the user's inputs/ folder as it must be now."""
    return InputsChanged(
        tenant_id=tenant_id, hub_user=hub_user, inputs=await user_inputs(parts, hub_user)
    )


def inputs_entry(tenant_id: str, hub_user: str) -> Entries:
    """An outbox entry telling sync the user's inputs/ folder (computed when published)."""
    return state_entry(INPUTS_KIND, tenant_id=tenant_id, hub_user=hub_user)


async def render_inputs(parts: Gateway, entry_id: str, entry: Document) -> CloudEvent[Any]:
    """The inputs.changed event of an outbox entry: the folder as the sessions say now."""
    changed = await inputs_changed(parts, entry["tenant_id"], entry["hub_user"])
    return CloudEvent[InputsChanged](
        id=entry_id, source="/nbembed/gateway", type=changed.event_type, data=changed
    )
