"""The dispatcher loop: wake on events, route backlog to workers with room, reap dead workers."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace

from core import keys
from core.errors import StoreUnavailable
from core.fleet import FleetSnapshot, WorkerState, WorkerView
from core.settings import POLICY_NAMES, Settings
from core.store import DispatcherStore
from dispatcher.policies import NEEDS_SESSION, Candidate, PolicyState, choose

log = logging.getLogger("tidal.dispatcher")


def candidates(workers: list[WorkerView], bound: Callable[[WorkerView], int]) -> dict[str, Candidate]:
    return {
        w.id: Candidate(w.id, w.weight, w.slots, w.queued, w.running, bound(w) - w.outstanding, w.ewma_run_s)
        for w in workers
        if w.alive and w.state == WorkerState.READY
    }


class Dispatcher:
    def __init__(
        self,
        store: DispatcherStore,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ):
        self.store = store
        self.settings = settings
        self.models = list(settings.models)
        self.clock = clock
        self.rng = rng or random.Random()
        self.policy_state: dict[str, PolicyState] = {m: PolicyState() for m in self.models}
        self.dispatched = 0
        # Models whose last round left backlog with no worker room: a new job for one of them
        # cannot move until a "room" event arrives, so it need not cost a fleet snapshot.
        self.blocked: set[str] = set()
        # The fleet as last read, kept up to date with our own dispatches and "free" events, so a
        # finished job does not cost a re-read of every worker. None: read it again. It only
        # guides the policy; the dispatch script re-checks liveness and the bound atomically.
        self.view: FleetSnapshot | None = None
        self.rounds = 0

    def policy_of(self, model: str, snap: FleetSnapshot) -> str:
        override = snap.models[model].policy_override
        return override if override in POLICY_NAMES else self.settings.models[model].policy

    async def dispatch_round(self, snap: FleetSnapshot | None = None) -> int:
        """Send as many waiting jobs as the fleet has room for; returns how many moved."""
        snap = snap or await self.store.snapshot(self.models)
        self.rounds += 1
        moved, stale = 0, False
        sent: dict[str, int] = {}
        left: dict[str, int] = {}
        for model in self.models:
            left[model] = snap.models[model].backlog
            if not left[model]:
                self.blocked.discard(model)
                continue
            n, left[model], blocked, model_stale = await self._dispatch_model(model, snap, sent)
            moved += n
            stale = stale or model_stale
            if blocked:
                self.blocked.add(model)
            else:
                self.blocked.discard(model)
        self.dispatched += moved
        self.view = None if stale else FleetSnapshot(
            [replace(w, queued=w.queued + sent[w.id]) if w.id in sent else w for w in snap.workers],
            {m: replace(load, backlog=left[m]) for m, load in snap.models.items()},
        )
        return moved

    def apply_events(self, events: list[str]) -> None:
        """Bring the view up to date with events; drop it when only a re-read can."""
        if self.view is None:
            return
        backlog = {m: load.backlog for m, load in self.view.models.items()}
        freed: dict[str, int] = {}
        for payload in events:
            kind, model, worker_id = keys.parse_dispatch_event(payload)
            if kind == keys.EV_JOB and model in backlog:
                backlog[model] += 1
            elif kind == keys.EV_FREE and worker_id:
                freed[worker_id] = freed.get(worker_id, 0) + 1
            else:
                self.view = None
                return

        def free(w: WorkerView, n: int) -> WorkerView:
            running = max(0, w.running - n)
            return replace(w, running=running, queued=max(0, w.queued - (n - (w.running - running))))

        self.view = FleetSnapshot(
            [free(w, freed[w.id]) if w.id in freed else w for w in self.view.workers],
            {m: replace(load, backlog=backlog[m]) for m, load in self.view.models.items()},
        )

    def worth_a_round(self, events: list[str]) -> bool:
        """False when every event is a new job for a model that has no room anyway."""
        for payload in events:
            kind, model, _ = keys.parse_dispatch_event(payload)
            if kind != keys.EV_JOB or model not in self.blocked:
                return True
        return False

    async def _dispatch_model(
        self, model: str, snap: FleetSnapshot, sent: dict[str, int]
    ) -> tuple[int, int, bool, bool]:
        """Dispatch what fits, counting per worker in ``sent``.

        Returns (moved, backlog left, whether backlog is left with no room, whether the view
        turned out to be stale).
        """
        policy = self.policy_of(model, snap)
        prefetch = self.settings.models[model].prefetch
        cands = candidates(snap.workers_of(model), lambda w: prefetch or w.slots)
        moved, backlog = 0, snap.models[model].backlog
        blocked = stale = False
        while backlog > 0 and cands:
            expected, session = "", None
            if policy in NEEDS_SESSION:
                head = await self.store.peek_session(model)
                if head is None:
                    break
                expected, session = head
            wid, self.policy_state[model] = choose(
                policy, list(cands.values()), self.policy_state[model], session=session, u=self.rng.random()
            )
            if wid is None:
                blocked = True
                break
            c = cands[wid]
            outcome, _ = await self.store.dispatch(model, wid, prefetch or c.slots, self.clock(), expected)
            if outcome == "ok":
                cands[wid] = Candidate(c.id, c.weight, c.slots, c.queued + 1, c.running, c.room - 1, c.ewma_run_s)
                sent[wid] = sent.get(wid, 0) + 1
                moved += 1
                backlog -= 1
            elif outcome == "empty":
                backlog = 0
                break
            elif outcome != "moved":  # full, dead or draining: our view was stale
                del cands[wid]
                stale = True
        return moved, backlog, blocked or (backlog > 0 and not cands), stale

    async def sweep(self, snap: FleetSnapshot | None = None) -> None:
        """Re-queue the jobs of workers whose heartbeat expired; expire jobs past their ttl."""
        snap = snap or await self.store.snapshot(self.models)
        now = self.clock()
        for w in snap.workers:
            if not w.alive:
                requeued, failed = await self.store.requeue_worker(w.id, w.model, "dead", now)
                if requeued >= 0:
                    log.warning("worker %s lost: %d job(s) re-queued, %d failed after max attempts",
                                w.id, requeued, failed)
        expired = await self.store.expire_due(now)
        if expired:
            log.info("%d job(s) expired waiting in a queue", expired)

    async def run(self, stop: asyncio.Event) -> None:
        tick_s = self.settings.dispatcher.tick_s
        next_sweep = 0.0
        log.info("dispatcher running for models %s", ", ".join(self.models) or "(none)")
        # Subscribed before reading state, so no event between the two is missed; a subscription
        # made again after a disconnect says resync, and the view is read again.
        async with self.store.dispatch_events() as events:
            while not stop.is_set():
                try:
                    # The sweep's re-read also corrects any drift in the view once per tick.
                    if self.view is None or time.monotonic() >= next_sweep:
                        self.view = await self.store.snapshot(self.models)
                    if time.monotonic() >= next_sweep:
                        await self.sweep(self.view)
                        next_sweep = time.monotonic() + tick_s
                        self.view = await self.store.snapshot(self.models)
                    # A round stops only when nothing more can move, so the next one waits for an
                    # event; any that came in during this round are still queued and wake it at once.
                    await self.dispatch_round(self.view)
                    while self.view is not None and not stop.is_set() and time.monotonic() < next_sweep:
                        batch = await events.next(next_sweep - time.monotonic())
                        if batch.resync:
                            self.view = None
                            break
                        self.apply_events(batch.events)
                        if self.view is None or self.worth_a_round(batch.events):
                            break
                except StoreUnavailable as exc:
                    log.warning("redis unavailable: %s; retrying in %.1fs", exc, tick_s)
                    await asyncio.sleep(tick_s)
