"""Measure: read the worker registry and the provider, and join them into one view per model.

``read`` does the I/O; ``measure`` is a pure function of what was read, so the rules that
decide which instance counts as booting or as a failed launch are tested without Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from autoscaler.policy import ModelObservation
from autoscaler.provider import Instance, Provider
from autoscaler.state import Launch
from core.fleet import FleetSnapshot, WorkerState, WorkerView
from core.store import AutoscalerStore


@dataclass(frozen=True, slots=True)
class Booting:
    instance_id: str
    launched_at: float


@dataclass(frozen=True, slots=True)
class ModelFleet:
    model: str
    queued: int
    slots: int
    ready: tuple[WorkerView, ...]  # live, state "ready"
    draining: tuple[WorkerView, ...]  # live, state "draining"
    booting: tuple[Booting, ...]  # oldest first
    failed: tuple[str, ...]  # instances with no live worker after the boot timeout
    managed: frozenset[str]  # instance ids the provider runs for this model

    def observation(self) -> ModelObservation:
        # Jobs held by draining workers are not counted: capacity that is going away finishes
        # them, and counting them would launch a replacement for work that needs none.
        return ModelObservation(
            queued=self.queued,
            in_flight=sum(w.outstanding for w in self.ready),
            workers=len(self.ready),
            slots_per_worker=self.slots,
            idle_workers=sum(1 for w in self.ready if w.outstanding == 0),
            booting=len(self.booting),
            draining=len(self.draining),
        )


def measure(
    snapshot: FleetSnapshot,
    instances: Sequence[Instance],
    slots: Mapping[str, int],
    launching: Mapping[str, Launch],
    stopped: Mapping[str, float],
    boot_timeout_s: float,
    now: float,
) -> dict[str, ModelFleet]:
    """One :class:`ModelFleet` per model in ``slots`` (the configured models).

    An instance is the provider's, or one we launched that the provider does not list yet
    (it is eventually consistent). Instances we already stopped are left out, as are those
    the provider reports as stopping.
    """
    live = [w for w in snapshot.workers if w.alive]
    claimed = {w.instance_id for w in live if w.instance_id}
    launched_at: dict[str, dict[str, float]] = {m: {} for m in slots}
    for inst in instances:
        if inst.pool in launched_at and inst.state in ("pending", "running") and inst.id not in stopped:
            launched_at[inst.pool][inst.id] = inst.launched_at
    listed = {inst.id for inst in instances}
    for iid, launch in launching.items():
        if launch.pool in launched_at and iid not in stopped and iid not in listed:
            launched_at[launch.pool].setdefault(iid, launch.at)

    fleets = {}
    for model, model_slots in slots.items():
        mine = [w for w in live if w.model == model]
        unclaimed = sorted((t, iid) for iid, t in launched_at[model].items() if iid not in claimed)
        load = snapshot.models.get(model)
        fleets[model] = ModelFleet(
            model=model,
            queued=load.backlog if load else 0,
            slots=model_slots,
            ready=tuple(w for w in mine if w.state == WorkerState.READY),
            draining=tuple(w for w in mine if w.state == WorkerState.DRAINING),
            booting=tuple(Booting(iid, t) for t, iid in unclaimed if now - t < boot_timeout_s),
            failed=tuple(iid for t, iid in unclaimed if now - t >= boot_timeout_s),
            managed=frozenset(launched_at[model]),
        )
    return fleets


async def read(
    store: AutoscalerStore, provider: Provider, models: Iterable[str]
) -> tuple[FleetSnapshot, list[Instance]]:
    """The registry and the provider's instances. Raises ``StoreUnavailable`` or ``ProviderError``."""
    instances = await asyncio.to_thread(provider.list_instances)
    snapshot = await store.snapshot(models)
    return snapshot, instances
