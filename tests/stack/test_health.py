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
