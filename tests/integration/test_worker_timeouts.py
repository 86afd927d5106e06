"""In-process workers: a handler that ignores its timeout, and one whose result is not JSON."""

from __future__ import annotations

import asyncio
import time

import redis

from core import keys
from core.jobs import NewJob
from core.settings import WorkerSettings
from core.store import Store
from tests.handlers import NotJson, Stubborn
from worker.exit_codes import EXIT_WEDGED
from worker.runtime import Worker, WorkerIdentity


def test_a_wedged_handler_fails_its_job_then_makes_the_worker_exit(redis_url: str, r: redis.Redis) -> None:
    exits: list[int] = []

    async def body() -> None:
        store = Store.from_url(redis_url)
        try:
            ident = WorkerIdentity.new("m", "1", 1.0, 1, "")
            settings = WorkerSettings(heartbeat_interval_s=0.1, heartbeat_ttl_s=1.0, timeout_grace_s=0.3)
            worker = Worker(store, ident, Stubborn(), settings, exit_process=exits.append)
            run = asyncio.create_task(worker.run())
            await store.submit(NewJob("j1", "m", "1", '{"s": 1.5}', timeout_s=1), max_queue_len=10,
                               idempotency_key=None, now=time.time())
            while not r.sismember(keys.WORKERS, ident.id):
                await asyncio.sleep(0.01)
            assert (await store.dispatch("m", ident.id, 1, time.time()))[0] == "ok"
            deadline = time.monotonic() + 10
            while not exits and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            job = await store.get("j1")
            assert job is not None and job.state == "failed" and "timeout_s=1" in (job.error or "")
            assert exits == [EXIT_WEDGED]
            await worker.drain()
            await asyncio.wait_for(run, 10)
        finally:
            await store.close()

    asyncio.run(body())


def test_a_result_that_is_not_json_fails_the_job_with_a_clear_error(redis_url: str, r: redis.Redis) -> None:
    async def body() -> None:
        store = Store.from_url(redis_url)
        try:
            ident = WorkerIdentity.new("m", "1", 1.0, 1, "")
            worker = Worker(store, ident, NotJson(), WorkerSettings(heartbeat_interval_s=0.1, heartbeat_ttl_s=1.0))
            run = asyncio.create_task(worker.run())
            await store.submit(NewJob("j1", "m", "1", "null"), max_queue_len=10, idempotency_key=None,
                               now=time.time())
            while not r.sismember(keys.WORKERS, ident.id):
                await asyncio.sleep(0.01)
            assert (await store.dispatch("m", ident.id, 1, time.time()))[0] == "ok"
            deadline = time.monotonic() + 10
            while (job := await store.get("j1")) is not None and not job.terminal and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert job is not None and job.state == "failed"
            assert "result is not JSON" in (job.error or "")
            await worker.drain()
            await asyncio.wait_for(run, 10)
        finally:
            await store.close()

    asyncio.run(body())
