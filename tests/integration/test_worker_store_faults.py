"""A worker whose Redis connection fails mid-job: nothing may wedge it, and nothing may count twice.

The worker runs in-process against a real server through :class:`FaultyProxy`, which drops
connections or loses one reply (the command ran, its answer never came back), as a Redis
restart or a network blip does.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis

from core import keys
from core.jobs import NewJob
from core.settings import WorkerSettings
from core.store import Store
from core.store.scripts import FINISH, START, Script
from tests.netfault import FaultyProxy
from worker.runtime import Worker, WorkerIdentity

pytestmark = pytest.mark.timeout(90)

MODEL = "m"


def script_sha(script: Script[Any, Any]) -> bytes:
    return hashlib.sha1(script.source.encode()).hexdigest().encode()


class Gate:
    """A handler that runs only when the test opens the gate; it records every execution."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.opened.set()
        self.entered = threading.Event()
        self.runs: list[Any] = []

    def load(self) -> None:
        pass

    def predict(self, input: Any) -> Any:
        self.entered.set()
        self.opened.wait(30)
        self.runs.append(input)
        return input


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def proxy(redis_url: str) -> Iterator[FaultyProxy]:
    p = FaultyProxy(redis_url)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def warnings_log() -> Iterator[Warnings]:
    handler = Warnings()
    logger = logging.getLogger("tidal.worker")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def until(predicate: Callable[[], Awaitable[bool] | bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def with_worker(redis_url: str, proxy: FaultyProxy, handler: Gate,
                body: Callable[[Store, Worker, Callable[[], Awaitable[str]]], Awaitable[None]]) -> None:
    """Run ``body(direct store, worker, send_one)`` with a worker whose Redis goes through ``proxy``;
    ``send_one()`` submits a job and dispatches it to the worker (as a dispatcher would)."""

    async def main() -> None:
        direct = Store.from_url(redis_url)
        through = Store.from_url(proxy.url)
        ident = WorkerIdentity.new(MODEL, "1", 1.0, 1, "")
        worker = Worker(through, ident, handler, WorkerSettings(heartbeat_interval_s=0.1, heartbeat_ttl_s=5.0))
        run = asyncio.create_task(worker.run())

        async def send_one() -> str:
            job_id = str(uuid.uuid4())
            await direct.submit(NewJob(job_id, MODEL, "1", f'"{job_id}"'), max_queue_len=100,
                                idempotency_key=None, now=time.time())
            await until(lambda: _dispatched(direct, ident.id), "a dispatch to the worker")
            return job_id

        try:
            # Loaded beforehand, so a lost reply is the reply to a command that ran, not to NOSCRIPT.
            for script in (START, FINISH):
                await direct.client.script_load(script.source)
            await until(lambda: direct.client.sismember(keys.WORKERS, ident.id), "the worker to register")
            await body(direct, worker, send_one)
            await worker.drain()
            await asyncio.wait_for(run, 30)
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await through.close()
            await direct.close()

    asyncio.run(main())


async def _dispatched(store: Store, worker_id: str) -> bool:
    outcome, _ = await store.dispatch(MODEL, worker_id, 1, time.time())
    return outcome == "ok"


async def send_and_lose(direct: Store, worker: Worker, job_id: str, lost: threading.Event) -> None:
    """Submit ``job_id``, dispatch it to the worker and wait until the proxy has lost the reply it set out to."""
    await direct.submit(NewJob(job_id, MODEL, "1", f'"{job_id}"'), max_queue_len=100, idempotency_key=None,
                        now=time.time())
    await until(lambda: _dispatched(direct, worker.me.id), "a dispatch to the worker")
    await until(lost.is_set, "the reply to be lost")


async def state_of(store: Store, job_id: str) -> str | None:
    job = await store.get(job_id)
    return job.state if job else None


async def succeeds(store: Store, job_id: str) -> None:
    await until(lambda: _is(store, job_id, "succeeded"), f"job {job_id} to succeed")


async def _is(store: Store, job_id: str, state: str) -> bool:
    return await state_of(store, job_id) == state


def test_a_finish_whose_reply_is_lost_is_stored_once(redis_url: str, r: redis.Redis, proxy: FaultyProxy) -> None:
    handler = Gate()

    async def body(direct: Store, worker: Worker, send_one: Callable[[], Awaitable[str]]) -> None:
        handler.opened.clear()
        job_id = await send_one()
        await until(handler.entered.is_set, "the handler to start")
        lost = proxy.swallow_reply(request_has=(script_sha(FINISH), job_id.encode()))
        handler.opened.set()
        await until(lost.is_set, "the finish's reply to be lost")
        await succeeds(direct, job_id)
        await until(lambda: r.llen(keys.worker_active(worker.me.id)) == 0, "the slot to be freed")
        # The finish ran twice (the retry after the lost reply); it counted once.
        assert r.hget(keys.worker_info(worker.me.id), "jobs_done") == "1"
        assert r.hget(keys.job(job_id), "output") == f'"{job_id}"'
        await succeeds(direct, await send_one())  # and the worker goes on

    with_worker(redis_url, proxy, handler, body)
    assert len(handler.runs) == 2


def test_a_start_whose_reply_is_lost_still_runs_the_job_once(redis_url: str, r: redis.Redis,
                                                             proxy: FaultyProxy) -> None:
    handler = Gate()

    async def body(direct: Store, worker: Worker, send_one: Callable[[], Awaitable[str]]) -> None:
        job_id = str(uuid.uuid4())
        lost = proxy.swallow_reply(request_has=(script_sha(START), job_id.encode()))
        await send_and_lose(direct, worker, job_id, lost)
        await succeeds(direct, job_id)
        assert r.hget(keys.job(job_id), "executions") == "1"
        assert handler.runs == [job_id]
        await succeeds(direct, await send_one())

    with_worker(redis_url, proxy, handler, body)


def test_a_job_whose_take_reply_is_lost_is_adopted_not_left_to_hold_the_slot(
    redis_url: str, r: redis.Redis, proxy: FaultyProxy, warnings_log: Warnings
) -> None:
    handler = Gate()

    async def body(direct: Store, worker: Worker, send_one: Callable[[], Awaitable[str]]) -> None:
        job_id = str(uuid.uuid4())
        # The BLMOVE moves the job into the active list; its answer (the job id) never arrives.
        lost = proxy.swallow_reply(reply_has=job_id.encode())
        await send_and_lose(direct, worker, job_id, lost)
        await succeeds(direct, job_id)
        assert handler.runs == [job_id]
        assert r.hget(keys.job(job_id), "executions") == "1"
        assert any(job_id in m and "active list" in m for m in warnings_log.messages)
        await succeeds(direct, await send_one())

    with_worker(redis_url, proxy, handler, body)


def test_a_finish_during_an_outage_is_retried_until_redis_answers(
    redis_url: str, r: redis.Redis, proxy: FaultyProxy, warnings_log: Warnings
) -> None:
    handler = Gate()

    async def body(direct: Store, worker: Worker, send_one: Callable[[], Awaitable[str]]) -> None:
        handler.opened.clear()
        job_id = await send_one()
        await until(handler.entered.is_set, "the handler to start")
        proxy.cut()
        handler.opened.set()
        # Redis stays away until the worker has given up on a try (redis-py retries a while first).
        await until(lambda: any(job_id in m for m in warnings_log.messages), "a failed try of the finish")
        assert await state_of(direct, job_id) == "running"
        proxy.restore()
        await succeeds(direct, job_id)
        assert r.llen(keys.worker_active(worker.me.id)) == 0
        await succeeds(direct, await send_one())

    with_worker(redis_url, proxy, handler, body)
