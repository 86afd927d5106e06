"""Dispatch: move a model's next job to one worker's queue, and what routing reads or changes."""

from __future__ import annotations

from core import keys
from core.jobs import JobField
from core.store.backend import Backend
from core.store.errors import store_call
from core.store.scripts import DISPATCH, DispatchArgs, DispatchKeys


class Dispatch(Backend):
    @store_call(retry=True)
    async def peek_session(self, model: str) -> tuple[str, str | None] | None:
        """The next job of a model and its session, for policies that route by session."""
        for q in keys.model_queues(model):
            head = await self.client.lindex(q, 0)
            if head is not None:
                session = await self.client.hget(keys.job(head), JobField.SESSION)
                return head, session or None
        return None

    @store_call(retry=False)  # a replay would move a second job; the dispatcher's loop re-reads instead
    async def dispatch(
        self, model: str, worker_id: str, bound: int, now: float, expected: str = ""
    ) -> tuple[str, str | None]:
        high, normal, low = keys.model_queues(model)
        res = await self.scripts(
            DISPATCH,
            DispatchKeys(
                high=high, normal=normal, low=low, worker_queue=keys.worker_queue(worker_id),
                worker_active=keys.worker_active(worker_id), worker_info=keys.worker_info(worker_id),
                worker_alive=keys.worker_alive(worker_id), expiry=keys.EXPIRY,
            ),
            DispatchArgs(
                worker_id=worker_id, bound=bound, now=now, expected=expected, job_prefix=keys.RQ_JOB_PREFIX,
                retention_s=self.result_ttl_s, done_channel=keys.CH_DONE,
            ),
        )
        return res[0], (res[1] if len(res) > 1 else None)

    @store_call(retry=True)
    async def set_policy(self, model: str, policy: str) -> None:
        async with self.client.pipeline(transaction=True) as p:
            p.set(keys.model_policy(model), policy)
            p.publish(keys.CH_DISPATCH, keys.dispatch_event(keys.EV_ROOM, model))
            await p.execute()

    @store_call(retry=True)
    async def wake_dispatchers(self, model: str) -> None:
        await self.client.publish(keys.CH_DISPATCH, keys.dispatch_event(keys.EV_ROOM, model))
