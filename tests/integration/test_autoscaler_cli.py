"""``tidal autoscale --once`` as cron runs it: separate processes, the local provider, real workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from autoscaler.local_provider import LocalProvider
from core import keys

Done = subprocess.CompletedProcess[str]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "instances"
    yield path
    LocalProvider(path).stop_all(timeout_s=10.0)


def autoscale(tmp_path: Path, redis_url: str, instances: Path, *args: str) -> Done:
    config = tmp_path / "tidal.toml"
    config.write_text(
        f'[autoscaler]\ninstances_dir = "{instances}"\n\n'
        '[models.echo]\nhandler = "worker.handlers.echo:Echo"\nmax_workers = 2\n'
    )
    env = {**os.environ, "REDIS_URL": redis_url, "TIDAL_CONFIG": str(config), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "launcher.cli", "autoscale", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )


def records(instances: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(instances.glob("*.json"))] if instances.exists() else []


def test_dry_run_prints_the_decision_and_starts_nothing(
    tmp_path: Path, redis_url: str, r: redis.Redis, instances: Path
) -> None:
    r.rpush(keys.model_queue("echo"), "job-1")
    done = autoscale(tmp_path, redis_url, instances, "--once", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "echo: desired 1, current 0: queued=1 in_flight=0" in done.stdout
    assert "launch 1" in done.stdout
    assert records(instances) == []
    assert r.exists(keys.AUTOSCALER_STATE, keys.model_scale("echo")) == 0


def test_cron_runs_start_one_worker_for_the_first_job_and_no_more(
    tmp_path: Path, redis_url: str, r: redis.Redis, instances: Path
) -> None:
    r.rpush(keys.model_queue("echo"), "job-1")
    first = autoscale(tmp_path, redis_url, instances, "--once")
    assert first.returncode == 0, first.stderr
    (rec,) = records(instances)
    assert rec["pool"] == "echo"

    def registered() -> bool:
        ids = (r.hget(keys.worker_info(str(w)), "instance_id") for w in r.smembers(keys.WORKERS))
        return str(rec["id"]) in ids

    deadline = time.monotonic() + 30
    while not registered():
        assert time.monotonic() < deadline, (instances / f"{rec['id']}.log").read_text()
        time.sleep(0.1)

    second = autoscale(tmp_path, redis_url, instances, "--once")
    assert second.returncode == 0, second.stderr
    assert [x["id"] for x in records(instances)] == [rec["id"]]
    scale = {str(k): str(v) for k, v in r.hgetall(keys.model_scale("echo")).items()}
    assert (scale["desired"], scale["workers"], scale["booting"]) == ("1", "1", "0")


def test_a_held_lock_makes_cron_exit_quietly(
    tmp_path: Path, redis_url: str, r: redis.Redis, instances: Path
) -> None:
    r.rpush(keys.model_queue("echo"), "job-1")
    r.set(keys.AUTOSCALER_LOCK, "another-run", px=60_000)
    done = autoscale(tmp_path, redis_url, instances, "--once")
    assert done.returncode == 0, done.stderr
    assert "holds the lock" in done.stderr
    assert records(instances) == []


def test_loop_brings_a_worker_up_for_a_job_and_stops_it_when_idle(
    tmp_path: Path, redis_url: str, r: redis.Redis, instances: Path
) -> None:
    config = tmp_path / "tidal.toml"
    config.write_text(
        f'[autoscaler]\ninstances_dir = "{instances}"\nscale_down_window_s = 0\nidle_timeout_s = 1\n\n'
        '[models.echo]\nhandler = "worker.handlers.echo:Echo"\nmax_workers = 2\n'
    )
    env = {**os.environ, "REDIS_URL": redis_url, "TIDAL_CONFIG": str(config), "PYTHONPATH": str(REPO)}
    loop = subprocess.Popen(
        [sys.executable, "-m", "launcher.cli", "autoscale", "--interval-s", "0.2"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        r.rpush(keys.model_queue("echo"), "job-1")
        wait_until(lambda: r.hget(keys.model_scale("echo"), "workers") == "1", "a worker to register")
        (rec,) = records(instances)
        r.delete(keys.model_queue("echo"))  # no dispatcher here: the job is withdrawn instead
        wait_until(lambda: records(instances) == [], "the idle worker to be stopped")
        assert r.scard(keys.WORKERS) == 0  # it drained and deregistered
        assert r.hget(keys.model_scale("echo"), "desired") == "0"
    finally:
        loop.terminate()
        _, err = loop.communicate(timeout=20)
    assert loop.returncode == 0, err
    assert f"launched {rec['id']}" in err


def wait_until(cond: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
