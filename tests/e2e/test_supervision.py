"""`tidal up` under fire: kill -9 Valkey, the API, the dispatcher and the autoscaler in turn, under load.

Each comes back (Valkey with its AOF: no job acknowledged more than a second before the kill is
lost), the others carry on without a restart of their own, and the supervisor says why it
restarted each one.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from bench.realstack import descendants
from core import keys
from tests.procs import free_port, start_up, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CONFIG = """
[api]
port = {port}
[redis]
data_dir = "{tmp}/valkey"
port = {redis_port}
[worker]
heartbeat_interval_s = 0.5
heartbeat_ttl_s = 3.0
[dispatcher]
tick_s = 0.5
[autoscaler]
enabled = true
interval_s = 0.3
acceptable_wait_s = 1.0
instances_dir = "{tmp}/instances"
[models.sleep]
handler = "worker.handlers.sleep:Sleep"
min_workers = 2
max_workers = 2
mean_run_s = 0.02
"""
TERMINAL = {"succeeded", "failed", "canceled", "expired"}
ROLES = {"valkey": "valkey-server", "api": "launcher.cli api", "dispatcher": "launcher.cli dispatcher",
         "autoscaler": "launcher.cli autoscale"}


def roles(root: int) -> dict[str, int]:
    """The pid of each role under ``tidal up``."""
    found = {}
    for pid, _ in descendants(root):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        for role, needle in ROLES.items():
            if needle in cmd and "core.embedded" not in cmd:
                found[role] = pid
    return found


def worker_pids(instances: Path) -> set[int]:
    return {json.loads(p.read_text())["pid"] for p in instances.glob("*.json")}


class Load(threading.Thread):
    """Sleep jobs submitted steadily, each retried with its Idempotency-Key until acknowledged."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.accepted: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self.stop.is_set():
                key = uuid.uuid4().hex
                while not self.stop.is_set():
                    try:
                        r = http.post("/v1/models/sleep/jobs", json={"input": {"ms": 20}},
                                      headers={"Idempotency-Key": key})
                    except httpx.TransportError:
                        time.sleep(0.05)
                        continue
                    if r.status_code in (200, 202):
                        self.accepted.setdefault(r.json()["id"], time.time())
                        break
                    time.sleep(0.05)
                time.sleep(0.03)


def job_runs(url: str) -> bool:
    """A job submitted now succeeds (retrying while the API or Redis is away)."""
    try:
        with httpx.Client(base_url=url, timeout=15) as http:
            r = http.post("/v1/models/sleep/jobs", json={"input": {"ms": 1}, "priority": "high"})
            if r.status_code != 202:
                return False
            return bool(http.get(f"/v1/jobs/{r.json()['id']}", params={"wait": 10}).json()["status"] == "succeeded")
    except (httpx.TransportError, ValueError, KeyError):
        return False


def test_every_child_comes_back_and_the_others_carry_on(tmp_path: Path) -> None:
    port, redis_port = free_port(), free_port()
    config = tmp_path / "tidal.toml"
    config.write_text(CONFIG.format(port=port, redis_port=redis_port, tmp=tmp_path))
    log = tmp_path / "up.log"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    up = start_up(config, log, env)
    url = f"http://127.0.0.1:{port}"
    r = redis.Redis(port=redis_port, decode_responses=True)
    load = Load(url)
    try:
        wait_for(lambda: "Tidal is up" in log.read_text(), timeout_s=60, what="tidal up")
        wait_for(lambda: len(worker_pids(tmp_path / "instances")) == 2 and job_runs(url), timeout_s=60,
                 what="two workers")
        workers = worker_pids(tmp_path / "instances")
        load.start()
        wait_for(lambda: len(load.accepted) > 20, what="the load")
        valkey_killed_at = 0.0
        for victim in ("valkey", "api", "dispatcher", "autoscaler"):
            before = roles(up.pid)
            assert set(before) == set(ROLES), before
            if victim == "valkey":
                valkey_killed_at = time.time()
            os.kill(before[victim], signal.SIGKILL)
            wait_for(lambda v=victim, b=before: roles(up.pid).get(v, b[v]) != b[v],  # type: ignore[misc]
                     timeout_s=30, what=f"a new {victim}")
            wait_for(lambda: job_runs(url), timeout_s=60, what=f"jobs running again after the {victim} kill")
            after = roles(up.pid)
            # Nobody else was restarted: each reconnected by itself.
            assert {k: v for k, v in after.items() if k != victim} == \
                {k: v for k, v in before.items() if k != victim}, (victim, before, after)
            assert worker_pids(tmp_path / "instances") == workers
            if victim == "autoscaler":
                # The new autoscaler takes the lock and decides again.
                killed_at = time.time()
                wait_for(lambda t=killed_at: float(r.hget(keys.model_scale("sleep"), "at") or 0) > t,  # type: ignore[misc]
                         timeout_s=30, what="the new autoscaler's first decision")
        load.stop.set()
        load.join(timeout=20)
        ids = list(load.accepted)

        def ended() -> bool:
            states = [r.hget(keys.job(j), "state") for j in ids]
            return all(s in TERMINAL or s is None for s in states)

        wait_for(ended, timeout_s=60, what="every accepted job to end")
        lost = [j for j in ids if not r.exists(keys.job(j))]
        assert all(valkey_killed_at - 1.0 < load.accepted[j] <= valkey_killed_at for j in lost), lost
        assert {r.hget(keys.job(j), "state") for j in ids if j not in lost} == {"succeeded"}
    finally:
        load.stop.set()
        up.send_signal(signal.SIGINT)
        up.wait(timeout=90)
        r.close()
    text = log.read_text()
    for name in ("valkey", "api", "dispatcher", "autoscaler"):
        assert f"{name} exited with" in text, f"no log line says why {name} was restarted"
    assert text.count(" exited with ") == 4, [line for line in text.splitlines() if " exited with " in line]
    assert up.returncode == 0
