"""`tidal up` with the autoscaler: zero workers, a burst brings them up, idleness takes them away."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from core.procfs import running
from tests.procs import free_port, start_up, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CONFIG = """
[api]
port = {port}
[redis]
data_dir = "{tmp}/valkey"
[worker]
heartbeat_interval_s = 0.2
heartbeat_ttl_s = 1.0
[dispatcher]
tick_s = 0.2
[autoscaler]
enabled = true
interval_s = 0.3
# The SLO (p95 wait) is longer than a local worker's cold start (~2 s), so a burst is worth more
# workers: they start queued jobs within it. With a target shorter than the cold start, every job
# of a burst that has stopped arriving starts late whatever is launched, and one worker serves it.
acceptable_wait_s = 3.0
scale_down_window_s = 1.0
idle_timeout_s = 3.0
max_step = 3
instances_dir = "{tmp}/instances"
stop_grace_s = 10
[models.sleep]
handler = "worker.handlers.sleep:Sleep"
options = {{ ms = 100 }}
mean_run_s = 0.1
min_workers = 0
max_workers = 3
"""


pid_alive = running


def start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str, Path, Path]:
    """`tidal up` on the config above: (process, API url, config path, log path)."""
    port = free_port()
    config = tmp_path / "tidal.toml"
    log = tmp_path / "up.log"
    config.write_text(CONFIG.format(port=port, tmp=tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return start_up(config, log, env), f"http://127.0.0.1:{port}", config, log


def test_scale_from_zero_to_n_and_back(tmp_path: Path) -> None:
    proc, url, config, log = start(tmp_path)
    worker_pids: set[int] = set()

    def sleep_model(http: httpx.Client) -> dict[str, int]:
        return next(m for m in http.get("/v1/models").json()["models"] if m["name"] == "sleep")  # type: ignore[no-any-return]

    try:
        with httpx.Client(base_url=url, timeout=40) as http:
            wait_for(lambda: _api_up(http), timeout_s=60, what="tidal up")
            assert sleep_model(http)["workers"] == 0  # starts with zero workers
            ids = [http.post("/v1/models/sleep/jobs", json={"input": {"ms": 100}}).json()["id"] for _ in range(50)]
            peak = 0

            def all_done() -> bool:
                nonlocal peak
                peak = max(peak, sleep_model(http)["workers"])
                for rec in (tmp_path / "instances").glob("*.json"):
                    worker_pids.add(json.loads(rec.read_text())["pid"])
                return all(http.get(f"/v1/jobs/{j}").json()["status"] == "succeeded" for j in ids[-5:])

            wait_for(all_done, timeout_s=90, what="50 jobs")
            assert {http.get(f"/v1/jobs/{j}").json()["status"] for j in ids} == {"succeeded"}
            assert peak > 1, "a burst of 50 jobs must bring up more than one worker"
            wait_for(lambda: sleep_model(http)["workers"] + sleep_model(http)["workers_draining"] == 0,
                     timeout_s=60, what="scale to zero after the idle window")
            assert "idle" in str(sleep_model(http)["scale_reason"])
            wait_for(lambda: not any(pid_alive(p) for p in worker_pids), timeout_s=30, what="worker exit")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    out = log.read_bytes()
    assert proc.returncode == 0, out.decode()[-3000:]
    assert worker_pids and not any(pid_alive(p) for p in worker_pids)
    assert b"[worker local-" in out and b"succeeded" in out  # autoscaled workers' logs reach the terminal
    assert subprocess.run(["pgrep", "-f", str(config)], capture_output=True, text=True).stdout == ""


def test_ctrl_c_with_autoscaled_workers_running_leaves_nothing(tmp_path: Path) -> None:
    proc, url, _, log = start(tmp_path)
    pids: set[int] = set()
    try:
        with httpx.Client(base_url=url, timeout=40) as http:
            def running() -> bool:
                try:
                    job = http.get(f"/v1/jobs/{job_id}").json()
                except (httpx.TransportError, NameError):
                    return False
                return job["status"] == "running"

            wait_for(lambda: _api_up(http), timeout_s=60, what="tidal up")
            job_id = http.post("/v1/models/sleep/jobs", json={"input": {"ms": 2000}}).json()["id"]
            wait_for(running, timeout_s=60, what="a worker running the job")
            pids = {json.loads(r.read_text())["pid"] for r in (tmp_path / "instances").glob("*.json")}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
    out = log.read_bytes()
    assert proc.returncode == 0, out.decode()[-3000:]
    assert pids and not any(pid_alive(p) for p in pids)
    assert b"drain" in out or b"stopped" in out


def _api_up(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False
