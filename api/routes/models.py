"""Models: their load and scaling, and switching a model's dispatch policy at run time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import Context
from api.schemas import ModelStatus, PolicyChange
from core.fleet import FleetSnapshot, WorkerState
from core.settings import ModelSettings

router = APIRouter()


def model_status(name: str, cfg: ModelSettings, snap: FleetSnapshot) -> dict[str, Any]:
    load = snap.models[name]
    live = [w for w in snap.workers_of(name) if w.alive]
    return ModelStatus(
        name=name, version=cfg.version,
        policy=load.policy_override or cfg.policy,
        backlog=load.backlog, in_flight=snap.in_flight(name),
        workers=sum(w.state == WorkerState.READY for w in live),
        workers_draining=sum(w.state == WorkerState.DRAINING for w in live),
        workers_desired=load.scale.desired if load.scale else None,
        scale_reason=load.scale.reason if load.scale else None,
        broken=(load.scale.broken or None) if load.scale else None, max_queue_len=cfg.max_queue_len,
    ).model_dump()


@router.get("/v1/models")
async def list_models(ctx: Context) -> dict[str, Any]:
    snap = await ctx.store.snapshot(ctx.settings.models)
    return {"models": [model_status(m, cfg, snap) for m, cfg in ctx.settings.models.items()]}


@router.put("/v1/models/{model}/policy")
async def set_policy(model: str, body: PolicyChange, ctx: Context) -> dict[str, Any]:
    cfg = ctx.model(model)
    await ctx.store.set_policy(model, body.policy)
    return model_status(model, cfg, await ctx.store.snapshot([model]))
