"""Prometheus metrics: what each service exposes, and that the dashboard and the README
name only metrics the code registers (so neither can drift from the code).

The stack test (tests/stack/test_metrics.py) scrapes the running services.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import jupyterhub.metrics  # noqa: F401  (registers the hub's metrics: the dashboard shows them)
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker
from prometheus_client import REGISTRY

import services.gateway.app as gateway_app
import services.provisioner.app
import services.sync.app  # noqa: F401  (their modules define the domain metrics)
from services.common.health import health_routes
from services.common.internal import with_internal_api
from services.common.metrics import exposed_names, kafka_middleware, registered_names
from services.gateway.settings import GatewaySettings
from services.gateway.tenants import load_file

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "nbembed.json"
QUERIED = re.compile(r"\b(?:nbembed|faststream|jupyterhub)_[a-z0-9_]+")
KEY = "unit-test-key"

kafka_middleware("unit-test")  # FastStream registers its metrics with the first broker


def _requests(route: str, method: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "nbembed_http_requests_total", {"route": route, "method": method, "status": status}
    )
    return value or 0.0


def test_worker_http_is_counted_by_route_template_and_serves_metrics() -> None:
    internal = FastAPI()

    @internal.get("/tokens/{hub_user}")
    async def token(hub_user: str) -> dict[str, str]:
        return {"user": hub_user}

    worker = with_internal_api(
        AsgiFastStream(KafkaBroker(), asgi_routes=health_routes(KafkaBroker())), internal
    )
    client = TestClient(worker)  # no lifespan: the broker never starts
    before = _requests("/internal/tokens/{hub_user}", "GET", "200")
    assert client.get("/internal/tokens/alice").status_code == 200
    assert client.get("/internal/tokens/bob").status_code == 200
    assert _requests("/internal/tokens/{hub_user}", "GET", "200") == before + 2
    unknown = _requests("<unmatched>", "GET", "404")
    assert client.get("/no/such/path/12345").status_code == 404
    assert _requests("<unmatched>", "GET", "404") == unknown + 1
    assert _requests("/no/such/path/12345", "GET", "404") == 0
    brewed = _requests("/healthz", "OTHER", "405")
    assert client.request("BREW", "/healthz").status_code == 405  # any token is a method
    assert _requests("/healthz", "OTHER", "405") == brewed + 1
    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert 'nbembed_http_requests_total{method="GET",route="/internal/tokens/{hub_user}"' in (
        scraped.text
    )


@pytest.fixture
def gateway(tmp_path: Path) -> TestClient:
    tenants = tmp_path / "tenants.json"
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    tenants.write_text(json.dumps([{"id": "demo", "api_key_sha256": digest}]))
    settings = GatewaySettings(
        tenants_file=tenants,
        internal_token="t",
        ticket_key="k" * 32,
        hub_login_token="t",
        admin_token="operator",
        metrics_token="prometheus",
    )
    app = gateway_app.create_app(settings)
    app.state.gateway.tenants.replace(load_file(tenants))
    return TestClient(app)  # no lifespan: Kafka and the store are never reached


@pytest.mark.parametrize("key", [None, KEY, "operator", "prometheusX"])
def test_gateway_metrics_need_the_metrics_credential(gateway: TestClient, key: str | None) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    refused = gateway.get("/metrics", headers=headers)
    assert refused.status_code == 401
    assert "nbembed" not in refused.text.replace("nbembed.dev", "")


def test_gateway_metrics_answer_prometheus_and_count_requests(gateway: TestClient) -> None:
    assert gateway.get("/v1/sessions/abc").status_code == 401  # refused before any store read
    scraped = gateway.get("/metrics", headers={"Authorization": "Bearer prometheus"})
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=")
    assert 'route="/v1/sessions/{session_id}"' in scraped.text
    assert "/v1/sessions/abc" not in scraped.text
    assert "/metrics" not in gateway.app.openapi()["paths"]  # type: ignore[attr-defined]


def _dashboard_queries() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [v.get("query", "") for v in dashboard["templating"]["list"]]
    return {name for expr in exprs for name in QUERIED.findall(expr)}


def test_the_dashboard_queries_only_metrics_the_code_registers() -> None:
    queried = _dashboard_queries()
    assert queried, "the dashboard queries no metric"
    assert queried - registered_names() == set()


def test_the_dashboard_shows_every_nbembed_metric() -> None:
    shown = {re.sub(r"_(bucket|count|sum)$", "", name) for name in _dashboard_queries()}
    assert exposed_names("nbembed_") - shown == set()


def test_the_readme_lists_exactly_the_registered_nbembed_metrics() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(nbembed_[a-z0-9_]+)`", section))
    assert listed == exposed_names("nbembed_")
