"""Scraping every replica's /metrics on the real stack (tests/stack and tests/security)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
from prometheus_client.parser import text_string_to_metric_families

from infra import stack
from infra.settings import StackSettings

Sample = tuple[str, dict[str, str], float]


def endpoints(settings: StackSettings) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(service, URL, headers) of each replica's /metrics; the gateway's with its credential."""
    token = settings.metrics_token_file.read_text().strip()
    for index, service in enumerate(stack.SERVICES):
        headers = {"Authorization": f"Bearer {token}"} if service == "gateway" else {}
        for replica in range(1, settings.replicas + 1):
            port = settings.replica_port(index, replica)
            yield service, f"http://127.0.0.1:{port}/metrics", headers


async def scrape_text(settings: StackSettings) -> dict[str, str]:
    """Each endpoint's answer, by URL (asserting it is Prometheus text)."""
    texts = {}
    async with httpx.AsyncClient(timeout=30) as http:
        for _, url, headers in endpoints(settings):
            response = await http.get(url, headers=headers)
            assert response.status_code == 200, (url, response.text[:200])
            assert response.headers["content-type"].startswith("text/plain"), url
            texts[url] = response.text
    return texts


async def scrape(settings: StackSettings) -> list[Sample]:
    """Every sample of every replica (a replica's counters are its own: sum them)."""
    return [
        (sample.name, sample.labels, sample.value)
        for text in (await scrape_text(settings)).values()
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum over replicas of ``name``'s samples whose labels include ``labels``."""
    return sum(
        value
        for sample, have, value in samples
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )
