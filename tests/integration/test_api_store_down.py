"""With Redis unreachable the API answers 503 with Retry-After instead of failing obscurely."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.procs import Stack, free_port, wait_for


def test_redis_down_is_503_with_retry_after(tmp_path: Path) -> None:
    stack = Stack(f"redis://127.0.0.1:{free_port()}/0", tmp_path)
    stack.spawn("api", name="api")
    try:
        def answering() -> bool:
            try:
                return httpx.get(f"{stack.url}/healthz", timeout=2).status_code == 503
            except httpx.TransportError:
                return False

        wait_for(answering, what="the API")
        with httpx.Client(base_url=stack.url, timeout=10) as http:
            assert http.get("/healthz").headers["Retry-After"] == "1"
            r = http.post("/v1/models/echo/jobs", json={"input": 1})
            assert r.status_code == 503 and "storage unavailable" in r.json()["detail"]
            assert http.get("/v1/jobs/abc").status_code == 503
    finally:
        stack.stop()
