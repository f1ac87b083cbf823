"""Helpers for tests/security/test_sync_credentials.py: Kafka taps, save reports, sync's memory."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from infra import kafka, stack, supervisor
from infra.settings import StackSettings
from schemas.envelope import HEADER_PREFIX, SPEC_VERSION


def kafka_options(settings: StackSettings) -> dict[str, Any]:
    """How the tests reach the broker with admin rights."""
    return kafka.client_options(settings)


class Tap:
    """Every message on ``topic`` from now on, decoded, for tests to wait on."""

    def __init__(self, settings: StackSettings, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            topic, auto_offset_reset="latest", **kafka_options(settings)
        )
        self.seen: list[tuple[dict[str, str], bytes]] = []

    async def __aenter__(self) -> Tap:
        await self._consumer.start()
        await self._consumer.seek_to_end()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def wait_for(
        self, match: Callable[[dict[str, str], Any], bool], timeout: float
    ) -> tuple[dict[str, str], Any]:
        """The first message (headers, JSON value) ``match`` accepts, within ``timeout``."""
        async with asyncio.timeout(timeout):
            while True:
                batch = await self._consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        headers = {k: v.decode() for k, v in record.headers}
                        try:
                            value = json.loads(record.value)
                        except ValueError:
                            value = record.value
                        self.seen.append((headers, record.value))
                        if match(headers, value):
                            return headers, value


async def publish_raw(
    settings: StackSettings, topic: str, event_type: str, data: dict[str, Any], key: str
) -> tuple[int, int]:
    """Publish a CloudEvent as an attacker with broker access would; (partition, offset)."""
    producer = AIOKafkaProducer(**kafka_options(settings))
    await producer.start()
    try:
        headers = [
            (f"{HEADER_PREFIX}specversion", SPEC_VERSION.encode()),
            (f"{HEADER_PREFIX}id", f"forged-{time.time_ns()}".encode()),
            (f"{HEADER_PREFIX}source", b"/attacker"),
            (f"{HEADER_PREFIX}type", event_type.encode()),
            ("content-type", b"application/json"),
        ]
        sent = await producer.send_and_wait(
            topic, json.dumps(data).encode(), key=key.encode(), headers=headers
        )
        return sent.partition, sent.offset
    finally:
        await producer.stop()


async def wait_until_consumed(
    settings: StackSettings, group: str, topic: str, partition: int, offset: int, timeout: float
) -> None:
    """Wait until ``group`` committed past ``offset``: its handler is done with the message."""
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        async with asyncio.timeout(timeout):
            while True:
                offsets = await admin.list_consumer_group_offsets(group)
                committed = offsets.get(TopicPartition(topic, partition))
                if committed is not None and committed.offset > offset:
                    return
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def report_server_save(
    settings: StackSettings, server_token: str, path: str
) -> httpx.Response:
    """Report a save as the user's server's post-save hook does."""
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            f"http://127.0.0.1:{settings.gateway_port}/internal/server-saves",
            json={"path": path},
            headers={"Authorization": f"token {server_token}"},
        )


def sync_processes(settings: StackSettings) -> list[psutil.Process]:
    """The running sync service's processes, one per replica."""
    return [
        psutil.Process(int(supervisor.ctl(settings, "pid", name).strip()))
        for name in stack.service_programs(settings, "sync")
    ]


class PeakRss:
    """Samples a process's resident memory every 20 ms in a thread; ``peak`` in bytes."""

    def __init__(self, process: psutil.Process) -> None:
        self._process = process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = process.memory_info().rss
        self.peak = self.start

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
