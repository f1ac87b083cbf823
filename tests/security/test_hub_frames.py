"""Attack: a tenant's host page frames hub pages that are not about its own users.

Framed, the hub's token page is a clickjacking target, and a page about another
tenant's user shows that user's name and state. The hub lets a tenant's origins
frame only its pages about that tenant's users (infra/hub/hub_frames.py); here a
tenant created for the attack asks for the hub's other pages, pages about the
demo tenant's users, and paths crafted to contain a path about its own user.
The test fails if any answer lets the attacker's origin frame it.
"""

from __future__ import annotations

import uuid

import pytest

from infra.settings import StackSettings
from schemas import hub_username
from tests.stack.helpers import eventually
from tests.stack.test_tenants_admin import admin, hub_page_csp, status_is

pytestmark = pytest.mark.stack


async def test_a_tenants_origin_frames_no_hub_page_but_those_about_its_own_users(
    stack_settings: StackSettings,
) -> None:
    tenant_id = "m" + uuid.uuid4().hex[:8]
    origin = f"https://{tenant_id}.attacker.example.test"
    key = admin(stack_settings, "create", tenant_id, "--origin", origin)["api_key"]
    try:
        await eventually(lambda: status_is(stack_settings, key, 200))
        mine = hub_username(tenant_id, "mallory")

        async def own_page_framed() -> bool:
            # The control: the hub knows the attacker's origin and uses it where it may.
            return origin in await hub_page_csp(stack_settings, f"spawn-pending/{mine}")

        await eventually(own_page_framed)
        victim = hub_username("demo", "victim")
        pages = [
            "token",
            "home",
            "admin",
            "login",
            f"spawn-pending/{victim}",
            f"spawn/{victim}",
            f"user/{victim}/lab",
            f"user-redirect/hub/user/{mine}",
            f"token/hub/spawn/{mine}",
            f"home/hub/spawn-pending/{mine}",
            f"spawn-pending/{mine}%2F..%2F..%2Ftoken",
        ]
        framed = [p for p in pages if origin in await hub_page_csp(stack_settings, p)]
        assert framed == [], f"the attacker's origin may frame {framed}"
    finally:
        admin(stack_settings, "disable", tenant_id)
