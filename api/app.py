"""The FastAPI application: lifespan and wiring. Endpoints live in ``api/routes``.

Clients are built in the lifespan, never at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from api.deps import ApiContext
from api.limits import BodyLimit
from api.routes import health, jobs, models, workers
from api.waiters import CompletionWaiters
from core import registry
from core.errors import StoreUnavailable
from core.settings import Settings
from core.store import ApiStore, Store

TITLE, VERSION, DESCRIPTION = "Tidal", "0.1.0", "Serverless-style inference jobs on your own GPUs."

log = logging.getLogger("tidal.api")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the store (unless one was given), listen for finished jobs; undo both on the way out."""
    settings: Settings = app.state.settings
    store: ApiStore | None = app.state.store
    own: Store | None = None
    if store is None:
        if not settings.redis.url:
            raise RuntimeError("the API needs REDIS_URL (or [redis] url); `tidal up` sets it for you")
        store = own = Store.from_url(settings.redis.url, result_ttl_s=settings.api.result_ttl_s)
    try:
        # Workers with only REDIS_URL read their model's settings from the registry.
        await store.publish_models(registry.specs(settings), source=f"api on {socket.gethostname()}", now=time.time())
    except StoreUnavailable as exc:
        log.warning("could not publish the models to the registry: %s", exc)
    ctx = app.state.context = ApiContext(settings, store, CompletionWaiters())
    listener = asyncio.create_task(ctx.waiters.listen(ctx.store.done_events()))
    try:
        yield
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        app.state.context = None
        if own is not None:
            await own.close()


async def store_down(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"storage unavailable: {exc}"}, status_code=503, headers={"Retry-After": "1"})


def openapi_with_limits(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    """The schema, with the limits that come from the settings (the long poll's ``wait``)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=TITLE, version=VERSION, description=DESCRIPTION, routes=app.routes)
            for param in schema["paths"]["/v1/jobs/{job_id}"]["get"]["parameters"]:
                if param["name"] == "wait":
                    param["schema"]["maximum"] = settings.api.max_wait_s
            app.openapi_schema = schema
        return app.openapi_schema

    return build


def create_app(settings: Settings, store: ApiStore | None = None) -> FastAPI:
    """The API for ``settings``; ``store`` for tests that bring their own (it is not closed)."""
    app = FastAPI(title=TITLE, version=VERSION, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.context = None  # the lifespan makes it
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)
    app.add_exception_handler(StoreUnavailable, store_down)
    for routes in (jobs, models, workers, health):
        app.include_router(routes.router)
    app.openapi = openapi_with_limits(app, settings)  # type: ignore[method-assign]
    return app
