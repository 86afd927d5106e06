"""A bare FastAPI submit endpoint: the ceiling the real API's submit handler is compared with.

It parses the same body as ``POST /v1/models/{model}/jobs`` and answers 202 with a body of the
same shape, and runs under the same uvicorn settings as ``tidal api``, but touches no Redis.
``python -m bench.bare_api PORT``.
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

from api.schemas import SubmitRequest


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/models/{model}/jobs", status_code=202)
    async def submit(model: str, request: Request) -> dict[str, Any]:
        body = SubmitRequest.model_validate_json(await request.body() or b"null")
        return {"id": str(uuid.uuid4()), "model": model, "status": "queued", "created_at": time.time(),
                "priority": body.priority}

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True}

    return app


def main(argv: list[str]) -> int:
    uvicorn.run(create_app(), host="127.0.0.1", port=int(argv[0]), log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
