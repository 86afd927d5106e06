"""The job lifecycle scripts against a real Redis-protocol server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from core import keys
from core.fleet import Counters, WorkerRecord
from core.jobs import CANCELED_ERROR, JobState, NewJob
from core.store import Store

NOW = 1_700_000_000.0


def arun(url: str, body: Callable[[Store], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        store = Store.from_url(url, result_ttl_s=600)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


async def submit(store: Store, model: str = "m", *, priority: str = "normal", ttl_s: int = 3600,
                 max_queue_len: int = 100, idem: str | None = None, max_attempts: int = 2, now: float = NOW,
                 payload: Any = None) -> str | None:
    job = NewJob(str(uuid.uuid4()), model, "1", json.dumps(payload or {"x": 1}), priority,  # type: ignore[arg-type]
                 timeout_s=30, ttl_s=ttl_s, max_attempts=max_attempts)
    res = await store.submit(job, max_queue_len=max_queue_len, idempotency_key=idem, now=now)
    return res.job_id


async def register(store: Store, wid: str, model: str = "m", slots: int = 1) -> None:
    await store.register_worker(WorkerRecord(wid, model, "1", 1.0, slots, "h", 1, "", NOW), ttl_s=30)


def test_full_lifecycle_and_rq_sees_it(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> str:
        job_id = await submit(store, payload={"hello": "world"})
        assert job_id
        assert (await store.get(job_id)).state == "queued"  # type: ignore[union-attr]
        await register(store, "w1")
        assert await store.dispatch("m", "w1", 1, NOW + 1) == ("ok", job_id)
        assert (await store.get(job_id)).state == "dispatched"  # type: ignore[union-attr]
        assert await store.take("w1", 0.1) == job_id
        started = await store.start_job("w1", job_id, NOW + 2)
        assert started == ({"hello": "world"}, 30, 1)
        assert await store.finish_job(worker_id="w1", model="m", job_id=job_id, attempt=1, ok=True,
                                      payload='{"y": 2}', run_s=1.0, now=NOW + 3)
        job = await store.get(job_id)
        assert job is not None and job.state == "succeeded" and json.loads(job.output or "") == {"y": 2}
        assert job.public()["queue_s"] == 2.0 and job.public()["run_s"] == 1.0
        return job_id

    job_id = arun(redis_url, body)
    raw = redis.Redis.from_url(redis_url)
    assert "m" in [q.name for q in Queue.all(connection=raw)]
    rq_job = Job.fetch(job_id, connection=raw, serializer=JSONSerializer)
    assert rq_job.get_status() == "finished"
    assert rq_job.args == [{"hello": "world"}]
    assert r.ttl(keys.job(job_id)) > 0  # finished jobs are retained for a while, then expire


def test_counters_count_accepted_jobs_and_finished_runs(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> None:
        first = await submit(store)
        await submit(store)
        await submit(store, model="other")
        assert await submit(store, idem="k") == await submit(store, idem="k")  # a replay is not a new job
        assert await submit(store, max_queue_len=3) is None  # refused: not counted
        await register(store, "w1")
        await store.dispatch("m", "w1", 1, NOW)
        await store.take("w1", 0.1)
        await store.start_job("w1", first, NOW)  # type: ignore[arg-type]
        await store.finish_job(worker_id="w1", model="m", job_id=first, attempt=1, ok=False,  # type: ignore[arg-type]
                               payload='"boom"', run_s=2.5, now=NOW + 3)
        snap = await store.snapshot(["m", "other", "unused"])
        assert snap.models["m"].counters == Counters(arrivals=3, completions=1, run_s=2.5)
        assert snap.models["other"].counters == Counters(arrivals=1)
        assert snap.models["unused"].counters == Counters()

    arun(redis_url, body)


def test_dispatch_respects_bound_liveness_and_draining(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> None:
        for _ in range(3):
            await submit(store)
        assert (await store.dispatch("m", "ghost", 1, NOW))[0] == "dead"
        await register(store, "w1")
        assert (await store.dispatch("m", "w1", 2, NOW))[0] == "ok"
        assert (await store.dispatch("m", "w1", 2, NOW))[0] == "ok"
        assert (await store.dispatch("m", "w1", 2, NOW))[0] == "full"
        await register(store, "w2")
        await store.set_worker_state("w2", "draining")
        assert (await store.dispatch("m", "w2", 2, NOW))[0] == "draining"
        snap = await store.snapshot(["m"])
        assert snap.models["m"].backlog == 1 and snap.in_flight("m") == 2

    arun(redis_url, body)


def test_priorities_drain_high_first(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> None:
        low = await submit(store, priority="low")
        normal = await submit(store)
        high = await submit(store, priority="high")
        await register(store, "w1")
        order = [(await store.dispatch("m", "w1", 10, NOW))[1] for _ in range(3)]
        assert order == [high, normal, low]

    arun(redis_url, body)


def test_dead_worker_jobs_go_back_to_the_front_then_fail_past_max_attempts(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> None:
        running = await submit(store, max_attempts=2)
        waiting = await submit(store, max_attempts=2)
        behind = await submit(store, max_attempts=2)
        await register(store, "w1")
        await store.dispatch("m", "w1", 2, NOW)
        await store.dispatch("m", "w1", 2, NOW)
        assert await store.take("w1", 0.1) == running
        await store.start_job("w1", running, NOW)  # type: ignore[arg-type]
        # Alive: the reaper must not touch it.
        assert await store.requeue_worker("w1", "m", "dead", NOW) == (-1, 0)
        r.delete(keys.worker_alive("w1"))
        assert await store.requeue_worker("w1", "m", "dead", NOW) == (2, 0)
        assert r.lrange(keys.model_queue("m"), 0, -1) == [running, waiting, behind]
        job = await store.get(running)  # type: ignore[arg-type]
        assert job is not None and job.attempt == 2 and job.state == "queued" and job.lost_from == "w1"
        assert (await store.get(waiting)).attempt == 1  # type: ignore[arg-type,union-attr]
        assert not r.sismember(keys.WORKERS, "w1")
        # The re-run dies too: attempt 3 > max_attempts 2, so it fails with a clear error.
        await register(store, "w2")
        await store.dispatch("m", "w2", 1, NOW)
        await store.take("w2", 0.1)
        await store.start_job("w2", running, NOW)  # type: ignore[arg-type]
        r.delete(keys.worker_alive("w2"))
        assert await store.requeue_worker("w2", "m", "dead", NOW) == (0, 1)
        job = await store.get(running)  # type: ignore[arg-type]
        assert job is not None and job.state == "failed" and "died while running" in (job.error or "")

    arun(redis_url, body)


def test_late_result_from_a_reaped_worker_is_discarded(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> None:
        job_id = await submit(store)
        await register(store, "w1")
        await store.dispatch("m", "w1", 1, NOW)
        await store.take("w1", 0.1)
        await store.start_job("w1", job_id, NOW)  # type: ignore[arg-type]
        r.delete(keys.worker_alive("w1"))
        await store.requeue_worker("w1", "m", "dead", NOW)
        ok = await store.finish_job(worker_id="w1", model="m", job_id=job_id, attempt=1, ok=True,  # type: ignore[arg-type]
                                    payload="1", run_s=1, now=NOW)
        assert not ok
        assert (await store.get(job_id)).state == "queued"  # type: ignore[arg-type,union-attr]

    arun(redis_url, body)


def test_cancel_in_each_state(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> None:
        running, dispatched, queued = await submit(store), await submit(store), await submit(store)
        await register(store, "w1", slots=3)
        await store.dispatch("m", "w1", 3, NOW)
        await store.dispatch("m", "w1", 3, NOW)
        assert await store.take("w1", 0.1) == running
        await store.start_job("w1", running, NOW)  # type: ignore[arg-type]
        assert (await store.cancel(queued, NOW))[0] == "canceled"  # type: ignore[arg-type]
        assert r.llen(keys.model_queue("m")) == 0
        assert (await store.cancel(dispatched, NOW))[0] == "canceled"  # type: ignore[arg-type]
        assert r.llen(keys.worker_queue("w1")) == 0
        outcome, job = await store.cancel(running, NOW)  # type: ignore[arg-type]
        assert outcome == "stopping" and job is not None and job.state == "canceled"
        state, cancels = await store.heartbeat("w1", 30)
        assert state == "ready" and cancels == {running}
        assert (await store.cancel(running, NOW))[0] == "terminal"  # type: ignore[arg-type]
        assert (await store.cancel("no-such-job", NOW))[0] == "missing"
        assert r.llen(keys.worker_active("w1")) == 1
        await store.finish_job(worker_id="w1", model="m", job_id=running, attempt=1, ok=True, payload="1",  # type: ignore[arg-type]
                               run_s=1, now=NOW)
        assert r.llen(keys.worker_active("w1")) == 0
        assert (await store.get(running)).state == "canceled"  # type: ignore[arg-type,union-attr]

    arun(redis_url, body)


def test_cancel_removes_a_queued_job_from_the_queue(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> None:
        a, b = await submit(store), await submit(store)
        await store.cancel(a, NOW)  # type: ignore[arg-type]
        assert r.lrange(keys.model_queue("m"), 0, -1) == [b]

    arun(redis_url, body)


def test_jobs_expire_past_their_ttl(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> None:
        stale = await submit(store, ttl_s=10)
        fresh = await submit(store, ttl_s=1000)
        assert await store.expire_due(NOW + 5) == 0
        assert await store.expire_due(NOW + 11) == 1
        job = await store.get(stale)  # type: ignore[arg-type]
        assert job is not None and job.state == "expired" and job.terminal
        assert r.lrange(keys.model_queue("m"), 0, -1) == [fresh]
        # A job that expires while queued is also skipped by dispatch itself.
        late = await submit(store, ttl_s=10)
        await register(store, "w1")
        assert await store.dispatch("m", "w1", 5, NOW + 500) == ("ok", fresh)
        assert (await store.dispatch("m", "w1", 5, NOW + 500))[0] == "empty"
        assert (await store.get(late)).state == "expired"  # type: ignore[arg-type,union-attr]

    arun(redis_url, body)


def test_idempotency_and_backlog_bound(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> None:
        first = await submit(store, idem="k1", max_queue_len=2)
        res = await store.submit(NewJob("other", "m", "1", "1"), max_queue_len=2, idempotency_key="k1", now=NOW)
        assert (res.outcome, res.job_id) == ("dup", first)
        assert await submit(store, max_queue_len=2)
        full = await store.submit(NewJob("x", "m", "1", "1", "high"), max_queue_len=2, idempotency_key=None, now=NOW)
        assert full.outcome == "full" and full.backlog == 2
        assert not r.exists(keys.job("x"))

    arun(redis_url, body)


@pytest.mark.parametrize("mode", ["drain"])
def test_drain_returns_only_unstarted_jobs(redis_url: str, r: redis.Redis, mode: str) -> None:
    async def body(store: Store) -> None:
        a, b = await submit(store), await submit(store)
        await register(store, "w1", slots=2)
        await store.dispatch("m", "w1", 2, NOW)
        await store.dispatch("m", "w1", 2, NOW)
        await store.take("w1", 0.1)
        await store.start_job("w1", a, NOW)  # type: ignore[arg-type]
        assert await store.requeue_worker("w1", "m", "drain", NOW) == (1, 0)
        assert r.lrange(keys.model_queue("m"), 0, -1) == [b]
        assert (await store.get(a)).state == "running"  # type: ignore[arg-type,union-attr]
        assert r.sismember(keys.WORKERS, "w1")

    arun(redis_url, body)


def test_deregistering_with_jobs_still_held_gives_them_back(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> None:
        running, waiting = await submit(store), await submit(store)
        await register(store, "w1", slots=2)
        await store.dispatch("m", "w1", 2, NOW)
        await store.dispatch("m", "w1", 2, NOW)
        await store.take("w1", 0.1)
        await store.start_job("w1", running, NOW)  # type: ignore[arg-type]
        assert await store.deregister_worker("w1", "m", NOW) == (2, 0)
        assert r.lrange(keys.model_queue("m"), 0, -1) == [running, waiting]
        assert not r.exists(keys.worker_info("w1"), keys.worker_alive("w1"), keys.worker_queue("w1"),
                            keys.worker_active("w1"))
        assert not r.sismember(keys.WORKERS, "w1")
        assert not r.sismember(keys.RQ_QUEUES, keys.worker_queue("w1"))

    arun(redis_url, body)


def test_calls_the_store_may_send_twice_recognise_their_own_replay(redis_url: str, r: redis.Redis) -> None:
    """A retried submit or cancel (its first answer lost with a dropped connection) happened once."""

    async def body(store: Store) -> None:
        job = NewJob(str(uuid.uuid4()), "m", "1", "1", timeout_s=30, ttl_s=3600)
        for _ in range(2):
            res = await store.submit(job, max_queue_len=10, idempotency_key="k", now=NOW)
            assert (res.outcome, res.job_id) == ("ok", job.id)
        assert r.lrange(keys.model_queue("m"), 0, -1) == [job.id]
        assert await store.cancel(job.id, NOW + 1) == ("canceled", await store.get(job.id))
        record = await store.get(job.id)
        assert record is not None
        # The same finalize again, as a retry sends it: it reports done, and changes nothing.
        queued = replace(record, state=JobState.QUEUED, worker=None)
        assert await store._finalize(queued, holder=keys.model_queue("m"), cancels=None,
                                     new_state=JobState.CANCELED, error=CANCELED_ERROR, now=NOW + 1)
        assert await store.get(job.id) == record
        # Another cancel, at another time, finds the job ended.
        assert not await store._finalize(queued, holder=keys.model_queue("m"), cancels=None,
                                         new_state=JobState.CANCELED, error=CANCELED_ERROR, now=NOW + 2)

    arun(redis_url, body)


def test_a_start_or_finish_retried_after_a_lost_reply_counts_once(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> None:
        job_id = await submit(store, payload={"n": 1})
        assert job_id
        await register(store, "w1")
        await store.dispatch("m", "w1", 1, NOW)
        assert await store.take("w1", 0.1) == job_id
        # The same start twice (its first reply lost): the same answer, one execution, still held.
        assert await store.start_job("w1", job_id, NOW + 1) == ({"n": 1}, 30, 1)
        assert await store.start_job("w1", job_id, NOW + 1) == ({"n": 1}, 30, 1)
        assert r.hget(keys.job(job_id), "executions") == "1"
        assert r.lrange(keys.worker_active("w1"), 0, -1) == [job_id]
        # The worker lost track of it and starts it afresh: that is a new execution.
        assert await store.start_job("w1", job_id, NOW + 2) == ({"n": 1}, 30, 1)
        assert r.hget(keys.job(job_id), "executions") == "2"
        # The same finish twice: both say the result was stored; the worker's counters move once.
        events = r.pubsub(ignore_subscribe_messages=True)
        events.subscribe(keys.CH_DISPATCH)
        for _ in range(2):
            assert await store.finish_job(worker_id="w1", model="m", job_id=job_id, attempt=1, ok=True,
                                          payload='{"y": 2}', run_s=1.0, now=NOW + 3)
        assert r.hget(keys.worker_info("w1"), "jobs_done") == "1"
        assert r.hget(keys.model_counters("m"), "completions") == "1"
        assert (await store.get(job_id)).state == "succeeded"  # type: ignore[union-attr]
        free = [m for _ in range(3) if (m := events.get_message(timeout=0.2)) is not None]
        assert [m["data"] for m in free] == [keys.dispatch_event(keys.EV_FREE, "m", "w1")]
        events.close()
        # A different finish of the same run (not a retry) is still refused.
        assert not await store.finish_job(worker_id="w1", model="m", job_id=job_id, attempt=1, ok=False,
                                          payload="late", run_s=1.0, now=NOW + 4)

    arun(redis_url, body)
