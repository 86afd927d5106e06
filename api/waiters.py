"""Long-poll support: one pub/sub subscription per API process wakes every waiter of a job."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import redis.asyncio as aioredis
import redis.exceptions

from core import keys

log = logging.getLogger("tidal.api")


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

    async def listen(self, client: aioredis.Redis) -> None:
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.CH_DONE)
                self.notify_all()
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self.notify(message["data"])
            except redis.exceptions.RedisError as exc:
                log.warning("completion listener lost redis (%s); reconnecting", exc)
                await asyncio.sleep(0.5)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
