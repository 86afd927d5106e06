"""Workers: every registered worker and what it holds."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import SettingsDep, StoreDep

router = APIRouter()


@router.get("/v1/workers")
async def list_workers(store: StoreDep, settings: SettingsDep) -> dict[str, Any]:
    snap = await store.snapshot(settings.models)
    return {"workers": [w.public() for w in snap.workers]}
