"""Pub/sub events as batches, from a subscription that reconnects by itself.

Events are hints (a job ended, a slot freed, a job arrived): whoever gets one re-reads state.
A subscription that was lost and made again may have missed some, so the first batch after it
says ``resync``: its consumer re-reads everything it keeps (the dispatcher its fleet view, the
API every long poll). No error leaves the stream while Redis is away; it retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import redis.exceptions as rex

from core import keys
from core.errors import StoreUnavailable
from core.store.backend import Backend
from core.store.errors import mapped, translated

log = logging.getLogger("tidal.store")

_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 2.0


@dataclass(frozen=True, slots=True)
class Batch:
    events: list[str] = field(default_factory=list)
    # The subscription was made again: events may have been missed, re-read what you keep.
    resync: bool = False


class EventStream:
    """The messages of some channels. ``async with`` subscribes; :meth:`next` waits for a batch."""

    def __init__(self, client: Any, channels: tuple[str, ...]):
        self._client = client
        self._channels = channels
        self._pubsub: Any = None
        self._resync = False
        self._retry_s = _RETRY_FIRST_S
        self._lost_since: float | None = None

    async def __aenter__(self) -> EventStream:
        # The caller reads state after this, so a first subscription needs no resync; one that
        # fails now is retried by next(), and its success then says resync.
        if await self._subscribe():
            self._resync = False
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._drop()

    def __aiter__(self) -> AsyncIterator[Batch]:
        return self._forever()

    async def _forever(self) -> AsyncIterator[Batch]:
        while True:
            yield await self.next()

    async def next(self, timeout_s: float | None = None) -> Batch:
        """At least one event or a resync, or an empty batch after ``timeout_s`` (``None``: no limit).

        Every event already received comes with the first, so a burst is one batch.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + max(0.0, timeout_s)
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            if self._pubsub is None and not await self._subscribe():
                if left == 0.0:
                    return Batch()
                await asyncio.sleep(self._retry_s if left is None else min(self._retry_s, left))
                self._retry_s = min(_RETRY_MAX_S, self._retry_s * 2)
                continue
            if self._resync:
                self._resync = False
                return Batch(await self._take_queued(), resync=True)
            try:
                message = await self._pubsub.get_message(timeout=left)
            except rex.RedisError as exc:  # not mapped(): this runs for every batch
                await self._lost(translated(exc))
                continue
            events = [message["data"]] if message is not None and message["type"] == "message" else []
            if events:
                return Batch(events + await self._take_queued())
            if left == 0.0 or (deadline is not None and loop.time() >= deadline):
                return Batch()

    async def _take_queued(self) -> list[str]:
        """Every message already received, without waiting."""
        events = []
        try:
            while (message := await self._pubsub.get_message(timeout=0)) is not None:
                if message["type"] == "message":
                    events.append(message["data"])
        except rex.RedisError as exc:
            await self._lost(translated(exc))
        return events

    async def _subscribe(self) -> bool:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            with mapped():
                await pubsub.subscribe(*self._channels)
        except StoreUnavailable as exc:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            if self._lost_since is None:
                self._lost_since = asyncio.get_running_loop().time()
                log.warning("cannot subscribe to %s (%s); retrying", ", ".join(self._channels), exc)
            return False
        self._pubsub = pubsub
        self._resync = True
        self._retry_s = _RETRY_FIRST_S
        if self._lost_since is not None:
            log.info("subscribed to %s again after %.1fs", ", ".join(self._channels),
                     asyncio.get_running_loop().time() - self._lost_since)
            self._lost_since = None
        return True

    async def _lost(self, exc: StoreUnavailable) -> None:
        log.warning("lost the subscription to %s (%s); reconnecting", ", ".join(self._channels), exc)
        self._lost_since = asyncio.get_running_loop().time()
        await self._drop()

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


class Events(Backend):
    def dispatch_events(self) -> EventStream:
        """Jobs arrived, slots freed, workers or policies changed (payloads: ``core.keys.dispatch_event``)."""
        return EventStream(self.client, (keys.CH_DISPATCH,))

    def done_events(self) -> EventStream:
        """Jobs that reached a terminal state (payloads: job ids)."""
        return EventStream(self.client, (keys.CH_DONE,))
