"""Metrics give nothing away: the gateway's /metrics is closed to kernels, hosts and the
operator's admin credential; no endpoint's metrics carry a key, a token, a user id or
notebook content.

The gateway's port is one of the two a kernel may reach (the hub API and the
gateway); its metrics name tenants and their activity, so they answer only the
metrics credential. The workers' health ports are closed to kernels by the
egress rules (tests/security/test_egress.py).
"""

from __future__ import annotations

import uuid

import httpx

from infra.settings import StackSettings
from tests.security.kernel import run_in_kernel, session_users
from tests.stack.metrics_helpers import scrape_text

# Alice's kernel asks the gateway for its metrics with no credential and with her
# server's own token, then writes a notebook carrying a marker, to be saved.
ATTEMPT = """
import json, os, httpx
url = os.environ["NBEMBED_GATEWAY_URL"] + "/metrics"
own = os.environ["JUPYTERHUB_API_TOKEN"]
for headers in ({}, {"Authorization": "Bearer " + own}, {"Authorization": "token " + own}):
    print(httpx.get(url, headers=headers).status_code)
nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"marker": MARKER},
      "cells": [{"cell_type": "code", "id": "m", "execution_count": None, "source": MARKER,
                 "metadata": {}, "outputs": []}]}
json.dump(nb, open(PATH, "w"))
"""


async def test_metrics_are_closed_to_kernels_and_carry_no_secret_or_content(
    gateway: httpx.AsyncClient,
    hub: httpx.AsyncClient,
    stack_settings: StackSettings,
    api_key: str,
    other_api_key: str,
    hub_token: str,
) -> None:
    tenant = stack_settings.tenants[0]
    (alice,) = await session_users(gateway, hub, tenant, ("alice",), "metrics")
    marker = f"metrics-marker-{uuid.uuid4().hex}"
    code = f"MARKER = {marker!r}\nPATH = {alice.path!r}\n" + ATTEMPT
    printed = await run_in_kernel(stack_settings.public_hub_url, alice, code)
    assert printed.split() == ["401", "401", "401"]
    saved = await gateway.post(f"/v1/sessions/{alice.session_id}/saves")
    assert saved.status_code == 202, saved.text
    outcome = await gateway.get(f"/v1/saves/{saved.json()['id']}", params={"wait": 30})
    assert outcome.json()["status"] == "stored", outcome.text

    # Hosts and the operator's admin credential do not read them either.
    base = f"http://127.0.0.1:{stack_settings.gateway_port}/metrics"
    admin = stack_settings.admin_token_file.read_text().strip()
    async with httpx.AsyncClient(timeout=30) as http:
        for key in (api_key, other_api_key, admin):
            answer = await http.get(base, headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 401

    secrets = {
        "a tenant's API key": api_key,
        "another tenant's API key": other_api_key,
        "the hub service token": hub_token,
        "the user's server token": alice.token,
        "the admin token": admin,
        "the ops token": stack_settings.hub_ops_token_file.read_text().strip(),
        "notebook content": marker,
        "the hub user": alice.hub_user,
        "the session id": alice.session_id,
    }
    for url, text in (await scrape_text(stack_settings)).items():
        leaked = [what for what, value in secrets.items() if value in text]
        assert leaked == [], (url, leaked)
