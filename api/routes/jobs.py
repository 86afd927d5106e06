"""Jobs: submit to a model, read (or long-poll) one, cancel one."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.deps import Context
from api.schemas import Accepted, Job, SubmitRequest
from api.waiters import CompletionWaiters
from core.jobs import JobRecord, JobState, NewJob, dumps_value
from core.store import ApiStore

router = APIRouter()

WAIT_LIMIT_MESSAGE = "Input should be less than or equal to {limit:g} ([api] max_wait_s)"


def parse_body(raw: bytes) -> SubmitRequest:
    """The submit body. Parsed by hand so that JSON is accepted whatever the Content-Type (curl -d)."""
    try:
        return SubmitRequest.model_validate_json(raw or b"null")
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=raw.decode(errors="replace")[:200]) from None


def accepted(job_id: str, model: str, status: str, created: float) -> dict[str, Any]:
    base = f"/v1/jobs/{job_id}"
    return {
        "id": job_id, "model": model, "status": status,
        "created_at": datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z"),
        "links": {"self": base, "cancel": f"{base}/cancel", "wait": f"{base}?wait=60"},
    }


async def retry_after(store: ApiStore, model: str, backlog: int) -> int:
    """Seconds a client should wait before submitting again: a tenth of the time to drain the backlog."""
    snap = await store.snapshot([model])
    workers = [w for w in snap.workers_of(model) if w.alive]
    slots = sum(w.slots for w in workers)
    runs = [w.ewma_run_s for w in workers if w.ewma_run_s]
    if not slots or not runs:
        return 5
    return max(1, min(60, math.ceil(backlog * (sum(runs) / len(runs)) / slots / 10)))


async def read_job(store: ApiStore, job_id: str) -> JobRecord:
    job = await store.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r} (unknown, or its result expired)")
    return job


async def wait_for_end(store: ApiStore, waiters: CompletionWaiters, job_id: str, wait_s: float) -> JobRecord:
    """The job once it is terminal, or as it is after ``wait_s``."""
    # Registered before the read: a job that ends in between still wakes us.
    ev = waiters.register(job_id)
    try:
        deadline = time.monotonic() + wait_s
        job = await read_job(store, job_id)
        while not job.terminal and (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ev.wait(), left)
            ev.clear()
            job = await read_job(store, job_id)
    finally:
        waiters.unregister(job_id, ev)
    return job


def check_wait(wait: float, max_wait_s: float) -> None:
    """``wait`` above ``[api] max_wait_s`` is a 422 like any other bad query parameter."""
    if wait > max_wait_s:
        raise RequestValidationError([{
            "type": "less_than_equal", "loc": ("query", "wait"), "msg": WAIT_LIMIT_MESSAGE.format(limit=max_wait_s),
            "input": wait, "ctx": {"le": max_wait_s},
        }])


@router.post("/v1/models/{model}/jobs", status_code=202, response_model=Accepted,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": SubmitRequest.model_json_schema()}}}},
             responses={200: {"description": "replayed: an earlier job with the same Idempotency-Key"},
                        404: {}, 413: {}, 422: {}, 429: {}})
async def submit(
    model: str, ctx: Context, request: Request, response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
) -> dict[str, Any]:
    cfg, store = ctx.model(model), ctx.store
    body = parse_body(await request.body())
    now = time.time()
    new = NewJob(
        id=str(uuid.uuid4()), model=model, version=cfg.version, input_json=dumps_value(body.input),
        priority=body.priority, session=body.session, timeout_s=body.timeout_s or cfg.timeout_s,
        ttl_s=body.ttl_s or cfg.ttl_s, max_attempts=cfg.max_attempts,
    )
    res = await store.submit(new, max_queue_len=cfg.max_queue_len, idempotency_key=idempotency_key, now=now)
    if res.outcome == "full":
        raise HTTPException(429, f"model {model!r} has {res.backlog} jobs waiting (max_queue_len "
                                 f"{cfg.max_queue_len}); retry later",
                            headers={"Retry-After": str(await retry_after(store, model, res.backlog))})
    assert res.job_id is not None
    if res.outcome == "dup":
        job = await store.get(res.job_id)
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
        if job is not None:
            return accepted(job.id, job.model, job.state, job.queued_at_s or now)
    return accepted(res.job_id, model, JobState.QUEUED, now)


@router.get("/v1/jobs/{job_id}", response_model=Job)
async def get_job(
    job_id: str, ctx: Context,
    wait: Annotated[float, Query(ge=0, description="long poll: seconds to wait for the job to end")] = 0,
) -> dict[str, Any]:
    check_wait(wait, ctx.settings.api.max_wait_s)
    if not wait:
        return (await read_job(ctx.store, job_id)).public()
    return (await wait_for_end(ctx.store, ctx.waiters, job_id, wait)).public()


@router.post("/v1/jobs/{job_id}/cancel", response_model=Job, responses={404: {}, 409: {}})
async def cancel_job(job_id: str, ctx: Context) -> dict[str, Any]:
    outcome, job = await ctx.store.cancel(job_id, time.time())
    if outcome == "missing" or job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    if outcome == "terminal":
        raise HTTPException(409, f"job {job_id} already ended: {job.state}")
    return job.public()
