"""Is each component answering? One check per component, used by up, status and tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import httpx
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from pymongo import AsyncMongoClient

from schemas import all_topics

# While we wait for Kafka to listen, its client would log every refused connection.
logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

Check: TypeAlias = Callable[[], Awaitable[bool]]
"""A readiness check: True when the component answers."""


async def kafka_answers(options: dict[str, Any]) -> bool:
    """Kafka answers a metadata request from a client with these options (and credentials)."""
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.describe_cluster()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


async def create_topics(options: dict[str, Any], partitions: int) -> list[str]:
    """Create every nbembed topic that does not exist yet; return the ones created.

    ``options`` are the admin's client options: only the admin may create topics.
    """
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in all_topics() if t not in existing]
        if missing:
            # TopicAlreadyExists: another `up` won the race, which is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
        return missing
    finally:
        await admin.close()


async def mongodb_answers(connect: Callable[..., AsyncMongoClient[dict[str, Any]]]) -> bool:
    """MongoDB (or FerretDB) answers, and accepts the credential ``connect`` uses.

    Listing databases reaches the backend: FerretDB checks a PLAIN password only
    then (``ping`` answers any client). On the local stack this first query
    also loads FerretDB's metadata cache with the admin's view of every database.
    """
    try:
        client = connect(serverSelectionTimeoutMS=2000)
    except OSError:  # the password file is not there yet
        return False
    try:
        await client.admin.command("ping")
        await client.list_database_names()
        return True
    except Exception:
        return False
    finally:
        await client.close()


async def hub_answers(hub_url: str, token: str) -> bool:
    """The hub API accepts the service token."""
    try:
        async with httpx.AsyncClient(timeout=3) as http:
            response = await http.get(
                f"{hub_url}/hub/api/user", headers={"Authorization": f"token {token}"}
            )
        return response.status_code == 200
    except httpx.HTTPError:
        return False


async def http_ready(url: str) -> bool:
    """A service's readiness endpoint answers 2xx."""
    try:
        async with httpx.AsyncClient(timeout=3) as http:
            response = await http.get(url)
        return response.is_success
    except httpx.HTTPError:
        return False


async def wait_until(
    name: str, check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.25
) -> float:
    """Poll ``check`` until it passes; return the seconds it took or raise TimeoutError."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await check():
        if loop.time() - start > timeout:
            raise TimeoutError(f"{name} not ready after {timeout:.0f}s")
        await asyncio.sleep(interval)
    return loop.time() - start
