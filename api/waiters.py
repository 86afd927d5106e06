"""Long-poll support: one subscription per API process wakes every waiter of a job."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from core.store.events import EventStream


class CompletionWaiters:
    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)

    def register(self, job_id: str) -> asyncio.Event:
        ev = asyncio.Event()
        self._events[job_id].add(ev)
        return ev

    def unregister(self, job_id: str, ev: asyncio.Event) -> None:
        group = self._events.get(job_id)
        if group is not None:
            group.discard(ev)
            if not group:
                del self._events[job_id]

    def notify(self, job_id: str) -> None:
        for ev in self._events.get(job_id, ()):
            ev.set()

    def notify_all(self) -> None:
        """Wake everyone to re-read state, e.g. after a reconnect when events may have been missed."""
        for group in self._events.values():
            for ev in group:
                ev.set()

    async def listen(self, done_events: EventStream) -> None:
        """Wake the waiters of each job that ends; every waiter after a reconnect. Runs until cancelled."""
        async with done_events as stream:
            async for batch in stream:
                if batch.resync:
                    self.notify_all()
                for job_id in batch.events:
                    self.notify(job_id)
