"""Health: 200 when Redis answers, 503 (with Retry-After) when it does not."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import StoreDep

router = APIRouter()


@router.get("/healthz")
async def healthz(store: StoreDep) -> dict[str, Any]:
    await store.ping()
    return {"ok": True}
