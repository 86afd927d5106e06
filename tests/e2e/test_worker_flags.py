"""`tidal worker --gpu --gpus --weight --slots --instance-id`: what a worker registers and how it runs."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core import keys
from tests.procs import CONFIG, Stack, api_and_dispatcher, wait_for
from worker.exit_codes import EXIT_CONFIG

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    gpu_model = '[models.gpu]\nhandler = "tests.handlers:GpuEnv"\nversion = "7b-v2"\n'
    with api_and_dispatcher(redis_url, tmp_path, CONFIG + gpu_model) as s:
        yield s


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


def test_unknown_model_is_a_clear_error_with_its_own_exit_status(stack: Stack) -> None:
    proc = stack.spawn("worker", "--model", "nope", name="bad-worker")
    assert proc.wait(timeout=30) == EXIT_CONFIG
    log = next(stack.tmp.glob("bad-worker-*.log")).read_text()
    assert "unknown model 'nope'" in log
    assert "the config file has boom, echo, gpu, idle, sleep" in log


FAKE_GPUS = ["GPU-0e0e0e0e-aaaa-bbbb-cccc-000000000000", "GPU-1f1f1f1f-aaaa-bbbb-cccc-111111111111"]


def fake_nvidia_smi(bin_dir: Path) -> dict[str, str]:
    """An ``nvidia-smi`` listing two GPUs, first on PATH; the environment to run a worker with."""
    bin_dir.mkdir()
    lines = "".join(f"GPU {i}: NVIDIA A10G (UUID: {u})\n" for i, u in enumerate(FAKE_GPUS))
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\nprintf '{lines}'\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_gpus_auto_runs_one_worker_per_gpu_each_pinned_to_its_own(stack: Stack) -> None:
    parent = stack.spawn("worker", "--model", "gpu", "--gpus", "auto", "--instance-id", "i-0multi",
                         name="multi", env=fake_nvidia_smi(stack.tmp / "bin"))
    wait_for(lambda: len(stack.live_workers("gpu")) == 2, what="a worker per GPU")
    workers = {w: stack.redis.hgetall(keys.worker_info(w)) for w in stack.live_workers("gpu")}
    assert sorted(info["gpu"] for info in workers.values()) == FAKE_GPUS
    assert {info["instance_id"] for info in workers.values()} == {"i-0multi"}
    with httpx.Client(base_url=stack.url, timeout=40) as http:
        ids = [http.post("/v1/models/gpu/jobs", json={"input": None}).json()["id"] for _ in range(8)]
        for job_id in ids:
            job = http.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
            # Each job saw exactly the GPU its worker registered with.
            assert job["result"] == {"CUDA_VISIBLE_DEVICES": workers[job["worker"]]["gpu"]}

    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 0
    assert stack.live_workers("gpu") == set()
    assert not set(workers) & stack.redis.smembers(keys.WORKERS)  # both drained and deregistered


def test_gpus_auto_with_an_unknown_model_starts_nothing(stack: Stack) -> None:
    parent = stack.spawn("worker", "--model", "nope", "--gpus", "auto", name="multi-bad",
                         env=fake_nvidia_smi(stack.tmp / "bin"))
    assert parent.wait(timeout=30) == EXIT_CONFIG
    assert stack.redis.smembers(keys.WORKERS) == set()
