"""Measure: read the worker registry and the provider, and join them into one view per model.

``read`` does the I/O; ``measure`` is a pure function of what was read, so the rules that
decide which instance counts as booting or as a failed launch are tested without Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from autoscaler.policy import ModelObservation
from autoscaler.provider import Instance, Provider
from autoscaler.state import Launch
from core.fleet import Counters, FleetSnapshot, WorkerState, WorkerView
from core.registry import BootError
from core.store import AutoscalerStore


@dataclass(frozen=True, slots=True)
class Booting:
    instance_id: str
    launched_at: float
    capacity: int = 1  # workers it will run


@dataclass(frozen=True, slots=True)
class Observed:
    """What one tick read: the worker registry, the provider, and the model registry."""

    snapshot: FleetSnapshot
    instances: list[Instance]
    digests: dict[str, str | None]  # each model's published spec digest; None: not registered
    boot_errors: dict[str, dict[str, BootError]]  # per model, by instance id or host


@dataclass(frozen=True, slots=True)
class ModelFleet:
    model: str
    queued: int
    slots: int
    ready: tuple[WorkerView, ...]  # live, state "ready"
    draining: tuple[WorkerView, ...]  # live, state "draining"
    booting: tuple[Booting, ...]  # oldest first
    failed: tuple[str, ...]  # instances with no live worker after the boot timeout, or whose worker gave up
    managed: frozenset[str]  # instance ids the provider runs for this model
    registered: tuple[str, ...] = ()  # instances we launched whose workers have now registered
    last_boot_error: str | None = None  # the newest reason a worker of this model gave for not starting
    at: float = 0.0  # when it was measured
    totals: Counters = field(default_factory=Counters)  # the model's running totals as read
    since: Counters = field(default_factory=Counters)  # what happened since the last tick's totals

    def observation(self) -> ModelObservation:
        # Jobs held by draining workers are not counted: capacity that is going away finishes
        # them, and counting them would launch a replacement for work that needs none.
        return ModelObservation(
            queued=self.queued,
            in_flight=sum(w.outstanding for w in self.ready),
            workers=len(self.ready),
            slots_per_worker=self.slots,
            idle_workers=sum(1 for w in self.ready if w.outstanding == 0),
            booting=sum(b.capacity for b in self.booting),
            draining=len(self.draining),
            arrivals=self.since.arrivals,
            completions=self.since.completions,
            completed_run_s=self.since.run_s,
            booting_age_s=tuple(max(0.0, self.at - b.launched_at) for b in self.booting for _ in range(b.capacity)),
        )


def _gave_up(errors: Mapping[str, BootError], instance_id: str, launched_at: float) -> bool:
    """Its worker exited for good after this launch (an earlier instance with the same id cannot be)."""
    e = errors.get(instance_id)
    return e is not None and e.final and e.at >= launched_at


def measure(
    snapshot: FleetSnapshot,
    instances: Sequence[Instance],
    slots: Mapping[str, int],
    launching: Mapping[str, Launch],
    stopped: Mapping[str, float],
    boot_timeout_s: float,
    now: float,
    boot_errors: Mapping[str, Mapping[str, BootError]] | None = None,
    counted: Mapping[str, Counters] | None = None,
) -> dict[str, ModelFleet]:
    """One :class:`ModelFleet` per model in ``slots`` (the configured models).

    ``counted`` holds the models' running totals as the last tick read them; each fleet
    carries what happened since (nothing on a model's first tick).

    An instance is the provider's, or one we launched that the provider does not list yet
    (it is eventually consistent). Instances we already stopped are left out, as are those
    the provider reports as stopping. An unclaimed instance fails at its boot timeout, or at
    once when its worker reported a final boot error (its model cannot run there).
    """
    live = [w for w in snapshot.workers if w.alive]
    claimed = {w.instance_id for w in live if w.instance_id}
    found: dict[str, dict[str, tuple[float, int]]] = {m: {} for m in slots}  # model -> id -> (at, capacity)
    for inst in instances:
        if inst.pool in found and inst.state in ("pending", "running") and inst.id not in stopped:
            found[inst.pool][inst.id] = (inst.launched_at, inst.capacity)
    listed = {inst.id for inst in instances}
    for iid, launch in launching.items():
        if launch.pool in found and iid not in stopped and iid not in listed:
            found[launch.pool].setdefault(iid, (launch.at, launch.capacity))

    fleets = {}
    for model, model_slots in slots.items():
        mine = [w for w in live if w.model == model]
        errors = (boot_errors or {}).get(model, {})
        unclaimed = sorted((t, iid, cap) for iid, (t, cap) in found[model].items() if iid not in claimed)
        failed = {iid for t, iid, _ in unclaimed if now - t >= boot_timeout_s or _gave_up(errors, iid, t)}

        newest = max(errors.values(), key=lambda e: e.at, default=None)
        load = snapshot.models.get(model)
        fleets[model] = ModelFleet(
            model=model,
            queued=load.backlog if load else 0,
            slots=model_slots,
            ready=tuple(w for w in mine if w.state == WorkerState.READY),
            draining=tuple(w for w in mine if w.state == WorkerState.DRAINING),
            booting=tuple(Booting(iid, t, cap) for t, iid, cap in unclaimed if iid not in failed),
            failed=tuple(iid for _, iid, _ in unclaimed if iid in failed),
            managed=frozenset(found[model]),
            registered=tuple(
                iid for iid, launch in launching.items() if launch.pool == model and iid in claimed
            ),
            last_boot_error=newest.error if newest else None,
            at=now,
            totals=load.counters if load else Counters(),
            since=(load.counters if load else Counters()).since((counted or {}).get(model)),
        )
    return fleets


async def read(store: AutoscalerStore, provider: Provider, models: Iterable[str]) -> Observed:
    """The registries and the provider's instances. Raises ``StoreUnavailable`` or ``ProviderError``."""
    models = list(models)
    instances = await asyncio.to_thread(provider.list_instances)
    snapshot = await store.snapshot(models)
    digests = await store.model_digests(models)
    errors = await store.boot_errors(models)
    return Observed(snapshot, instances, digests, errors)
