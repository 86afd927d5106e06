"""`tidal up` from start to Ctrl-C: "Tidal is up" means it, a crashing child backs off, long jobs finish."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs import free_port, start_up, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

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
[models.sleep]
handler = "worker.handlers.sleep:Sleep"
local_workers = {workers}
"""


class Up:
    def __init__(self, tmp: Path, workers: int = 1, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "tidal.toml"
        self.config.write_text(CONFIG.format(port=self.port, tmp=tmp, workers=workers))
        self.log = tmp / "up.log"
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        self.proc = start_up(self.config, self.log, env)
        self.interrupted = False

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.interrupted = True

    def finish(self, timeout_s: float = 90) -> str:
        if not self.interrupted:
            self.interrupt()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        leftovers = subprocess.run(["pgrep", "-f", str(self.config)], capture_output=True, text=True).stdout
        assert leftovers == "", f"processes left running: {leftovers}"
        return self.text()


@pytest.fixture
def up_factory(tmp_path: Path) -> Iterator[list[Up]]:
    started: list[Up] = []
    try:
        yield started
    finally:
        for up in started:
            if up.proc.poll() is None:
                up.proc.kill()
                up.proc.wait()


def test_tidal_is_up_is_said_only_once_the_api_answers(tmp_path: Path, up_factory: list[Up]) -> None:
    up = Up(tmp_path, workers=0)
    up_factory.append(up)
    wait_for(lambda: "Tidal is up" in up.text() or up.proc.poll() is not None, timeout_s=60, what="Tidal is up")
    # A user reads the line and types curl at once: the API must already answer.
    assert up.healthy(), up.text()
    assert up.finish().count("Tidal is up") == 1


def test_a_child_that_keeps_crashing_backs_off_and_says_why(tmp_path: Path, up_factory: list[Up]) -> None:
    # The API's port is taken, so the API exits at every start until it is freed.
    blocker = socket.create_server(("127.0.0.1", free_port()))
    port = blocker.getsockname()[1]
    up = Up(tmp_path, workers=0, port=port)
    up_factory.append(up)
    try:
        pattern = re.compile(r"api exited with status \d+ after [\d.]+s; its last output: .*address already in use.*"
                             r"restarting in ([\d.]+)s")
        wait_for(lambda: len(pattern.findall(up.text())) >= 4, timeout_s=60, what="four API crashes")
        delays = [float(d) for d in pattern.findall(up.text())]
        assert delays == sorted(delays) and delays[3] > delays[0], delays  # growing, not a tight loop
        assert "exits in a row" in up.text()
    finally:
        blocker.close()
    wait_for(up.healthy, timeout_s=60, what="the API once its port is free")
    wait_for(lambda: "Tidal is up" in up.text(), timeout_s=10, what="Tidal is up")
    up.finish()


def running_job(up: Up, http: httpx.Client, ms: int) -> str:
    """Once `tidal up` and its worker are up, a sleep job of ``ms`` that is running."""
    wait_for(up.healthy, timeout_s=60, what="tidal up")
    wait_for(lambda: http.get("/v1/models").json()["models"][0]["workers"] == 1, what="the worker")
    job_id: str = http.post("/v1/models/sleep/jobs", json={"input": {"ms": ms}}).json()["id"]
    wait_for(lambda: http.get(f"/v1/jobs/{job_id}").json()["status"] == "running", what="the job to run")
    return job_id


def test_ctrl_c_lets_a_job_longer_than_15_s_finish(tmp_path: Path, up_factory: list[Up]) -> None:
    up = Up(tmp_path)
    up_factory.append(up)
    with httpx.Client(base_url=up.url, timeout=60) as http:
        job_id = running_job(up, http, 17_000)
        up.interrupt()
        # The API stops only after the workers, so the job's end can still be read from it.
        job = http.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
    assert job["status"] == "succeeded", job
    text = up.finish()
    assert up.proc.returncode == 0 and "did not stop in time" not in text


def test_a_second_ctrl_c_stops_running_jobs_at_once(tmp_path: Path, up_factory: list[Up]) -> None:
    up = Up(tmp_path)
    up_factory.append(up)
    with httpx.Client(base_url=up.url, timeout=60) as http:
        running_job(up, http, 120_000)
    up.interrupt()
    wait_for(lambda: "stopping" in up.text(), what="the first Ctrl-C to be seen")
    time.sleep(1.0)
    assert up.proc.poll() is None, "one Ctrl-C waits for the running job"
    up.interrupt()
    text = up.finish(timeout_s=60)
    assert "second stop signal" in text and up.proc.returncode == 0
