"""The dispatcher's rounds: what it moves, and which events can be answered without a snapshot."""

from __future__ import annotations

import asyncio
import time

import redis

from core import keys
from core.settings import ModelSettings, Settings
from core.store import Store
from dispatcher.service import Dispatcher
from tests.integration.test_store import register, submit


def test_a_new_job_for_a_model_with_no_room_does_not_need_a_round(redis_url: str, r: redis.Redis) -> None:
    settings = Settings(models={"m": ModelSettings(handler="worker.handlers.echo:Echo"),
                                "n": ModelSettings(handler="worker.handlers.echo:Echo")})

    async def body() -> None:
        store = Store.from_url(redis_url)
        try:
            d = Dispatcher(store, settings, clock=time.time)
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
        finally:
            await store.close()

    asyncio.run(body())
