"""Job records: submit, read, cancel, and expire jobs that waited past their ``ttl_s``."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Literal

from core import keys
from core.errors import StoreUnavailable
from core.jobs import CANCELED_ERROR, EXPIRED_ERROR, VIEW_FIELDS, JobField, JobRecord, JobState, NewJob
from core.store.backend import Backend
from core.store.errors import store_call
from core.store.scripts import FINALIZE, SUBMIT, FinalizeArgs, FinalizeKeys, SubmitArgs, SubmitKeys


@dataclass(frozen=True, slots=True)
class Submitted:
    outcome: Literal["ok", "dup", "full"]
    job_id: str | None
    backlog: int = 0


CancelOutcome = Literal["canceled", "stopping", "missing", "terminal"]


class Jobs(Backend):
    @store_call(retry=True)  # the script recognises its own replay: the job hash exists
    async def submit(self, job: NewJob, *, max_queue_len: int, idempotency_key: str | None, now: float
                     ) -> Submitted:
        job_key = keys.job(job.id)
        high, normal, low = keys.model_queues(job.model)
        res = await self.scripts(
            SUBMIT,
            SubmitKeys(
                job=job_key, queue=keys.model_queue(job.model, job.priority), rq_queues=keys.RQ_QUEUES,
                high=high, normal=normal, low=low,
                idempotency=keys.idempotency(job.model, idempotency_key) if idempotency_key else job_key,
                expiry=keys.EXPIRY, counters=keys.model_counters(job.model),
            ),
            SubmitArgs(
                job_id=job.id, max_queue_len=max_queue_len,
                idempotency_ttl_s=job.ttl_s + job.timeout_s + self.result_ttl_s if idempotency_key else 0,
                expires_at_s=job.expires_at(now), dispatch_channel=keys.CH_DISPATCH,
                event=keys.dispatch_event(keys.EV_JOB, job.model),
                fields=tuple(chain.from_iterable(job.fields(now).items())),
            ),
        )
        outcome, value = res[0], res[1]
        if outcome == "full":
            return Submitted("full", None, int(value))
        return Submitted(outcome, value)

    @store_call(retry=True)
    async def get(self, job_id: str) -> JobRecord | None:
        return await self._get(job_id)

    async def _get(self, job_id: str) -> JobRecord | None:
        values = await self.client.hmget(keys.job(job_id), list(VIEW_FIELDS))
        if values[VIEW_FIELDS.index(JobField.MODEL)] is None:
            return None
        return JobRecord.from_fields(job_id, values)

    async def _finalize(
        self, job: JobRecord, *, holder: str | None, cancels: str | None, new_state: JobState, error: str,
        now: float,
    ) -> bool:
        jk = keys.job(job.id)
        done = await self.scripts(
            FINALIZE,
            FinalizeKeys(job=jk, holder=holder or jk, expiry=keys.EXPIRY, cancels=cancels or jk),
            FinalizeArgs(
                job_id=job.id, expected_state=job.state, expected_worker=job.worker or "", state=new_state,
                status=new_state.rq_status, reason=error, now=now, retention_s=self.result_ttl_s,
                done_channel=keys.CH_DONE,
            ),
        )
        return bool(done)

    @store_call(retry=True)  # finalize recognises its own replay (same end state, same time)
    async def cancel(self, job_id: str, now: float) -> tuple[CancelOutcome, JobRecord | None]:
        """Cancel a job: removed if waiting, told to stop if running. Retries if it moves meanwhile."""
        for _ in range(20):
            job = await self._get(job_id)
            if job is None:
                return "missing", None
            if job.terminal:
                return "terminal", job
            if job.state == JobState.QUEUED:
                holder, cancels = keys.model_queue(job.model, job.priority), None
            elif job.state == JobState.DISPATCHED:
                holder, cancels = keys.worker_queue(job.worker or ""), None
            else:  # running: the worker sees the cancel set on its next heartbeat
                holder, cancels = None, keys.worker_cancels(job.worker or "")
            if await self._finalize(job, holder=holder, cancels=cancels, new_state=JobState.CANCELED,
                                    error=CANCELED_ERROR, now=now):
                return ("stopping" if job.state == JobState.RUNNING else "canceled"), await self._get(job_id)
        raise StoreUnavailable(f"job {job_id} kept changing state while being canceled")

    @store_call(retry=True)
    async def expire_due(self, now: float, limit: int = 500) -> int:
        """Expire jobs still waiting in a model queue past their ``ttl_s``."""
        ids = await self.client.zrangebyscore(keys.EXPIRY, "-inf", now, start=0, num=limit)
        expired = 0
        for job_id in ids:
            job = await self._get(job_id)
            if job is None or job.state != JobState.QUEUED:
                await self.client.zrem(keys.EXPIRY, job_id)
                continue
            expired += await self._finalize(job, holder=keys.model_queue(job.model, job.priority), cancels=None,
                                            new_state=JobState.EXPIRED, error=EXPIRED_ERROR, now=now)
        return expired
