"""`tidal worker --gpu --weight --slots --instance-id`: what a worker registers and how it runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from core import keys
from tests.procs import CONFIG, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    redis.Redis.from_url(redis_url).flushdb()
    s = Stack(redis_url, tmp_path, CONFIG + '[models.gpu]\nhandler = "tests.handlers:GpuEnv"\nversion = "7b-v2"\n')
    try:
        s.api()
        s.dispatcher()
        yield s
    finally:
        s.stop()


def test_worker_registers_its_identity_and_is_pinned_to_its_gpu(stack: Stack) -> None:
    proc = stack.worker("gpu", "--gpu", "1", "--weight", "2.5", "--slots", "3", "--instance-id", "i-0abc")
    wid = stack.worker_id_of(proc)
    info = stack.redis.hgetall(keys.worker_info(wid))
    assert info["model"] == "gpu" and info["version"] == "7b-v2"
    assert float(info["weight"]) == 2.5 and info["slots"] == "3"
    assert info["host"] and info["instance_id"] == "i-0abc" and info["pid"] == str(proc.pid)
    with httpx.Client(base_url=stack.url, timeout=40) as http:
        job_id = http.post("/v1/models/gpu/jobs", json={"input": None}).json()["id"]
        job = http.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
        assert job["result"] == {"CUDA_VISIBLE_DEVICES": "1"}
        worker = next(w for w in http.get("/v1/workers").json()["workers"] if w["id"] == wid)
        assert worker["instance_id"] == "i-0abc" and worker["slots"] == 3


def test_unknown_model_is_a_clear_error(stack: Stack) -> None:
    proc = stack.spawn("worker", "--model", "nope", name="bad-worker")
    assert proc.wait(timeout=30) == 2
    log = next(stack.tmp.glob("bad-worker-*.log")).read_text()
    assert "unknown model 'nope'" in log
