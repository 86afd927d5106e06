"""End to end with real processes: crashes and concurrency must lose or repeat no job."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from core import keys
from tests.procs import Stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    redis.Redis.from_url(redis_url).flushdb()
    s = Stack(redis_url, tmp_path)
    try:
        s.api()
        yield s
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.stop()


def submit_many(http: httpx.Client, n: int, ms: int) -> list[str]:
    ids = []
    for i in range(n):
        r = http.post("/v1/models/sleep/jobs", json={"input": {"ms": ms}, "session": f"user-{i % 13}"})
        assert r.status_code == 202
        ids.append(r.json()["id"])
    return ids


def finish_all(http: httpx.Client, ids: list[str]) -> list[dict[str, object]]:
    return [http.get(f"/v1/jobs/{j}", params={"wait": 60}).json() for j in ids]


def executions(stack: Stack, job_id: str) -> int:
    return int(stack.redis.hget(keys.job(job_id), "executions") or 0)


def test_kill_9_a_worker_mid_run_loses_no_job(stack: Stack) -> None:
    stack.dispatcher()
    workers = [stack.worker("sleep") for _ in range(4)]
    victim = workers[1]
    victim_id = stack.worker_id_of(victim)
    with httpx.Client(base_url=stack.url, timeout=70) as http:
        ids = submit_many(http, 200, ms=40)
        # Kill it while it is running something, so at least one job is caught mid-run.
        wait_for(lambda: stack.redis.llen(keys.worker_active(victim_id)) > 0, what="victim busy")
        os.kill(victim.pid, signal.SIGKILL)
        jobs = finish_all(http, ids)
    assert [j["status"] for j in jobs] == ["succeeded"] * 200
    rerun = [j for j in jobs if int(j["attempt"]) > 1]  # type: ignore[call-overload]
    assert rerun, "the killed worker was running a job; it must have been re-run"
    for j in jobs:
        job_id = str(j["id"])
        lost_from = stack.redis.hget(keys.job(job_id), "lost_from")
        if int(j["attempt"]) == 1:  # type: ignore[call-overload]
            assert executions(stack, job_id) == 1, f"job {job_id} ran twice without a crash"
        else:
            assert lost_from == victim_id, "only the killed worker's jobs may be re-run"
            assert executions(stack, job_id) <= int(j["attempt"])  # type: ignore[call-overload]
            assert j["worker"] != victim_id
    assert victim_id not in stack.redis.smembers(keys.WORKERS)


def test_two_dispatchers_never_dispatch_a_job_twice(stack: Stack) -> None:
    stack.dispatcher()
    stack.dispatcher()
    for _ in range(3):
        stack.worker("sleep", "--slots", "2")
    with httpx.Client(base_url=stack.url, timeout=70) as http:
        ids = submit_many(http, 300, ms=5)
        jobs = finish_all(http, ids)
    assert [j["status"] for j in jobs] == ["succeeded"] * 300
    assert all(int(j["attempt"]) == 1 for j in jobs)  # type: ignore[call-overload]
    assert sum(executions(stack, str(j["id"])) for j in jobs) == 300
    # Both dispatchers did work: the prefetch bound held with two of them racing.
    for wid in stack.live_workers("sleep"):
        assert int(stack.redis.hget(keys.worker_info(wid), "jobs_done") or 0) > 0


def test_sigterm_drains_a_worker(stack: Stack) -> None:
    stack.dispatcher()
    proc = stack.worker("sleep")
    wid = stack.worker_id_of(proc)
    with httpx.Client(base_url=stack.url, timeout=70) as http:
        job_id = http.post("/v1/models/sleep/jobs", json={"input": {"ms": 1500}}).json()["id"]
        wait_for(lambda: http.get(f"/v1/jobs/{job_id}").json()["status"] == "running", what="running")
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: stack.redis.hget(keys.worker_info(wid), "state") != "ready", what="draining")
        later = http.post("/v1/models/sleep/jobs", json={"input": {"ms": 1}}).json()["id"]
        assert proc.wait(timeout=20) == 0
        assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
        assert http.get(f"/v1/jobs/{later}").json()["status"] == "queued"  # the draining worker took nothing new
        assert wid not in stack.redis.smembers(keys.WORKERS)
        stack.worker("sleep")
        assert http.get(f"/v1/jobs/{later}", params={"wait": 30}).json()["status"] == "succeeded"


def test_dispatcher_crash_loses_nothing(stack: Stack) -> None:
    first = stack.dispatcher()
    stack.worker("sleep")
    with httpx.Client(base_url=stack.url, timeout=70) as http:
        ids = submit_many(http, 60, ms=10)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        time.sleep(0.3)
        stack.dispatcher()
        jobs = finish_all(http, ids)
    assert [j["status"] for j in jobs] == ["succeeded"] * 60
    assert all(executions(stack, str(j["id"])) == 1 for j in jobs)


def test_tidal_up_runs_the_stack_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    from tests.e2e.test_worker_flags import FAKE_GPUS, fake_nvidia_smi
    from tests.procs import CONFIG, free_port, start_up

    port = free_port()
    config = tmp_path / "tidal.toml"
    log = tmp_path / "up.log"
    config.write_text(CONFIG.format(port=port) + f'\n[redis]\ndata_dir = "{tmp_path / "valkey"}"\n')
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["TIDAL_MODELS__ECHO__LOCAL_WORKERS"] = "2"
    env |= fake_nvidia_smi(tmp_path / "bin")  # a machine with 2 GPUs
    proc = start_up(config, log, env)
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/v1/models", timeout=0.5).json()["models"][0]["workers"] == 2
            except (httpx.TransportError, ValueError, KeyError):
                return False

        wait_for(ready, timeout_s=60, what="tidal up")
        echo_gpus = [w["gpu"] for w in httpx.get(f"{url}/v1/workers").json()["workers"] if w["model"] == "echo"]
        assert sorted(echo_gpus) == FAKE_GPUS  # the first two workers, one on each GPU
        job_id = httpx.post(f"{url}/v1/models/echo/jobs", content=b'{"input": {"x": 1}}').json()["id"]
        job = httpx.get(f"{url}/v1/jobs/{job_id}", params={"wait": 30}, timeout=40).json()
        assert job["status"] == "succeeded" and job["result"] == {"x": 1}
        assert (tmp_path / "valkey" / "appendonlydir").is_dir()  # AOF persistence is on
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    out = log.read_bytes()
    assert proc.returncode == 0, out.decode()
    leftovers = subprocess.run(["pgrep", "-f", str(config)], capture_output=True, text=True).stdout
    assert leftovers == "", f"processes left running: {leftovers}"
    assert b"stopped" in out
