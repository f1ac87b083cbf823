"""The store accepts only its own processes, and each only into its own collections.

Attacks: code in a user's kernel (a) connects to the store without credentials
and (b) with guessed passwords, to forge a login ticket or read every stored
notebook; (c) one service's credential, stolen or misused, reaches another
service's collections. Each test fails if the store lets the operation through.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from infra import store
from infra.settings import StackSettings
from schemas import hub_username
from tests.security.egress_helpers import egress_filter_lifted
from tests.security.kernel import Kernel, user_server_token
from tests.stack.helpers import open_session

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("running_stack")]

COLLECTIONS = {
    "gateway": (
        "sessions",
        "saves",
        "gateway_notebooks",
        "gateway_open_files",
        "gateway_session_restores",
        "redeemed_tickets",
        "tenants",
    ),
    "provisioner": ("provisioner_sessions", "provisioner_users"),
    "sync": ("notebooks", "notebook_revisions", "sync_placements", "sync_files"),
}
"""Every collection the services use (services/*/store.py, gateway/tickets.py)."""

KERNEL_ATTACK = """
import json
from pymongo import MongoClient

def attempt(action):
    try:
        action()
        return "allowed"
    except Exception as error:
        return "refused: " + type(error).__name__ + " " + str(error)[-120:]

def attack(**credentials):
    client = MongoClient("mongodb://127.0.0.1:{port}/?authMechanism=PLAIN&authSource=%24external"
                         if credentials else "mongodb://127.0.0.1:{port}/",
                         serverSelectionTimeoutMS=3000, **credentials)
    results = {{
        "insert login ticket": attempt(lambda: client["{gateway_db}"]["login_tickets"].insert_one(
            {{"_id": "{forged}", "hub_user": "victim", "next_path": "/hub/"}})),
        "read notebooks": attempt(lambda: list(client["{sync_db}"]["notebooks"].find().limit(1))),
        "read revisions": attempt(
            lambda: list(client["{sync_db}"]["notebook_revisions"].find().limit(1))),
        "read sessions": attempt(lambda: list(client["{gateway_db}"]["sessions"].find().limit(1))),
        "list databases": attempt(client.list_database_names),
        "create a database": attempt(lambda: client["nbembed_attack"]["x"].insert_one({{}})),
    }}
    client.close()
    return results

print(json.dumps({{
    "no credentials": attack(),
    **{{f"{{user}} with a wrong password": attack(username=user, password="guess-" + user)
       for user in {users!r}}},
}}))
"""


@pytest.fixture(scope="module")
async def ensure_collections(stack_settings: StackSettings) -> None:
    """Every service collection exists, created by its owner as the service would.

    A collection that does not exist answers an empty result to anyone, which
    would make a refused read indistinguishable from an allowed one.
    """
    for service, names in COLLECTIONS.items():
        client = store.credential(stack_settings, service).client(serverSelectionTimeoutMS=5000)
        database = client[store.DATABASES[service]]
        existing = set(await database.list_collection_names())
        for name in set(names) - existing:
            await database.create_collection(name)
        await client.close()


@pytest.fixture(scope="module")
async def admin(stack_settings: StackSettings) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client = store.admin_client(stack_settings, serverSelectionTimeoutMS=5000)
    yield client
    await client.close()


@pytest.fixture
async def attacker(
    stack_settings: StackSettings, gateway: httpx.AsyncClient, hub: httpx.AsyncClient
) -> AsyncIterator[Kernel]:
    """A kernel on a fresh user's server, started the way nbembed starts it."""
    user_id = f"mallory-{uuid.uuid4().hex[:8]}"
    session = await open_session(gateway, user_id=user_id, notebook_name="attack")
    assert session["status"] == "ready", session
    hub_user = hub_username(stack_settings.tenants[0], user_id)
    token = await user_server_token(hub, hub_user)
    async with Kernel(stack_settings.public_hub_url, hub_user, token) as kernel:
        yield kernel
    await hub.delete(f"/users/{hub_user}/server")


@pytest.mark.usefixtures("ensure_collections")
async def test_a_kernel_without_the_password_reaches_nothing(
    stack_settings: StackSettings, attacker: Kernel, admin: AsyncMongoClient[dict[str, Any]]
) -> None:
    forged = f"forged-{uuid.uuid4().hex}"
    users = [store.role(account) for account in store.ACCOUNTS]
    code = KERNEL_ATTACK.format(
        port=stack_settings.mongodb_port,
        gateway_db=store.DATABASES["gateway"],
        sync_db=store.DATABASES["sync"],
        forged=forged,
        users=users,
    )
    # The store's own authentication, as if the egress filter (test_egress.py) were off.
    with egress_filter_lifted(stack_settings):
        result = await attacker.run(code)
    assert result.error is None, f"{result.error} {result.stderr}"
    outcomes: dict[str, dict[str, str]] = json.loads(result.stdout)
    assert set(outcomes) == {"no credentials", *(f"{u} with a wrong password" for u in users)}
    allowed = {
        (who, action)
        for who, actions in outcomes.items()
        for action, outcome in actions.items()
        if not outcome.startswith("refused: OperationFailure")
    }
    assert not allowed, outcomes
    tickets = admin[store.DATABASES["gateway"]]["login_tickets"]
    assert await tickets.find_one({"_id": forged}) is None
    assert "nbembed_attack" not in await admin.list_database_names()


async def _outcome(client: AsyncMongoClient[dict[str, Any]], database: str, name: str) -> str:
    """Try to read, then to write, one collection; say how far the credential got."""
    collection = client[database][name]
    probe = f"least-privilege-probe-{uuid.uuid4().hex}"
    try:
        await collection.find_one({"_id": probe})
    except OperationFailure as error:
        assert "permission denied" in str(error), error
        read = False
    else:
        read = True
    try:
        await collection.insert_one({"_id": probe})
    except OperationFailure as error:
        assert "permission denied" in str(error), error
        return "read-only" if read else "none"
    await collection.delete_one({"_id": probe})
    return "read-write" if read else "write-only"


def _expected(account: str, service: str, name: str) -> str:
    if account == service:
        return "read-write"
    return "none"


@pytest.mark.usefixtures("ensure_collections")
@pytest.mark.parametrize("account", list(store.DATABASES))
async def test_each_credential_reaches_only_its_own_collections(
    stack_settings: StackSettings, admin: AsyncMongoClient[dict[str, Any]], account: str
) -> None:
    client = store.credential(stack_settings, account).client(serverSelectionTimeoutMS=5000)
    try:
        reached = {
            (service, name): await _outcome(client, store.DATABASES[service], name)
            for service, names in COLLECTIONS.items()
            for name in names
        }
    finally:
        await client.close()
    expected = {
        (service, name): _expected(account, service, name)
        for service, names in COLLECTIONS.items()
        for name in names
    }
    assert reached == expected
    # The admin credential (the stack's own) reaches them all: the refusals above
    # come from the credential, not from the collections.
    assert await _outcome(admin, store.DATABASES["sync"], "notebook_revisions") == "read-write"


@pytest.mark.parametrize("account", list(store.DATABASES))
async def test_no_service_can_drop_or_create_databases(
    stack_settings: StackSettings, admin: AsyncMongoClient[dict[str, Any]], account: str
) -> None:
    client = store.credential(stack_settings, account).client(serverSelectionTimeoutMS=5000)
    try:
        for database in store.DATABASES.values():
            with pytest.raises(OperationFailure, match="owner"):
                await client.drop_database(database)
        with pytest.raises(OperationFailure, match="permission denied"):
            await client["nbembed_intruder"]["x"].insert_one({})
    finally:
        await client.close()
    assert set(store.DATABASES.values()) <= set(await admin.list_database_names())
    assert "nbembed_intruder" not in await admin.list_database_names()
