"""The dispatcher's rounds: what it moves, and which events can be answered without a snapshot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import redis

from core import keys
from core.settings import ModelSettings, Settings
from core.store import Store
from dispatcher.service import Dispatcher
from tests.integration.test_store import register, submit

ECHO = ModelSettings(handler="worker.handlers.echo:Echo")


def with_dispatcher(redis_url: str, models: list[str], body: Callable[[Store, Dispatcher], Awaitable[None]]) -> None:
    async def main() -> None:
        store = Store.from_url(redis_url)
        try:
            await body(store, Dispatcher(store, Settings(models=dict.fromkeys(models, ECHO)), clock=time.time))
        finally:
            await store.close()

    asyncio.run(main())


def test_a_new_job_for_a_model_with_no_room_does_not_need_a_round(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store, d: Dispatcher) -> None:
        for _ in range(3):
            await submit(store, "m", now=time.time())
        await register(store, "w1", "m")
        assert await d.dispatch_round() == 1
        assert d.blocked == {"m"}
        assert r.llen(keys.model_queue("m")) == 2
        assert not d.worth_a_round([keys.dispatch_event(keys.EV_JOB, "m")] * 5)
        assert d.worth_a_round([keys.dispatch_event(keys.EV_ROOM, "m")])
        assert d.worth_a_round([keys.dispatch_event(keys.EV_JOB, "n")])
        # The slot frees: the next round moves one more and the model is still blocked.
        r.delete(keys.worker_queue("w1"))
        assert await d.dispatch_round() == 1
        assert d.blocked == {"m"}
        r.delete(keys.worker_queue("w1"))
        assert await d.dispatch_round() == 1
        assert d.blocked == set()

    with_dispatcher(redis_url, ["m", "n"], body)


def test_the_view_follows_dispatches_and_freed_slots_without_a_re_read(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store, d: Dispatcher) -> None:
        for _ in range(3):
            await submit(store, "m", now=time.time())
        await register(store, "w1", "m")
        await register(store, "w2", "m")
        assert await d.dispatch_round() == 2
        assert d.view is not None
        assert {w.id: w.outstanding for w in d.view.workers} == {"w1": 1, "w2": 1}
        assert d.view.models["m"].backlog == 1
        # w1's job ends (its queue empties): the event frees its slot in the view.
        r.delete(keys.worker_queue("w1"))
        d.apply_events([keys.dispatch_event(keys.EV_FREE, "m", "w1"), keys.dispatch_event(keys.EV_JOB, "m")])
        assert {w.id: w.outstanding for w in d.view.workers} == {"w1": 0, "w2": 1}
        assert d.view.models["m"].backlog == 2
        assert await d.dispatch_round(d.view) == 1  # the one job really waiting, to w1
        assert d.view is not None and d.blocked == {"m"}  # the view still counts one more waiting
        r.delete(keys.worker_queue("w2"))
        d.apply_events([keys.dispatch_event(keys.EV_FREE, "m", "w2")])
        assert await d.dispatch_round(d.view) == 0  # the store says the queue is empty
        assert d.view is not None and d.view.models["m"].backlog == 0 and d.blocked == set()
        # Anything else (a worker came, went or changed) drops the view so it is read again.
        d.apply_events([keys.dispatch_event(keys.EV_ROOM, "m")])
        assert d.view is None

    with_dispatcher(redis_url, ["m"], body)


def test_a_stale_view_is_dropped_when_the_store_disagrees(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store, d: Dispatcher) -> None:
        await register(store, "w1", "m")
        await submit(store, "m", now=time.time())
        snap = await store.snapshot(["m"])
        r.rpush(keys.worker_queue("w1"), "someone-else's-job")  # another dispatcher filled w1
        assert await d.dispatch_round(snap) == 0
        assert d.view is None

    with_dispatcher(redis_url, ["m"], body)
