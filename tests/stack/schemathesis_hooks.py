"""schemathesis hooks for tests/stack/test_contract.py (loaded through SCHEMATHESIS_HOOKS).

Every session opens a real server for its user, and every new user is a hub
user with an OS account of its own: a run that invented a user per case would
start hundreds of servers on two cores. Valid user ids are therefore folded
onto a few users; invalid ones (the negative cases) reach the gateway as
generated.
"""

from __future__ import annotations

import hashlib
from typing import Any

import schemathesis

USERS = 3
"""How many host users the run's sessions are spread over."""


def contract_user(user_id: str) -> str:
    """The contract user a generated, valid user id stands for."""
    return f"contract-{hashlib.sha256(user_id.encode()).digest()[0] % USERS}"


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    body = case.body
    if case.operation.path != "/v1/sessions" or case.method.upper() != "POST":
        return
    user_id = body.get("user_id") if isinstance(body, dict) else None
    if isinstance(user_id, str) and 1 <= len(user_id) <= 512:
        case.body = {**body, "user_id": contract_user(user_id)}
