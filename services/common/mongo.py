"""The services' MongoDB client: one place that turns settings into a connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure, DuplicateKeyError

from services.common.settings import (
    STORE_ANSWER_SECONDS,
    STORE_SELECTION_SECONDS,
    ServiceSettings,
)

T = TypeVar("T")


async def upsert(write: Callable[[], Awaitable[T]]) -> T:
    """Run an upsert, and once more if it lost a race to insert the same ``_id``.

    Two upserts of one new ``_id`` at once: MongoDB retries the loser itself,
    FerretDB answers it ``DuplicateKeyError``. Run again, the loser is an update of
    the document the winner inserted, which is what it meant. (Seen in CI: a save
    reported by its server and its page at once lost its outbox marker's race, was
    taken for the other report's, and never published.)
    """
    try:
        return await write()
    except DuplicateKeyError:
        return await write()


def connect(settings: ServiceSettings) -> AsyncMongoClient[dict[str, Any]]:
    """A client with the service's own credential when it has one.

    The password is read from its file here, at start: it never sits in the
    process environment or command line (where other local accounts and logs
    could see it). Connections open lazily, on first use.
    """
    credentials: dict[str, Any] = {}
    if settings.mongodb_username is not None and settings.mongodb_password_file is not None:
        credentials = {
            "username": settings.mongodb_username,
            "password": settings.mongodb_password_file.read_text().strip(),
        }
    return AsyncMongoClient(
        settings.mongodb_uri.get_secret_value(),
        serverSelectionTimeoutMS=int(STORE_SELECTION_SECONDS * 1000),
        # TCP connects and the client's own checks of the store (20 s by default): a hung
        # store is marked unknown within this, and calls then fail at once instead of
        # queueing on it.
        connectTimeoutMS=int(STORE_SELECTION_SECONDS * 1000),
        socketTimeoutMS=int(STORE_ANSWER_SECONDS * 1000),
        tz_aware=True,
        **credentials,
    )


def store_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the store could not be reached (down, restarting, unreachable).

    PyMongo's connection errors (refused, closed, server selection timed out, no
    answer within ``STORE_ANSWER_SECONDS``: a hung store) are all
    `ConnectionFailure`s; an error the store answered with is not.
    """
    return isinstance(exc, ConnectionFailure)
