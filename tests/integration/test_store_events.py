"""The event stream: batches, timeouts, and a resync after its connection is killed."""

from __future__ import annotations

import asyncio

import redis

from core import keys
from core.store import Batch, Store


def test_a_burst_is_one_batch_and_a_quiet_channel_times_out(redis_url: str, r: redis.Redis) -> None:
    async def main() -> None:
        store = Store.from_url(redis_url)
        try:
            async with store.done_events() as events:
                assert await events.next(0.05) == Batch()  # nothing, and no resync
                for job_id in ("a", "b", "c"):
                    r.publish(keys.CH_DONE, job_id)
                batch = await events.next(5)
                while len(batch.events) < 3:  # the server may deliver them in two reads
                    batch = Batch(batch.events + (await events.next(5)).events)
                assert batch.events == ["a", "b", "c"] and not batch.resync
        finally:
            await store.close()

    asyncio.run(main())


def test_a_killed_subscription_comes_back_and_says_resync(redis_url: str, r: redis.Redis) -> None:
    async def main() -> None:
        store = Store.from_url(redis_url)
        try:
            async with store.dispatch_events() as events:
                assert r.client_kill_filter(_type="pubsub") >= 1
                batch = await events.next(10)
                assert batch.resync, "a lost subscription must tell its consumer to re-read state"
                r.publish(keys.CH_DISPATCH, "job:m")
                assert (await events.next(10)).events == ["job:m"]
        finally:
            await store.close()

    asyncio.run(main())
