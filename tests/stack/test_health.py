"""Ops can ask each service whether it is alive and whether it is ready."""

from __future__ import annotations

import httpx

from infra.settings import StackSettings


async def test_gateway_health_and_readiness(stack_settings: StackSettings) -> None:
    base = f"http://127.0.0.1:{stack_settings.gateway_port}"
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"kafka": "ok", "mongodb": "ok"}


async def test_workers_expose_liveness_and_readiness(stack_settings: StackSettings) -> None:
    for port in (stack_settings.provisioner_health_port, stack_settings.sync_health_port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 204


async def test_cors_allows_the_tenants_origins_only(stack_settings: StackSettings) -> None:
    base = f"http://127.0.0.1:{stack_settings.gateway_port}"
    preflight = {"Access-Control-Request-Method": "POST"}
    async with httpx.AsyncClient(base_url=base) as http:
        allowed = stack_settings.allowed_origins[0]
        ok = await http.options("/v1/sessions", headers={**preflight, "Origin": allowed})
        assert ok.headers.get("access-control-allow-origin") == allowed
        evil = await http.options(
            "/v1/sessions", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in evil.headers
