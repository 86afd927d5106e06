"""Workers: every registered worker and what it holds."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import Context

router = APIRouter()


@router.get("/v1/workers")
async def list_workers(ctx: Context) -> dict[str, Any]:
    snap = await ctx.store.snapshot(ctx.settings.models)
    return {"workers": [w.public() for w in snap.workers]}
