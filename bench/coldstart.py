"""``coldstart``: the local autoscaler end to end, under ``tidal up`` with zero workers to start with.

Each cycle submits one short job to an empty fleet and times job → first worker registered and
job → succeeded; then the same job again with that worker warm (the baseline: the cold-start
overhead is the difference); then a burst of sleep jobs, recording the worker count over time;
then how long after the burst's last job the fleet is back to zero. ``tidal up`` is stopped
with SIGINT and every process it started is checked to be gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
import redis.asyncio as aioredis

from bench.common import REPO_ROOT, figure, ratio, save
from bench.realstack import descendants, http_up, still_running, wait_for
from core import keys
from core.embedded import free_port

MODEL = "sleep"
CONFIG = """
[api]
port = {api_port}
[redis]
data_dir = "{tmp}/valkey"
port = {redis_port}
[worker]
heartbeat_interval_s = 0.5
heartbeat_ttl_s = 2.0
[autoscaler]
enabled = true
provider = "local"
interval_s = {interval_s}
acceptable_wait_s = {acceptable_wait_s}
scale_down_window_s = {scale_down_window_s}
idle_timeout_s = {idle_timeout_s}
max_step = 4
stop_grace_s = 10
instances_dir = "{tmp}/instances"
[models.sleep]
handler = "worker.handlers.sleep:Sleep"
min_workers = 0
max_workers = {max_workers}
mean_run_s = {mean_run_s}
options = {{ ms = {burst_ms} }}
"""
SCALER = {"interval_s": 1.0, "acceptable_wait_s": 1.0, "scale_down_window_s": 3.0, "idle_timeout_s": 5.0,
          "max_workers": 4, "mean_run_s": 0.2}
FIRST_INPUT = {"ms": 10}
BURST_JOBS = 30
BURST_MS = 200
WARM_REPEATS = 5
POLL_S = 0.005
STEP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Plan:
    cycles: int


QUICK = Plan(cycles=1)
FULL = Plan(cycles=5)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", default=None, help="use this server instead of tidal up's embedded Valkey")
    p.add_argument("--cycles", type=int, default=None, help="cold start / burst / scale-to-zero cycles")


class Tracker:
    """Samples ``tidal up``'s process tree while it runs, so workers that outlive their parent are known."""

    def __init__(self, root: int):
        self.root = root
        self.seen: set[tuple[int, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self.seen |= descendants(self.root)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


async def _job(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    r = await client.post(f"/v1/models/{MODEL}/jobs", json=body)
    r.raise_for_status()
    return str(r.json()["id"])


async def _until_done(client: httpx.AsyncClient, job_id: str) -> float:
    while True:
        r = await client.get(f"/v1/jobs/{job_id}", params={"wait": 30})
        r.raise_for_status()
        state = r.json()["status"]
        if state == "succeeded":
            return time.perf_counter()
        if state in ("failed", "canceled", "expired"):
            raise RuntimeError(f"job {job_id} ended {state}: {r.json()}")


async def _workers(r: aioredis.Redis) -> int:
    return int(await r.scard(keys.WORKERS))


async def _until_workers(r: aioredis.Redis, pred: Any, timeout_s: float) -> float:
    deadline = time.perf_counter() + timeout_s
    while not pred(await _workers(r)):
        if time.perf_counter() > deadline:
            raise TimeoutError("worker count did not reach the expected value")
        await asyncio.sleep(POLL_S)
    return time.perf_counter()


async def _cycle(client: httpx.AsyncClient, r: aioredis.Redis) -> dict[str, Any]:
    if await _workers(r):
        raise RuntimeError("the fleet is not at zero before a cold start")
    t0 = time.perf_counter()
    job_id = await _job(client, {"input": FIRST_INPUT})
    registered, done = await asyncio.wait_for(
        asyncio.gather(_until_workers(r, lambda n: n > 0, STEP_TIMEOUT_S), _until_done(client, job_id)),
        STEP_TIMEOUT_S)
    warm = []
    for _ in range(WARM_REPEATS):
        w0 = time.perf_counter()
        warm.append(await _until_done(client, await _job(client, {"input": FIRST_INPUT})) - w0)

    timeline: list[tuple[float, int]] = []
    b0 = time.perf_counter()
    ids = await asyncio.gather(*(_job(client, {"input": {"ms": BURST_MS}}) for _ in range(BURST_JOBS)))
    sampling = True

    async def sample() -> None:
        while sampling:
            timeline.append((time.perf_counter() - b0, await _workers(r)))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    ends = await asyncio.wait_for(asyncio.gather(*(_until_done(client, i) for i in ids)), STEP_TIMEOUT_S)
    last = max(ends)
    limit = SCALER["idle_timeout_s"] + SCALER["scale_down_window_s"] + STEP_TIMEOUT_S
    one = await _until_workers(r, lambda n: n <= 1, limit)
    zero = await _until_workers(r, lambda n: n == 0, limit)
    sampling = False
    await sampler
    timeline.append((zero - b0, 0))  # the sampler stops before the last drop
    return {
        "cold_to_registered_s": registered - t0,
        "cold_to_succeeded_s": done - t0,
        "warm_succeeded_s": float(np.median(warm)),
        "burst_makespan_s": last - b0,
        "burst_peak_workers": max(n for _, n in timeline),
        "scale_down_to_one_s": one - last,
        "scale_down_to_zero_s": zero - last,
        "timeline": [[round(t, 3), n] for t, n in timeline],
    }


async def _cycles(api_url: str, redis_url: str, cycles: int) -> list[dict[str, Any]]:
    r = aioredis.from_url(redis_url, decode_responses=True)
    try:
        async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
            return [await _cycle(client, r) for _ in range(cycles)]
    finally:
        await r.aclose()


def _stop(up: subprocess.Popen[bytes], tracker: Tracker) -> dict[str, Any]:
    t0 = time.perf_counter()
    if up.poll() is None:
        up.send_signal(signal.SIGINT)
    try:
        up.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(up.pid, signal.SIGKILL)
        up.wait()
    stop_s = time.perf_counter() - t0
    tracker.close()
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not still_running(tracker.seen), 10, "tidal up's children", poll_s=0.1)
    left = still_running(tracker.seen)
    for pid, _ in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return {"stop_s": stop_s, "exit_code": up.returncode, "processes_seen": len(tracker.seen),
            "left_running": len(left)}


def _plot(cycles: list[dict[str, Any]], out: Path) -> str:
    fig, axes = figure(1, 2)
    ax = axes[0][0]
    names = ["to registered", "to succeeded", "warm"]
    vals = [[c["cold_to_registered_s"] for c in cycles], [c["cold_to_succeeded_s"] for c in cycles],
            [c["warm_succeeded_s"] for c in cycles]]
    ax.bar(names, [float(np.median(v)) for v in vals])
    for i, v in enumerate(vals):
        ax.plot([i] * len(v), v, "k.", ms=4)
    ax.set(ylabel="s (median, dots: cycles)", title="first job on an empty fleet vs warm")
    ax = axes[0][1]
    for i, c in enumerate(cycles):
        t = [p[0] for p in c["timeline"]]
        ax.step(t, [p[1] for p in c["timeline"]], where="post", label=f"cycle {i + 1}")
    ax.set(xlabel=f"s since a burst of {BURST_JOBS} x {BURST_MS} ms jobs", ylabel="registered workers",
           title="burst, then scale to zero")
    ax.legend(fontsize=8)
    return save(fig, out / "coldstart.png")


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = Plan(args.cycles or (QUICK if args.quick else FULL).cycles)
    with tempfile.TemporaryDirectory(prefix="tidal-coldstart-") as tmp:
        api_port, redis_port = free_port(), free_port()
        config = Path(tmp) / "tidal.toml"
        config.write_text(CONFIG.format(api_port=api_port, redis_port=redis_port, tmp=tmp, burst_ms=BURST_MS,
                                        **SCALER))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDAL_") and k != "REDIS_URL"}
        redis_url = args.redis_url or f"redis://127.0.0.1:{redis_port}"
        if args.redis_url:
            env["REDIS_URL"] = args.redis_url
        log = open(Path(tmp) / "up.log", "wb")  # noqa: SIM115 - closed in the finally below
        up = subprocess.Popen([sys.executable, "-m", "launcher.cli", "--config", str(config), "--log-level", "WARNING",
                               "up"], cwd=REPO_ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
        tracker = Tracker(up.pid)
        api_url = f"http://127.0.0.1:{api_port}"
        t0 = time.perf_counter()
        stopped: dict[str, Any] = {}
        try:
            wait_for(lambda: http_up(f"{api_url}/healthz"), 60, "tidal up's API")
            up_s = time.perf_counter() - t0
            cycles = asyncio.run(_cycles(api_url, redis_url, plan.cycles))
        except BaseException:
            stopped = _stop(up, tracker)
            log.close()
            print((Path(tmp) / "up.log").read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        stopped = _stop(up, tracker)
        log.close()
        if args.redis_url:
            with contextlib.closing(redis.Redis.from_url(args.redis_url)) as r:
                r.delete(keys.AUTOSCALER_LOCK, keys.AUTOSCALER_STATE)
    cold, reg, warm = ([c[k] for c in cycles] for k in ("cold_to_succeeded_s", "cold_to_registered_s",
                                                         "warm_succeeded_s"))
    med = {k: float(np.median(v)) for k, v in (("cold", cold), ("registered", reg), ("warm", warm))}
    return {
        "config": {**SCALER, "cycles": plan.cycles, "first_job_input": FIRST_INPUT, "burst_jobs": BURST_JOBS,
                   "burst_ms": BURST_MS, "warm_repeats": WARM_REPEATS, "heartbeat_interval_s": 0.5,
                   "redis": "given --redis-url" if args.redis_url else "tidal up's embedded Valkey"},
        "up_to_api_ready_s": up_s,
        "cycles": cycles,
        "median": {
            "cold_to_registered_s": med["registered"],
            "cold_to_succeeded_s": med["cold"],
            "warm_succeeded_s": med["warm"],
            "cold_start_overhead_s": med["cold"] - med["warm"],
            "burst_makespan_s": float(np.median([c["burst_makespan_s"] for c in cycles])),
            "scale_down_to_zero_s": float(np.median([c["scale_down_to_zero_s"] for c in cycles])),
        },
        "ratios": {"cold_over_warm": ratio(med["cold"], med["warm"])},
        "shutdown": stopped,
        "plot": _plot(cycles, args.out),
    }
