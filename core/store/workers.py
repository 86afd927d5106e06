"""Worker records: register, heartbeat, take, start and finish jobs, give jobs back."""

from __future__ import annotations

from typing import Any, Literal

from core import keys
from core.jobs import RQ_STATUS, input_from_data
from core.store.backend import Backend
from core.store.errors import store_call

RequeueMode = Literal["dead", "drain", "gone"]


class Workers(Backend):
    @store_call
    async def register_worker(self, info: dict[str, str], ttl_s: float) -> None:
        wid = info["id"]
        async with self.client.pipeline(transaction=True) as p:
            p.hset(keys.worker_info(wid), mapping=info)
            p.set(keys.worker_alive(wid), "1", px=int(ttl_s * 1000))
            p.sadd(keys.WORKERS, wid)
            p.sadd(keys.RQ_QUEUES, keys.worker_queue(wid))
            p.publish(keys.CH_DISPATCH, keys.dispatch_event(keys.EV_ROOM, info["model"]))
            await p.execute()

    @store_call
    async def heartbeat(self, worker_id: str, ttl_s: float) -> tuple[str | None, set[str]]:
        """Refresh the heartbeat; returns the worker's state and the running jobs to stop."""
        async with self.client.pipeline(transaction=False) as p:
            p.set(keys.worker_alive(worker_id), "1", px=int(ttl_s * 1000))
            p.hget(keys.worker_info(worker_id), "state")
            p.smembers(keys.worker_cancels(worker_id))
            _, state, cancels = await p.execute()
        return state, set(cancels)

    @store_call
    async def set_worker_state(self, worker_id: str, state: Literal["ready", "draining"]) -> bool:
        """Mark a registered worker; false if it is not registered."""
        if not await self.client.exists(keys.worker_info(worker_id)):
            return False
        await self.client.hset(keys.worker_info(worker_id), "state", state)
        return True

    async def _requeue(self, worker_id: str, model: str, mode: RequeueMode, now: float) -> tuple[int, int]:
        res = await self._run(
            "requeue",
            [keys.worker_queue(worker_id), keys.worker_active(worker_id), keys.worker_info(worker_id),
             keys.worker_alive(worker_id), keys.WORKERS, *keys.model_queues(model),
             keys.worker_cancels(worker_id), keys.EXPIRY],
            [worker_id, keys.RQ_JOB_PREFIX, repr(now), self.result_ttl_s, mode, keys.CH_DONE,
             keys.CH_DISPATCH, keys.dispatch_event(keys.EV_ROOM, model)],
        )
        return int(res[0]), int(res[1])

    @store_call
    async def requeue_worker(self, worker_id: str, model: str, mode: RequeueMode, now: float) -> tuple[int, int]:
        return await self._requeue(worker_id, model, mode, now)

    @store_call
    async def deregister_worker(self, worker_id: str, model: str, now: float) -> tuple[int, int]:
        """Remove a worker; any job it still holds goes back to the front of its model queue."""
        returned = await self._requeue(worker_id, model, "gone", now)
        await self.client.srem(keys.RQ_QUEUES, keys.worker_queue(worker_id))
        return returned

    @store_call
    async def take(self, worker_id: str, timeout_s: float) -> str | None:
        """Block until a job is in the worker's queue and move it to the active list (BLMOVE)."""
        return await self.client.blmove(  # type: ignore[no-any-return]
            keys.worker_queue(worker_id), keys.worker_active(worker_id), timeout_s, "LEFT", "RIGHT"
        )

    @store_call
    async def start_job(self, worker_id: str, job_id: str, now: float) -> tuple[Any, int, int] | None:
        res = await self._run(
            "start", [keys.job(job_id), keys.worker_active(worker_id)],
            [job_id, worker_id, repr(now), self.result_ttl_s, keys.CH_DONE],
        )
        if not res:
            return None
        data, timeout_s, attempt = res
        return input_from_data(data), int(timeout_s), int(attempt)

    @store_call
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
