"""Act: reconcile one model's fleet with the desired worker count.

``plan`` is pure: it picks what to launch, which workers to drain and which instances to
terminate. ``apply`` carries a plan out against the registry and the provider and returns
the autoscaler state updated with what happened.

Scaling in is two steps on two ticks: a worker is first marked ``draining`` (the dispatcher
then sends it nothing new) and its instance is terminated only on a later tick that finds
it holding no job, so no job is ever lost to a scale-in.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

from autoscaler import health
from autoscaler.observe import ModelFleet
from autoscaler.provider import Provider
from autoscaler.state import AutoscalerState, Broken, Launch
from core.errors import ProviderError, StoreUnavailable
from core.fleet import WorkerState, WorkerView
from core.store import AutoscalerStore

log = logging.getLogger("tidal.autoscaler")


@dataclass(frozen=True, slots=True)
class Actions:
    model: str
    launch: int = 0  # workers to launch instances for
    drain: tuple[str, ...] = ()  # worker ids
    undrain: tuple[str, ...] = ()  # draining worker ids put back to work instead of a cold start
    terminate: tuple[str, ...] = ()  # instance ids, failed launches included
    failed: tuple[str, ...] = ()  # instances terminated because no worker came up on them
    notes: tuple[str, ...] = ()
    boot_error: str | None = None  # the newest reason a worker gave for not starting

    def describe(self) -> str:
        parts = []
        if self.launch:
            parts.append(f"launch {self.launch}")
        if self.undrain:
            parts.append(f"reuse draining {', '.join(self.undrain)}")
        if self.drain:
            parts.append(f"drain {', '.join(self.drain)}")
        if self.terminate:
            parts.append(f"terminate {', '.join(self.terminate)}")
        parts.extend(self.notes)
        return "; ".join(parts) or "nothing to do"


def _instances(fleet: ModelFleet) -> dict[str, list[WorkerView]]:
    """The live workers of each instance the provider runs for this model."""
    out: dict[str, list[WorkerView]] = {}
    for w in (*fleet.ready, *fleet.draining):
        if w.instance_id in fleet.managed:
            out.setdefault(w.instance_id, []).append(w)
    return out


def _idle_instances_longest_first(fleet: ModelFleet, undrain: list[str]) -> list[list[WorkerView]]:
    """Instances whose workers are all ready and idle, the one idle longest first.

    An instance is stopped whole (its GPUs are paid for whole), so only an instance with no
    work at all is a candidate.
    """
    idle = []
    for workers in _instances(fleet).values():
        if all(w.state == WorkerState.READY and w.outstanding == 0 and w.id not in undrain for w in workers):
            last = max(w.last_job_at if w.last_job_at is not None else w.started_at for w in workers)
            idle.append((last, min(w.id for w in workers), workers))
    idle.sort(key=lambda t: (t[0], t[1]))
    return [workers for _, _, workers in idle]


def plan(
    fleet: ModelFleet,
    desired: int,
    now: float,
    backoff_until: float | None = None,
    broken: Broken | None = None,
) -> Actions:
    """Actions that move the fleet toward ``desired`` workers; instances are stopped whole."""
    notes: list[str] = []
    current = len(fleet.ready) + sum(b.capacity for b in fleet.booting)
    # A worker still draining has its model loaded: putting it back to work beats a cold start.
    undrain = [w.id for w in fleet.draining if w.instance_id in fleet.managed][: max(0, desired - current)]
    # An instance goes once every worker on it is draining and holds no job.
    drained = [
        iid
        for iid, workers in _instances(fleet).items()
        if all(w.state == WorkerState.DRAINING and w.outstanding == 0 and w.id not in undrain for w in workers)
    ]
    if fleet.failed:
        notes.append(f"{len(fleet.failed)} instance(s) got no worker (boot timeout, or the model cannot run there)")
    current += len(undrain)

    launch = 0
    if desired > current:
        if broken is not None:
            notes.append(f"pool broken: {broken.reason}")
        elif backoff_until is not None and now < backoff_until:
            notes.append(f"launches paused {backoff_until - now:.0f}s after a failed launch")
        else:
            launch = desired - current

    cancel: list[str] = []
    drain: list[str] = []
    excess = current - desired
    if excess > 0:
        # Booting instances go first (newest first): they hold no work and cost the least to lose.
        for b in reversed(fleet.booting):
            if b.capacity <= excess:
                cancel.append(b.instance_id)
                excess -= b.capacity
        for workers in _idle_instances_longest_first(fleet, undrain):
            if len(workers) <= excess:
                drain.extend(w.id for w in sorted(workers, key=lambda w: w.id))
                excess -= len(workers)
        if excess:
            notes.append(f"{excess} more to remove when workers go idle")

    return Actions(
        model=fleet.model,
        launch=launch,
        drain=tuple(drain),
        undrain=tuple(undrain),
        terminate=(*fleet.failed, *cancel, *drained),
        failed=fleet.failed,
        notes=tuple(notes),
        boot_error=fleet.last_boot_error,
    )


async def _mark(store: AutoscalerStore, worker_ids: tuple[str, ...], state: WorkerState) -> None:
    for wid in worker_ids:
        try:
            await store.set_worker_state(wid, state)
        except StoreUnavailable as exc:
            log.warning("could not mark worker %s %s: %s", wid, state, exc)


async def apply(
    actions: Actions,
    store: AutoscalerStore,
    provider: Provider,
    state: AutoscalerState,
    now: float,
    launch_backoff_s: float,
    *,
    digest: str | None = None,
    max_failed_boots: int = 3,
) -> AutoscalerState:
    """Carry out ``actions``; a failed call is logged and retried by a later tick's reconcile.

    ``digest`` is the model's published spec digest, recorded if its failed boots break the pool.
    """
    pool = actions.model
    await _mark(store, actions.undrain, WorkerState.READY)
    if actions.undrain:
        await store.wake_dispatchers(pool)
    await _mark(store, actions.drain, WorkerState.DRAINING)

    if actions.terminate:
        try:
            await asyncio.to_thread(provider.terminate, list(actions.terminate))
        except ProviderError as exc:
            log.warning("%s: terminating %s failed: %s", pool, ", ".join(actions.terminate), exc)
        else:
            stopped = dict(state.stopped) | {i: now for i in actions.terminate}
            launching = {i: v for i, v in state.launching.items() if i not in stopped}
            failed = dict(state.failed_launches)
            if actions.failed:
                failed[pool] = failed.get(pool, 0) + len(actions.failed)
                log.warning("%s: failed launch(es) terminated: %s", pool, ", ".join(actions.failed))
            state = replace(state, stopped=stopped, launching=launching, failed_launches=failed)
            if actions.failed:
                was_broken = pool in state.broken
                state = health.failed(state, pool, len(actions.failed), digest=digest,
                                      last_error=actions.boot_error, limit=max_failed_boots)
                if not was_broken and pool in state.broken:
                    log.error("%s: %s", pool, state.broken[pool].reason)

    if actions.launch and pool not in state.broken:  # the failures just terminated may have broken it
        token = state.launch_token(pool)
        # The sequence moves on once the call has returned either way; only a crash in between
        # leaves it, so the retry reuses the token and the provider launches once.
        seq = dict(state.launch_seq) | {pool: state.launch_seq.get(pool, 0) + 1}
        try:
            started = await asyncio.to_thread(provider.launch, pool, actions.launch, token)
        except ProviderError as exc:
            log.warning("%s: launching %d failed (%s): %s", pool, actions.launch, type(exc).__name__, exc)
            failed = dict(state.failed_launches) | {pool: state.failed_launches.get(pool, 0) + actions.launch}
            backoff = dict(state.backoff_until) | {pool: now + launch_backoff_s}
            state = replace(state, launch_seq=seq, failed_launches=failed, backoff_until=backoff)
        else:
            launching = dict(state.launching) | {i.id: Launch(pool, i.launched_at, i.capacity) for i in started}
            log.info("%s: launched %s", pool, ", ".join(i.id for i in started))
            state = replace(state, launch_seq=seq, launching=launching)
    return state
