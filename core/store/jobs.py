"""Job records: submit, read, cancel, and expire jobs that waited past their ``ttl_s``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core import keys
from core.errors import StoreUnavailable
from core.jobs import RQ_STATUS, VIEW_FIELDS, JobRecord, NewJob
from core.store.backend import Backend
from core.store.errors import store_call


@dataclass(frozen=True, slots=True)
class Submitted:
    outcome: Literal["ok", "dup", "full"]
    job_id: str | None
    backlog: int = 0


CancelOutcome = Literal["canceled", "stopping", "missing", "terminal"]


class Jobs(Backend):
    @store_call
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

    @store_call
    async def get(self, job_id: str) -> JobRecord | None:
        return await self._get(job_id)

    async def _get(self, job_id: str) -> JobRecord | None:
        values = await self.client.hmget(keys.job(job_id), list(VIEW_FIELDS))
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

    @store_call
    async def cancel(self, job_id: str, now: float) -> tuple[CancelOutcome, JobRecord | None]:
        """Cancel a job: removed if waiting, told to stop if running. Retries if it moves meanwhile."""
        for _ in range(20):
            job = await self._get(job_id)
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
                return ("stopping" if job.state == "running" else "canceled"), await self._get(job_id)
        raise StoreUnavailable(f"job {job_id} kept changing state while being canceled")

    @store_call
    async def expire_due(self, now: float, limit: int = 500) -> int:
        """Expire jobs still waiting in a model queue past their ``ttl_s``."""
        ids = await self.client.zrangebyscore(keys.EXPIRY, "-inf", now, start=0, num=limit)
        expired = 0
        for job_id in ids:
            job = await self._get(job_id)
            if job is None or job.state != "queued":
                await self.client.zrem(keys.EXPIRY, job_id)
                continue
            holder = keys.model_queue(job.model, job.priority)  # type: ignore[arg-type]
            expired += await self._finalize(
                job, holder=holder, cancels=None, new_state="expired",
                error="expired: waited longer than its ttl_s before a worker took it", now=now,
            )
        return expired
