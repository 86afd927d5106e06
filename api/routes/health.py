"""Health: 200 when Redis answers, 503 (with Retry-After) when it does not."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import Context

router = APIRouter()


@router.get("/healthz")
async def healthz(ctx: Context) -> dict[str, Any]:
    await ctx.store.ping()
    return {"ok": True}
