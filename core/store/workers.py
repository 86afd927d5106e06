"""Worker records: register, heartbeat, take, start and finish jobs, give jobs back."""

from __future__ import annotations

from typing import Any, Literal

from core import keys
from core.fleet import WorkerField, WorkerRecord, WorkerState
from core.jobs import JobField, JobState, input_from_data
from core.store.backend import Backend
from core.store.errors import store_call
from core.store.scripts import (
    FINISH,
    REQUEUE,
    START,
    FinishArgs,
    FinishKeys,
    RequeueArgs,
    RequeueKeys,
    StartArgs,
    StartKeys,
)

RequeueMode = Literal["dead", "drain", "gone"]


class Workers(Backend):
    @store_call(retry=True)
    async def register_worker(self, record: WorkerRecord, ttl_s: float) -> None:
        wid = record.id
        async with self.client.pipeline(transaction=True) as p:
            p.hset(keys.worker_info(wid), mapping=record.to_hash())
            p.set(keys.worker_alive(wid), "1", px=int(ttl_s * 1000))
            p.sadd(keys.WORKERS, wid)
            p.sadd(keys.RQ_QUEUES, keys.worker_queue(wid))
            p.publish(keys.CH_DISPATCH, keys.dispatch_event(keys.EV_ROOM, record.model))
            await p.execute()

    @store_call(retry=True)
    async def heartbeat(self, worker_id: str, ttl_s: float) -> tuple[WorkerState | None, set[str]]:
        """Refresh the heartbeat; returns the worker's state and the running jobs to stop."""
        async with self.client.pipeline(transaction=False) as p:
            p.set(keys.worker_alive(worker_id), "1", px=int(ttl_s * 1000))
            p.hget(keys.worker_info(worker_id), WorkerField.STATE)
            p.smembers(keys.worker_cancels(worker_id))
            _, state, cancels = await p.execute()
        return (WorkerState(state) if state else None), set(cancels)

    @store_call(retry=True)
    async def set_worker_state(self, worker_id: str, state: WorkerState) -> bool:
        """Mark a registered worker; false if it is not registered."""
        if not await self.client.exists(keys.worker_info(worker_id)):
            return False
        await self.client.hset(keys.worker_info(worker_id), WorkerField.STATE, state)
        return True

    async def _requeue(self, worker_id: str, model: str, mode: RequeueMode, now: float) -> tuple[int, int]:
        high, normal, low = keys.model_queues(model)
        res = await self.scripts(
            REQUEUE,
            RequeueKeys(
                worker_queue=keys.worker_queue(worker_id), worker_active=keys.worker_active(worker_id),
                worker_info=keys.worker_info(worker_id), worker_alive=keys.worker_alive(worker_id),
                workers=keys.WORKERS, high=high, normal=normal, low=low, cancels=keys.worker_cancels(worker_id),
                expiry=keys.EXPIRY,
            ),
            RequeueArgs(
                worker_id=worker_id, job_prefix=keys.RQ_JOB_PREFIX, now=now, retention_s=self.result_ttl_s,
                mode=mode, done_channel=keys.CH_DONE, dispatch_channel=keys.CH_DISPATCH,
                event=keys.dispatch_event(keys.EV_ROOM, model),
            ),
        )
        return int(res[0]), int(res[1])

    @store_call(retry=True)  # a replay finds nothing left to give back
    async def requeue_worker(self, worker_id: str, model: str, mode: RequeueMode, now: float) -> tuple[int, int]:
        return await self._requeue(worker_id, model, mode, now)

    @store_call(retry=True)
    async def deregister_worker(self, worker_id: str, model: str, now: float) -> tuple[int, int]:
        """Remove a worker; any job it still holds goes back to the front of its model queue."""
        returned = await self._requeue(worker_id, model, "gone", now)
        await self.client.srem(keys.RQ_QUEUES, keys.worker_queue(worker_id))
        return returned

    # Not replayed: a BLMOVE that was done but unanswered moved a job, and a replay would wait
    # for another. The worker's loop tries again; what its active list holds is the worker's.
    @store_call(retry=False)
    async def take(self, worker_id: str, timeout_s: float) -> str | None:
        """Block until a job is in the worker's queue and move it to the active list (BLMOVE)."""
        return await self.client.blmove(  # type: ignore[no-any-return]
            keys.worker_queue(worker_id), keys.worker_active(worker_id), timeout_s, "LEFT", "RIGHT"
        )

    @store_call(retry=True)
    async def active_jobs(self, worker_id: str) -> list[str]:
        """The jobs a worker has taken and not finished, as Redis has them."""
        return await self.client.lrange(keys.worker_active(worker_id), 0, -1)  # type: ignore[no-any-return]

    @store_call(retry=True)  # a replay with the same ``now`` answers the same and counts nothing
    async def start_job(self, worker_id: str, job_id: str, now: float) -> tuple[Any, int, int] | None:
        res = await self.scripts(
            START,
            StartKeys(job=keys.job(job_id), worker_active=keys.worker_active(worker_id)),
            StartArgs(job_id=job_id, worker_id=worker_id, now=now, retention_s=self.result_ttl_s,
                      done_channel=keys.CH_DONE),
        )
        if not res:
            return None
        data, timeout_s, attempt = res
        return input_from_data(data), int(timeout_s), int(attempt)

    @store_call(retry=True)  # a replay with the same ``now`` answers the same and counts nothing
    async def finish_job(
        self, *, worker_id: str, model: str, job_id: str, attempt: int, ok: bool, payload: str,
        run_s: float, now: float,
    ) -> bool:
        state = JobState.SUCCEEDED if ok else JobState.FAILED
        accepted = await self.scripts(
            FINISH,
            FinishKeys(job=keys.job(job_id), worker_active=keys.worker_active(worker_id),
                       worker_info=keys.worker_info(worker_id), counters=keys.model_counters(model)),
            FinishArgs(
                job_id=job_id, worker_id=worker_id, attempt=attempt, state=state, status=state.rq_status,
                field=JobField.OUTPUT if ok else JobField.ERROR, payload=payload, now=now,
                retention_s=self.result_ttl_s, run_s=run_s, done_channel=keys.CH_DONE,
                dispatch_channel=keys.CH_DISPATCH, event=keys.dispatch_event(keys.EV_FREE, model, worker_id),
            ),
        )
        return bool(accepted)
