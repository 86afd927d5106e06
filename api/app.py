"""The FastAPI application. Clients are built in the lifespan, never at import time."""


import asyncio
import contextlib
import logging
import math
import socket
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from api.limits import BodyLimit
from api.schemas import Accepted, Job, ModelStatus, PolicyChange, SubmitRequest
from api.waiters import CompletionWaiters
from core import registry
from core.errors import StoreUnavailable
from core.fleet import FleetSnapshot
from core.jobs import JobRecord, NewJob
from core.settings import Settings
from core.store import Store, dumps_output

log = logging.getLogger("tidal.api")


def create_app(settings: Settings, store: Store | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = store is None
        if own:
            if not settings.redis.url:
                raise RuntimeError("the API needs REDIS_URL (or [redis] url); `tidal up` sets it for you")
            app.state.store = Store.from_url(settings.redis.url, result_ttl_s=settings.api.result_ttl_s)
        else:
            app.state.store = store
        try:
            # Workers with only REDIS_URL read their model's settings from the registry.
            await registry.publish(app.state.store.redis, settings, source=f"api on {socket.gethostname()}",
                                   now=time.time())
        except StoreUnavailable as exc:
            log.warning("could not publish the models to the registry: %s", exc)
        listener = asyncio.create_task(app.state.waiters.listen(app.state.store.redis))
        try:
            yield
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            if own:
                await app.state.store.close()

    app = FastAPI(title="Tidal", version="0.1.0", lifespan=lifespan,
                  description="Serverless-style inference jobs on your own GPUs.")
    app.state.waiters = CompletionWaiters()
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)

    def st(request: Request) -> Store:
        return request.app.state.store  # type: ignore[no-any-return]

    def known_model(model: str) -> None:
        if model not in settings.models:
            raise HTTPException(404, f"unknown model {model!r}; known: {', '.join(sorted(settings.models))}")

    @app.exception_handler(StoreUnavailable)
    async def store_down(request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"storage unavailable: {exc}"}, status_code=503, headers={"Retry-After": "1"})

    def parse_body(raw: bytes) -> SubmitRequest:
        # Parsed by hand so that JSON is accepted whatever the Content-Type (curl -d sends a form type).
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

    @app.post("/v1/models/{model}/jobs", status_code=202, response_model=Accepted,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": SubmitRequest.model_json_schema()}}}},
              responses={200: {"description": "replayed: an earlier job with the same Idempotency-Key"},
                         404: {}, 413: {}, 422: {}, 429: {}})
    async def submit(
        model: str, request: Request, response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
    ) -> dict[str, Any]:
        known_model(model)
        body = parse_body(await request.body())
        cfg = settings.models[model]
        store = st(request)
        now = time.time()
        new = NewJob(
            id=str(uuid.uuid4()), model=model, version=cfg.version, input_json=dumps_output(body.input),
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
        return accepted(res.job_id, model, "queued", now)

    async def retry_after(store: Store, model: str, backlog: int) -> int:
        snap = await store.snapshot([model])
        workers = [w for w in snap.workers_of(model) if w.alive]
        slots = sum(w.slots for w in workers)
        runs = [w.ewma_run_s for w in workers if w.ewma_run_s]
        if not slots or not runs:
            return 5
        return max(1, min(60, math.ceil(backlog * (sum(runs) / len(runs)) / slots / 10)))

    async def read_job(store: Store, job_id: str) -> JobRecord:
        job = await store.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r} (unknown, or its result expired)")
        return job

    @app.get("/v1/jobs/{job_id}", response_model=Job)
    async def get_job(
        job_id: str, request: Request,
        wait: Annotated[float, Query(ge=0, le=settings.api.max_wait_s,
                                     description="long poll: seconds to wait for the job to end")] = 0,
    ) -> dict[str, Any]:
        store = st(request)
        if not wait:
            return (await read_job(store, job_id)).public()
        waiters: CompletionWaiters = request.app.state.waiters
        # Registered before the read: a job that ends in between still wakes us.
        ev = waiters.register(job_id)
        try:
            deadline = time.monotonic() + wait
            job = await read_job(store, job_id)
            while not job.terminal and (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), left)
                ev.clear()
                job = await read_job(store, job_id)
        finally:
            waiters.unregister(job_id, ev)
        return job.public()

    @app.post("/v1/jobs/{job_id}/cancel", response_model=Job, responses={404: {}, 409: {}})
    async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
        outcome, job = await st(request).cancel(job_id, time.time())
        if outcome == "missing" or job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        if outcome == "terminal":
            raise HTTPException(409, f"job {job_id} already ended: {job.state}")
        return job.public()

    def model_status(name: str, snap: FleetSnapshot) -> dict[str, Any]:
        cfg = settings.models[name]
        load = snap.models[name]
        live = [w for w in snap.workers_of(name) if w.alive]
        desired = load.scale.get("desired")
        return ModelStatus(
            name=name, version=cfg.version,
            policy=load.policy_override or cfg.policy,
            backlog=load.backlog, in_flight=snap.in_flight(name),
            workers=sum(w.state == "ready" for w in live),
            workers_draining=sum(w.state == "draining" for w in live),
            workers_desired=int(desired) if desired else None,
            scale_reason=load.scale.get("reason"), broken=load.scale.get("broken") or None,
            max_queue_len=cfg.max_queue_len,
        ).model_dump()

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        snap = await st(request).snapshot(settings.models)
        return {"models": [model_status(m, snap) for m in settings.models]}

    @app.put("/v1/models/{model}/policy")
    async def set_policy(model: str, body: PolicyChange, request: Request) -> dict[str, Any]:
        known_model(model)
        store = st(request)
        await store.set_policy(model, body.policy)
        return model_status(model, await store.snapshot([model]))

    @app.get("/v1/workers")
    async def list_workers(request: Request) -> dict[str, Any]:
        snap = await st(request).snapshot(settings.models)
        return {"workers": [w.public() for w in snap.workers]}

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        await st(request).ping()
        return {"ok": True}

    return app
