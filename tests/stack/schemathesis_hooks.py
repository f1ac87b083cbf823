"""schemathesis hooks for tests/stack/test_contract.py (loaded through SCHEMATHESIS_HOOKS).

Every session opens a real server for its user, and every new user is a hub
user with an OS account of its own: a run that invented a user per case would
start hundreds of servers on two cores. Valid user ids are therefore folded
onto a few users (for sessions and warm-ups alike); invalid ones (the
negative cases) reach the gateway as generated. Profile names are the
tenant's data, which no schema can list: a generated, valid-looking name is
folded onto one of the demo tenant's profiles, so positive cases stay
positive; names of the wrong type or length still reach the gateway.
"""

from __future__ import annotations

import hashlib
from typing import Any

import schemathesis

USERS = 3
"""How many host users the run's sessions are spread over."""
PROFILES = ("python", "data")
"""The demo tenants' profiles (infra/stack.py)."""
WARM_PATH = "/v1/users/{user_id}/warm"


def contract_user(user_id: str) -> str:
    """The contract user a generated, valid user id stands for."""
    return f"contract-{hashlib.sha256(user_id.encode()).digest()[0] % USERS}"


def contract_profile(name: str) -> str:
    """The demo profile a generated, valid profile name stands for."""
    return PROFILES[hashlib.sha256(name.encode()).digest()[0] % len(PROFILES)]


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.method.upper() != "POST" or case.operation.path not in ("/v1/sessions", WARM_PATH):
        return
    body = case.body
    if isinstance(body, dict):
        profile = body.get("profile")
        if isinstance(profile, str) and 1 <= len(profile) <= 40:
            case.body = body = {**body, "profile": contract_profile(profile)}
    if case.operation.path == WARM_PATH:
        user_id = (case.path_parameters or {}).get("user_id")
        if isinstance(user_id, str) and 1 <= len(user_id) <= 512:
            case.path_parameters = {**case.path_parameters, "user_id": contract_user(user_id)}
        return
    user_id = body.get("user_id") if isinstance(body, dict) else None
    if isinstance(user_id, str) and 1 <= len(user_id) <= 512:
        case.body = {**body, "user_id": contract_user(user_id)}
