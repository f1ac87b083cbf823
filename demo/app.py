"""The demo host app's backend: its own small API over nbembed's gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, HTTPException, Query, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from demo.settings import DemoSettings

PAGE = (Path(__file__).parent / "static" / "index.html").read_text()


class OpenRequest(BaseModel):
    user: str
    notebook_id: str | None = None
    name: str | None = None


def create_app(settings: DemoSettings) -> FastAPI:
    """The demo's backend: the API key never leaves it."""
    assert settings.api_key is not None
    gateway = httpx.AsyncClient(
        base_url=settings.gateway_url,
        headers={"Authorization": f"Bearer {settings.api_key.get_secret_value()}"},
        timeout=60,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await gateway.aclose()

    app = FastAPI(title="nbembed demo host app", lifespan=lifespan)

    def checked(response: httpx.Response) -> Any:
        if response.is_error:
            raise HTTPException(response.status_code, response.json().get("detail", "error"))
        return response.json() if response.content else None

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.replace("{{GATEWAY}}", settings.public_gateway_url)

    @app.get("/api/notebooks")
    async def notebooks(user: Annotated[str, Query()]) -> Any:
        return checked(await gateway.get("/v1/notebooks", params={"user_id": user, "limit": 100}))

    @app.post("/api/open")
    async def open_notebook(body: OpenRequest) -> dict[str, Any]:
        """Open a session and wait (long-poll) until its iframe URL is ready."""
        request: dict[str, Any] = {"user_id": body.user}
        if body.notebook_id:
            request["notebook_id"] = body.notebook_id
        else:
            request["notebook_name"] = body.name or "Untitled"
        session = checked(await gateway.post("/v1/sessions", json=request))
        token = session["browser_token"]
        while session["status"] not in ("ready", "failed", "ended"):
            session = checked(
                await gateway.get(
                    f"/v1/sessions/{session['id']}",
                    params={"wait": 25, "status": session["status"]},
                )
            )
        if session["status"] != "ready":
            reason = (session.get("failure") or {}).get("reason", session["status"])
            raise HTTPException(502, f"the notebook could not open: {reason}")
        return {
            "session_id": session["id"],
            "notebook_id": session["notebook_id"],
            "iframe_url": session["iframe_url"],
            "notebook_origin": session["notebook_origin"],
            "browser_token": token,
            "restricted": session["restricted"],
        }

    @app.delete("/api/sessions/{session_id}", status_code=204)
    async def close(session_id: str) -> Response:
        checked(await gateway.delete(f"/v1/sessions/{session_id}"))
        return Response(status_code=204)

    @app.delete("/api/notebooks/{notebook_id}", status_code=204)
    async def delete(notebook_id: str) -> Response:
        checked(await gateway.delete(f"/v1/notebooks/{notebook_id}"))
        return Response(status_code=204)

    return app
