"""How long a store call may wait, and the bounds that depend on it (checked at start).

A store that accepts connections and never answers (hung, frozen) must be told
as "store unavailable", which handlers wait out, and never outlast sync's
placement bound, which fails a session as its server's fault.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pymongo.errors import NetworkTimeout, OperationFailure

from services.common.mongo import connect, store_unavailable
from services.common.settings import (
    STORE_ANSWER_SECONDS,
    STORE_SELECTION_SECONDS,
    ServiceSettings,
)
from services.sync.settings import SyncSettings


async def test_a_store_call_gives_up_when_the_store_does_not_answer() -> None:
    client = connect(ServiceSettings())
    try:
        assert client.options.pool_options.socket_timeout == STORE_ANSWER_SECONDS
        assert client.options.pool_options.connect_timeout == STORE_SELECTION_SECONDS
        assert client.options.server_selection_timeout == STORE_SELECTION_SECONDS
    finally:
        await client.close()


def test_no_answer_is_the_store_being_unavailable_an_error_answer_is_not() -> None:
    assert store_unavailable(NetworkTimeout("timed out"))
    assert not store_unavailable(OperationFailure("bad query"))


def test_sync_refuses_a_placement_bound_a_hung_store_call_could_outlast() -> None:
    hung_store_call = STORE_SELECTION_SECONDS + 2 * STORE_ANSWER_SECONDS
    SyncSettings(provisioner_token="t", internal_token="t")  # the defaults fit
    SyncSettings(provisioner_token="t", internal_token="t", placement_seconds=hung_store_call + 0.1)
    with pytest.raises(ValidationError, match="placement_seconds must exceed"):
        SyncSettings(provisioner_token="t", internal_token="t", placement_seconds=hung_store_call)


def test_an_outage_wait_that_would_outlast_kafkas_poll_interval_is_refused() -> None:
    ServiceSettings()  # the defaults fit
    with pytest.raises(ValidationError, match="below Kafka's poll interval"):
        ServiceSettings(store_outage_seconds=250)  # fits if a try were selection alone
