"""Serves the host JS SDK (an ES module and its TypeScript declarations)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).parent / "static"

router = APIRouter(prefix="/sdk", tags=["sdk"])


@router.get(
    "/nbembed.js",
    response_class=FileResponse,
    responses={200: {"content": {"text/javascript": {"schema": {"type": "string"}}}}},
)
async def sdk_module() -> FileResponse:
    """The SDK: ``import { mount } from "<gateway>/sdk/nbembed.js"``."""
    return FileResponse(
        STATIC / "nbembed.js",
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get(
    "/nbembed.d.ts",
    response_class=FileResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def sdk_types() -> FileResponse:
    """TypeScript declarations of the SDK."""
    return FileResponse(STATIC / "nbembed.d.ts", media_type="text/plain")
