"""Closed-loop clients: a fixed number of jobs, a bounded number in flight, submit-to-result latency each.

``tidal_jobs`` goes through the HTTP API (submit, then ``GET ?wait=`` long poll); ``rq_jobs``
through rq's client (``Queue.enqueue``, then ``job.latest_result(timeout=)``, rq's own blocking
wait). Both record when each job's result became visible to the client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from rq import Queue

TERMINAL = frozenset({"succeeded", "failed", "canceled", "expired"})
WAIT_S = 30


@dataclass
class Load:
    latencies_s: list[float] = field(default_factory=list)
    failed: int = 0
    elapsed_s: float = 0.0

    @property
    def jobs_per_s(self) -> float:
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s else float("nan")


async def _one_tidal(client: httpx.AsyncClient, model: str, body: dict[str, Any]) -> tuple[float, bool]:
    t0 = time.perf_counter()
    r = await client.post(f"/v1/models/{model}/jobs", json=body)
    r.raise_for_status()
    job_id = r.json()["id"]
    while True:
        r = await client.get(f"/v1/jobs/{job_id}", params={"wait": WAIT_S})
        r.raise_for_status()
        state = r.json()["status"]
        if state in TERMINAL:
            return time.perf_counter() - t0, state == "succeeded"


async def _closed_loop(
    base_url: str, n: int, concurrency: int, timeout_s: float,
    one: Callable[[httpx.AsyncClient], Awaitable[tuple[float, bool]]],
) -> Load:
    """``concurrency`` clients each doing ``one`` request after another until ``n`` are done."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    load = Load()
    left = n

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            lat, ok = await one(client)
            load.latencies_s.append(lat)
            load.failed += not ok

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout_s) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        load.elapsed_s = time.perf_counter() - t0
    return load


async def _tidal(base_url: str, model: str, body: dict[str, Any], jobs: int, concurrency: int) -> Load:
    return await _closed_loop(base_url, jobs, concurrency, WAIT_S + 30, lambda c: _one_tidal(c, model, body))


def tidal_jobs(base_url: str, model: str, body: dict[str, Any], jobs: int, concurrency: int) -> Load:
    return asyncio.run(_tidal(base_url, model, body, jobs, concurrency))


async def _posts(base_url: str, path: str, body: dict[str, Any], requests: int, concurrency: int) -> Load:
    async def one(client: httpx.AsyncClient) -> tuple[float, bool]:
        t0 = time.perf_counter()
        r = await client.post(path, json=body)
        return time.perf_counter() - t0, r.status_code == 202

    return await _closed_loop(base_url, requests, concurrency, 30, one)


def posts(base_url: str, path: str, body: dict[str, Any], requests: int, concurrency: int) -> Load:
    """Submit-only load: ``requests`` POSTs, ``concurrency`` at a time; latency is the POST's."""
    return asyncio.run(_posts(base_url, path, body, requests, concurrency))


def _one_rq(queue: Queue, func: str, arg: Any) -> tuple[float, bool]:
    t0 = time.perf_counter()
    job = queue.enqueue(func, arg)
    while True:
        result = job.latest_result(timeout=WAIT_S)
        if result is not None:
            return time.perf_counter() - t0, result.type == result.Type.SUCCESSFUL


def rq_jobs(queue: Queue, func: str, arg: Any, jobs: int, concurrency: int) -> Load:
    load = Load()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        t0 = time.perf_counter()
        for lat, ok in pool.map(lambda _: _one_rq(queue, func, arg), range(jobs)):
            load.latencies_s.append(lat)
            load.failed += not ok
        load.elapsed_s = time.perf_counter() - t0
    return load
