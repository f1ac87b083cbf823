"""Every service's /metrics on the real stack, and the metrics moving after real work.

Each replica is scraped on its own port and the counters summed: the request
or event may land on either replica.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from infra.settings import StackSettings
from schemas import ServerReady, dlq_topic
from tests.stack.helpers import eventually, open_session
from tests.stack.metrics_helpers import scrape, scrape_text, total


async def test_every_replica_and_the_hub_serve_metrics(stack_settings: StackSettings) -> None:
    texts = await scrape_text(stack_settings)
    assert len(texts) == 3 * stack_settings.replicas
    for url, text in texts.items():
        assert "nbembed_http_requests_total" in text, url
        assert "faststream_received_processed_messages_total" in text, url
        assert "process_resident_memory_bytes" in text, url
    ops = stack_settings.hub_ops_token_file.read_text().strip()
    async with httpx.AsyncClient(base_url=stack_settings.public_hub_url, timeout=30) as hub:
        refused = await hub.get("/hub/metrics")
        answered = await hub.get("/hub/metrics", headers={"Authorization": f"token {ops}"})
    assert refused.status_code == 403  # authenticate_prometheus: read:metrics only
    assert answered.status_code == 200
    assert "jupyterhub_running_servers" in answered.text


async def test_a_session_and_a_save_move_the_histograms(
    gateway: httpx.AsyncClient, stack_settings: StackSettings
) -> None:
    tenant = stack_settings.tenants[0]
    before = await scrape(stack_settings)
    user = f"metrics-{uuid.uuid4().hex[:12]}"  # a new hub user: its server is spawned
    session = await open_session(gateway, user_id=user, notebook_name="Metrics")
    assert session["status"] == "ready", session
    saved = await gateway.post(f"/v1/sessions/{session['id']}/saves")
    assert saved.status_code == 202, saved.text
    outcome = await gateway.get(f"/v1/saves/{saved.json()['id']}", params={"wait": 30})
    assert outcome.json()["status"] == "stored", outcome.text
    assert (await gateway.delete(f"/v1/sessions/{session['id']}")).status_code == 204
    after = await scrape(stack_settings)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("nbembed_time_to_notebook_seconds_count", tenant=tenant) >= 1
    assert moved("nbembed_time_to_notebook_seconds_sum", tenant=tenant) > 0
    assert moved("nbembed_save_to_durable_seconds_count", tenant=tenant) >= 1
    for status in ("requested", "provisioning", "ready", "ended"):
        assert moved("nbembed_session_transitions_total", tenant=tenant, status=status) >= 1
    assert moved("nbembed_hub_spawn_seconds_count") >= 1
    assert moved("nbembed_http_requests_total", route="/v1/sessions", status="202") >= 1
    assert moved("nbembed_http_requests_total", route="/v1/saves/{save_id}", status="200") >= 1
    for service in ("gateway", "provisioner", "sync"):
        app = f"nbembed-{service}"
        assert moved("faststream_received_processed_messages_total", app_name=app) >= 1, app
        assert moved("faststream_published_messages_total", app_name=app) >= 1, app


async def test_dead_letters_are_counted_where_written_and_where_read(
    stack_settings: StackSettings, kafka_options: dict[str, Any]
) -> None:
    topic = ServerReady.topic
    written = ("nbembed_dead_letters_total", {"topic": topic, "group": "nbembed-sync"})
    read = ("nbembed_dead_letters_read_total", {"topic": dlq_topic(topic), "outcome": "ignored"})
    before = await scrape(stack_settings)
    producer = AIOKafkaProducer(**kafka_options)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"not an event", key=b"metrics-poison")
    finally:
        await producer.stop()

    async def counted() -> bool:
        after = await scrape(stack_settings)
        return all(
            total(after, name, **labels) > total(before, name, **labels)
            for name, labels in (written, read)
        )

    await eventually(counted, timeout=30, interval=0.5)
