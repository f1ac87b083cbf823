"""``GET /metrics``: the gateway's Prometheus metrics, for the operator's Prometheus only.

Not public: the gateway's port is open to host backends, host pages and every
user's server (a kernel can call it), and the metrics name tenants and show
their activity. Prometheus shows its own credential
(``NBEMBED_GATEWAY_METRICS_TOKEN_FILE``, a Bearer token), which no tenant,
browser or server holds; a tenant's API key answers 401 like no key at all.
The workers serve theirs on their health ports, which only the cluster's
network reaches. Left out of the OpenAPI: it is the operator's, not the
hosts' API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials

from services.common.metrics import PATH, exposition
from services.gateway.deps import GatewayDep, bearer, require_secret

router = APIRouter(include_in_schema=False)


@router.get(PATH)
async def metrics(
    parts: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Response:
    """This replica's metrics in Prometheus text format, for the metrics credential alone."""
    require_secret(credentials, parts.settings.metrics_token, "metrics")
    body, content_type = exposition()
    return Response(body, media_type=content_type)
