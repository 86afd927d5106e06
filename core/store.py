"""All of Tidal's Redis I/O, behind one async class. Redis errors become ``StoreUnavailable`` here.

Every state change of a job is one Lua script (``core/lua``), so a job is always in exactly
one list and no process dying between two calls can lose it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, ParamSpec, TypeVar

import redis.asyncio as aioredis
import redis.exceptions

from core import keys
from core.errors import StoreUnavailable
from core.fleet import FleetSnapshot, ModelLoad, WorkerView
from core.jobs import RQ_STATUS, VIEW_FIELDS, JobRecord, NewJob, input_from_data

P = ParamSpec("P")
T = TypeVar("T")


def translated(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    return wrapper


def connect(url: str, **kwargs: Any) -> aioredis.Redis:
    """A client for ``redis://``, ``rediss://`` (TLS) or ``unix://`` URLs, with user/password if given."""
    return aioredis.from_url(url, decode_responses=True, health_check_interval=30, **kwargs)


def _script(name: str) -> str:
    return resources.files("core").joinpath("lua", f"{name}.lua").read_text()


@dataclass(frozen=True, slots=True)
class Submitted:
    outcome: Literal["ok", "dup", "full"]
    job_id: str | None
    backlog: int = 0


CancelOutcome = Literal["canceled", "stopping", "missing", "terminal"]


class Store:
    def __init__(self, client: aioredis.Redis, *, result_ttl_s: int = 1800):
        # Any: redis-py's stubs type every reply as bytes | str whatever decode_responses says.
        self.redis: Any = client
        self.result_ttl_s = result_ttl_s
        self._scripts = {
            n: client.register_script(_script(n))
            for n in ("submit", "dispatch", "start", "finish", "finalize", "requeue")
        }

    @classmethod
    def from_url(cls, url: str, *, result_ttl_s: int = 1800) -> Store:
        return cls(connect(url), result_ttl_s=result_ttl_s)

    async def close(self) -> None:
        await self.redis.aclose()

    @translated
    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def _run(self, name: str, keys_: list[str], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys_, args=args)

    # --- jobs ------------------------------------------------------------------------------

    @translated
    async def submit(self, job: NewJob, *, max_queue_len: int, idempotency_key: str | None, now: float
                     ) -> Submitted:
        job_key = keys.job(job.id)
        idem_key = keys.idempotency(job.model, idempotency_key) if idempotency_key else job_key
        idem_ttl = job.ttl_s + job.timeout_s + self.result_ttl_s if idempotency_key else 0
        flat = [x for kv in job.fields(now).items() for x in kv]
        res = await self._run(
            "submit",
            [job_key, keys.model_queue(job.model, job.priority), keys.RQ_QUEUES, *keys.model_queues(job.model),
             idem_key, keys.EXPIRY],
            [job.id, max_queue_len, idem_ttl, repr(now + job.ttl_s), keys.CH_DISPATCH,
             keys.dispatch_event(keys.EV_JOB, job.model), *flat],
        )
        outcome, value = res[0], res[1]
        if outcome == "full":
            return Submitted("full", None, int(value))
        return Submitted(outcome, value)

    @translated
    async def get(self, job_id: str) -> JobRecord | None:
        values = await self.redis.hmget(keys.job(job_id), list(VIEW_FIELDS))
        if values[VIEW_FIELDS.index("model")] is None:
            return None
        return JobRecord.from_fields(job_id, values)

    async def _finalize(
        self, job: JobRecord, *, holder: str | None, cancels: str | None, new_state: str, error: str, now: float
    ) -> bool:
        jk = keys.job(job.id)
        done = await self._run(
            "finalize",
            [jk, holder or jk, keys.EXPIRY, cancels or jk],
            [job.id, job.state, job.worker or "", new_state, RQ_STATUS[new_state], error, repr(now),
             self.result_ttl_s, keys.CH_DONE],
        )
        return bool(done)

    @translated
    async def cancel(self, job_id: str, now: float) -> tuple[CancelOutcome, JobRecord | None]:
        """Cancel a job: removed if waiting, told to stop if running. Retries if it moves meanwhile."""
        for _ in range(20):
            job = await self.get(job_id)
            if job is None:
                return "missing", None
            if job.terminal:
                return "terminal", job
            if job.state == "queued":
                holder, cancels = keys.model_queue(job.model, job.priority), None  # type: ignore[arg-type]
            elif job.state == "dispatched":
                holder, cancels = keys.worker_queue(job.worker or ""), None
            else:  # running: the worker sees the cancel set on its next heartbeat
                holder, cancels = None, keys.worker_cancels(job.worker or "")
            if await self._finalize(job, holder=holder, cancels=cancels, new_state="canceled",
                                    error="canceled by request", now=now):
                return ("stopping" if job.state == "running" else "canceled"), await self.get(job_id)
        raise StoreUnavailable(f"job {job_id} kept changing state while being canceled")

    @translated
    async def expire_due(self, now: float, limit: int = 500) -> int:
        """Expire jobs still waiting in a model queue past their ``ttl_s``."""
        ids = await self.redis.zrangebyscore(keys.EXPIRY, "-inf", now, start=0, num=limit)
        expired = 0
        for job_id in ids:
            job = await self.get(job_id)
            if job is None or job.state != "queued":
                await self.redis.zrem(keys.EXPIRY, job_id)
                continue
            holder = keys.model_queue(job.model, job.priority)  # type: ignore[arg-type]
            expired += await self._finalize(
                job, holder=holder, cancels=None, new_state="expired",
                error="expired: waited longer than its ttl_s before a worker took it", now=now,
            )
        return expired

    # --- dispatch --------------------------------------------------------------------------

    @translated
    async def peek_session(self, model: str) -> tuple[str, str | None] | None:
        """The next job of a model and its session, for policies that route by session."""
        for q in keys.model_queues(model):
            head = await self.redis.lindex(q, 0)
            if head is not None:
                session = await self.redis.hget(keys.job(head), "session")
                return head, session or None
        return None

    @translated
    async def dispatch(
        self, model: str, worker_id: str, bound: int, now: float, expected: str = ""
    ) -> tuple[str, str | None]:
        res = await self._run(
            "dispatch",
            [*keys.model_queues(model), keys.worker_queue(worker_id), keys.worker_active(worker_id),
             keys.worker_info(worker_id), keys.worker_alive(worker_id), keys.EXPIRY],
            [worker_id, bound, repr(now), expected, keys.RQ_JOB_PREFIX, self.result_ttl_s, keys.CH_DONE],
        )
        return res[0], (res[1] if len(res) > 1 else None)

    @translated
    async def requeue_worker(self, worker_id: str, model: str, mode: Literal["dead", "drain", "gone"], now: float
                             ) -> tuple[int, int]:
        res = await self._run(
            "requeue",
            [keys.worker_queue(worker_id), keys.worker_active(worker_id), keys.worker_info(worker_id),
             keys.worker_alive(worker_id), keys.WORKERS, *keys.model_queues(model),
             keys.worker_cancels(worker_id), keys.EXPIRY],
            [worker_id, keys.RQ_JOB_PREFIX, repr(now), self.result_ttl_s, mode, keys.CH_DONE,
             keys.CH_DISPATCH, keys.dispatch_event(keys.EV_ROOM, model)],
        )
        return int(res[0]), int(res[1])

    # --- workers ---------------------------------------------------------------------------

    @translated
    async def register_worker(self, info: dict[str, str], ttl_s: float) -> None:
        wid = info["id"]
        async with self.redis.pipeline(transaction=True) as p:
            p.hset(keys.worker_info(wid), mapping=info)
            p.set(keys.worker_alive(wid), "1", px=int(ttl_s * 1000))
            p.sadd(keys.WORKERS, wid)
            p.sadd(keys.RQ_QUEUES, keys.worker_queue(wid))
            p.publish(keys.CH_DISPATCH, keys.dispatch_event(keys.EV_ROOM, info["model"]))
            await p.execute()

    @translated
    async def heartbeat(self, worker_id: str, ttl_s: float) -> tuple[str | None, set[str]]:
        """Refresh the heartbeat; returns the worker's state and the running jobs to stop."""
        async with self.redis.pipeline(transaction=False) as p:
            p.set(keys.worker_alive(worker_id), "1", px=int(ttl_s * 1000))
            p.hget(keys.worker_info(worker_id), "state")
            p.smembers(keys.worker_cancels(worker_id))
            _, state, cancels = await p.execute()
        return state, set(cancels)

    @translated
    async def set_worker_state(self, worker_id: str, state: Literal["ready", "draining"]) -> bool:
        """Mark a registered worker; false if it is not registered."""
        if not await self.redis.exists(keys.worker_info(worker_id)):
            return False
        await self.redis.hset(keys.worker_info(worker_id), "state", state)
        return True

    @translated
    async def deregister_worker(self, worker_id: str, model: str, now: float) -> tuple[int, int]:
        """Remove a worker; any job it still holds goes back to the front of its model queue."""
        returned = await self.requeue_worker(worker_id, model, "gone", now)
        await self.redis.srem(keys.RQ_QUEUES, keys.worker_queue(worker_id))
        return returned

    @translated
    async def take(self, worker_id: str, timeout_s: float) -> str | None:
        """Block until a job is in the worker's queue and move it to the active list (BLMOVE)."""
        return await self.redis.blmove(  # type: ignore[no-any-return]
            keys.worker_queue(worker_id), keys.worker_active(worker_id), timeout_s, "LEFT", "RIGHT"
        )

    @translated
    async def start_job(self, worker_id: str, job_id: str, now: float) -> tuple[Any, int, int] | None:
        res = await self._run(
            "start", [keys.job(job_id), keys.worker_active(worker_id)],
            [job_id, worker_id, repr(now), self.result_ttl_s, keys.CH_DONE],
        )
        if not res:
            return None
        data, timeout_s, attempt = res
        return input_from_data(data), int(timeout_s), int(attempt)

    @translated
    async def finish_job(
        self, *, worker_id: str, model: str, job_id: str, attempt: int, ok: bool, payload: str,
        run_s: float, now: float,
    ) -> bool:
        state = "succeeded" if ok else "failed"
        accepted = await self._run(
            "finish",
            [keys.job(job_id), keys.worker_active(worker_id), keys.worker_info(worker_id)],
            [job_id, worker_id, attempt, state, RQ_STATUS[state], "output" if ok else "error", payload, repr(now),
             self.result_ttl_s, repr(run_s), keys.CH_DONE, keys.CH_DISPATCH,
             keys.dispatch_event(keys.EV_FREE, model, worker_id)],
        )
        return bool(accepted)

    # --- fleet -----------------------------------------------------------------------------

    @translated
    async def snapshot(self, models: Iterable[str]) -> FleetSnapshot:
        models = list(models)
        ids = sorted(await self.redis.smembers(keys.WORKERS))
        async with self.redis.pipeline(transaction=False) as p:
            for wid in ids:
                p.hgetall(keys.worker_info(wid))
                p.exists(keys.worker_alive(wid))
                p.llen(keys.worker_queue(wid))
                p.llen(keys.worker_active(wid))
            for m in models:
                for q in keys.model_queues(m):
                    p.llen(q)
                p.get(keys.model_policy(m))
                p.hgetall(keys.model_scale(m))
            res = await p.execute()
        workers = []
        for i in range(len(ids)):
            h, alive, queued, running = res[4 * i: 4 * i + 4]
            if h:
                workers.append(WorkerView.from_hash(h, bool(alive), int(queued), int(running)))
        loads = {}
        base = 4 * len(ids)
        for j, m in enumerate(models):
            hi, no, lo, policy, scale = res[base + 5 * j: base + 5 * j + 5]
            loads[m] = ModelLoad(m, int(hi) + int(no) + int(lo), policy, scale or {})
        return FleetSnapshot(workers, loads)

    @translated
    async def set_policy(self, model: str, policy: str) -> None:
        async with self.redis.pipeline(transaction=True) as p:
            p.set(keys.model_policy(model), policy)
            p.publish(keys.CH_DISPATCH, keys.dispatch_event(keys.EV_ROOM, model))
            await p.execute()

    @translated
    async def wake_dispatchers(self, model: str) -> None:
        await self.redis.publish(keys.CH_DISPATCH, keys.dispatch_event(keys.EV_ROOM, model))


def dumps_output(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
