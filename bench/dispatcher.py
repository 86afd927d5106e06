"""``dispatcher``: how many jobs/s one (or two) real dispatcher processes route to M fast fake workers.

A backlog of K jobs is submitted with ``Store.submit`` before the dispatchers start; the clock
runs from their start signal to the last job's ``dispatched_at_s`` (written by the dispatch
script with the dispatcher's own clock). The fake workers (:mod:`bench.fake_workers`) run in
their own process and free each slot as soon as a job lands in it. Workers have one slot and
the default prefetch (1), as a real worker would.

Round trips are counted inside each dispatcher process by wrapping redis-py's
``send_packed_command`` (one call per command, pipeline or script call sent); server-side
commands are ``INFO commandstats`` deltas over the window (every client, Lua-internal
commands included). The baseline is the floor: the dispatch script called in a tight loop
from one client, round-robin over the same workers, with no snapshot and no bound.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.queues import Queue as MpQueue
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

import numpy as np
import redis
import redis.asyncio.connection as aioconn

from bench import fake_workers
from bench.common import figure, ratio, save
from bench.realstack import add_redis_argument, calls_between, command_calls, per_job, redis_server
from core import keys
from core.jobs import NewJob
from core.settings import DispatcherSettings, ModelSettings, Settings
from core.store import Store
from dispatcher.service import Dispatcher

MODEL = "bench"
SUBMIT_BATCH = 50
ROUTE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Plan:
    fleet_sizes: tuple[int, ...]
    dispatchers: tuple[int, ...]
    jobs: int


QUICK = Plan((8, 64), (1, 2), 1500)
FULL = Plan((8, 64, 512), (1, 2), 10_000)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_redis_argument(p)
    p.add_argument("--jobs", type=int, default=None, help="backlog per cell (K)")


def _settings() -> Settings:
    return Settings(models={MODEL: ModelSettings(handler="worker.handlers.echo:Echo", max_queue_len=10_000_000)},
                    dispatcher=DispatcherSettings(tick_s=1.0))


async def _preload(store: Store, jobs: int) -> None:
    now = time.time()
    for start in range(0, jobs, SUBMIT_BATCH):
        await asyncio.gather(*(
            store.submit(NewJob(f"j{i:07d}", MODEL, "1", "{}", timeout_s=60, max_attempts=1),
                         max_queue_len=10_000_000, idempotency_key=None, now=now)
            for i in range(start, min(jobs, start + SUBMIT_BATCH))
        ))


def _count_round_trips() -> Callable[[], int]:
    sent = 0
    original = aioconn.AbstractConnection.send_packed_command

    async def counted(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        await original(self, command, check_health)

    aioconn.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    return lambda: sent


def _dispatcher_proc(url: str, go: MpEvent, stop: MpEvent, out: MpQueue[dict[str, Any]]) -> None:
    sent = _count_round_trips()
    go.wait()

    async def main() -> dict[str, Any]:
        store = Store.from_url(url)
        d = Dispatcher(store, _settings())
        snapshots = 0
        snapshot = store.snapshot

        async def counted_snapshot(models: Any) -> Any:
            nonlocal snapshots
            snapshots += 1
            return await snapshot(models)

        store.snapshot = counted_snapshot  # type: ignore[method-assign]
        halt = asyncio.Event()
        task = asyncio.create_task(d.run(halt))
        while not stop.is_set():
            await asyncio.sleep(0.01)
        halt.set()
        await task
        await store.close()
        return {"dispatched": d.dispatched, "round_trips": sent(), "snapshots": snapshots, "rounds": d.rounds}

    out.put(asyncio.run(main()))


def _drain_proc(url: str, ids: list[str], jobs: int, out: MpQueue[dict[str, Any]]) -> None:
    t0 = time.time()
    stats = asyncio.run(fake_workers.drain(url, MODEL, ids, jobs, ROUTE_TIMEOUT_S))
    out.put({**stats.doc(stats.done_at - t0), "done_at": stats.done_at})


def _last_dispatch(r: redis.Redis, jobs: int) -> float:
    p = r.pipeline(transaction=False)
    for i in range(jobs):
        p.hget(keys.job(f"j{i:07d}"), "dispatched_at_s")
    return max(float(v) for v in p.execute() if v is not None)


async def _prepare(store: Store, r: redis.Redis, m: int, jobs: int) -> list[str]:
    """An empty database with M registered fake workers and a backlog of ``jobs``."""
    r.flushdb()
    ids = fake_workers.worker_ids(m)
    await fake_workers.register(store, MODEL, ids)
    await _preload(store, jobs)
    return ids


def _cell(url: str, m: int, n_disp: int, jobs: int) -> dict[str, Any]:
    r = redis.Redis.from_url(url, decode_responses=True)

    async def setup() -> list[str]:
        store = Store.from_url(url)
        try:
            return await _prepare(store, r, m, jobs)
        finally:
            await store.close()

    ids = asyncio.run(setup())
    ctx = mp.get_context("spawn")
    go, stop = ctx.Event(), ctx.Event()
    results: MpQueue[dict[str, Any]] = ctx.Queue()
    drained: MpQueue[dict[str, Any]] = ctx.Queue()
    procs = [ctx.Process(target=_dispatcher_proc, args=(url, go, stop, results)) for _ in range(n_disp)]
    drainer = ctx.Process(target=_drain_proc, args=(url, ids, jobs, drained))
    for p in (*procs, drainer):
        p.start()
    try:
        time.sleep(1.0)  # the children import and reach go.wait(); the clock starts at go.set()
        before = command_calls(r)
        t0 = time.time()
        go.set()
        drain = drained.get(timeout=ROUTE_TIMEOUT_S + 10)
        calls = calls_between(before, command_calls(r))
        stop.set()
        per_disp = [results.get(timeout=30) for _ in procs]
    finally:
        stop.set()
        for p in (*procs, drainer):
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    if drain["taken"] < jobs:
        raise RuntimeError(f"only {drain['taken']} of {jobs} jobs were routed in {ROUTE_TIMEOUT_S:g}s")
    route_s = _last_dispatch(r, jobs) - t0
    r.close()
    trips = sum(d["round_trips"] for d in per_disp)
    return {
        "workers": m, "dispatchers": n_disp, "jobs": jobs, "route_s": route_s, "jobs_per_s": jobs / route_s,
        "round_trips_per_job": trips / jobs, "snapshots_per_job": sum(d["snapshots"] for d in per_disp) / jobs,
        "jobs_per_round": jobs / max(1, sum(d["rounds"] for d in per_disp)),
        "per_dispatcher": per_disp, "fake_workers": {k: v for k, v in drain.items() if k != "done_at"},
        "server": per_job(calls, jobs),
    }


def _raw(url: str, m: int, jobs: int) -> dict[str, Any]:
    r = redis.Redis.from_url(url, decode_responses=True)

    async def main() -> float:
        store = Store.from_url(url)
        ids = await _prepare(store, r, m, jobs)
        t0 = time.perf_counter()
        for i in range(jobs):
            outcome, _ = await store.dispatch(MODEL, ids[i % m], jobs + 1, time.time())
            assert outcome == "ok", outcome
        elapsed = time.perf_counter() - t0
        await store.close()
        return elapsed

    elapsed = asyncio.run(main())
    r.flushdb()
    r.close()
    return {"workers": m, "jobs": jobs, "elapsed_s": elapsed, "jobs_per_s": jobs / elapsed,
            "round_trips_per_job": 1.0}


def _plot(cells: list[dict[str, Any]], raw: dict[int, dict[str, Any]], plan: Plan, out: Any) -> str:
    fig, axes = figure(1, 2)
    ax = axes[0][0]
    for n in plan.dispatchers:
        xs = [c["workers"] for c in cells if c["dispatchers"] == n]
        ax.plot(xs, [c["jobs_per_s"] for c in cells if c["dispatchers"] == n], marker="o", label=f"{n} dispatcher(s)")
    ax.plot(list(raw), [raw[m]["jobs_per_s"] for m in raw], marker="x", ls="--", label="raw dispatch.lua loop")
    ax.set(xscale="log", xlabel="fake workers (M)", ylabel="jobs routed / s", title="dispatch capacity")
    ax.set_xticks(list(plan.fleet_sizes), [str(m) for m in plan.fleet_sizes])
    ax.legend(fontsize=8)
    ax = axes[0][1]
    for n in plan.dispatchers:
        xs = [c["workers"] for c in cells if c["dispatchers"] == n]
        ax.plot(xs, [c["round_trips_per_job"] for c in cells if c["dispatchers"] == n], marker="o",
                label=f"{n} dispatcher(s)")
    ax.axhline(1.0, ls="--", color="gray", label="raw floor")
    ax.set(xscale="log", xlabel="fake workers (M)", ylabel="round trips / job", title="dispatcher round trips")
    ax.set_xticks(list(plan.fleet_sizes), [str(m) for m in plan.fleet_sizes])
    ax.legend(fontsize=8)
    return save(fig, out / "dispatcher.png")


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = QUICK if args.quick else FULL
    plan = Plan(base.fleet_sizes, base.dispatchers, args.jobs or base.jobs)
    with redis_server(args.redis_url) as url:
        raw = {m: _raw(url, m, plan.jobs) for m in plan.fleet_sizes}
        cells = [_cell(url, m, n, plan.jobs) for m in plan.fleet_sizes for n in plan.dispatchers]
    by = {(c["workers"], c["dispatchers"]): c for c in cells}
    return {
        "config": {"fleet_sizes": list(plan.fleet_sizes), "dispatchers": list(plan.dispatchers), "jobs": plan.jobs,
                   "slots": 1, "prefetch": 1, "tick_s": 1.0,
                   "round_trips": "client side: redis-py send_packed_command calls in the dispatcher processes",
                   "server_commands": "INFO commandstats delta, all clients, Lua-internal included",
                   "redis": "given --redis-url (flushed)" if args.redis_url else "embedded Valkey, no AOF"},
        "raw": [raw[m] for m in plan.fleet_sizes],
        "cells": cells,
        "ratios": {
            str(m): {
                "one_dispatcher_over_raw": ratio(by[m, 1]["jobs_per_s"], raw[m]["jobs_per_s"]),
                **({"two_over_one_dispatcher": ratio(by[m, 2]["jobs_per_s"], by[m, 1]["jobs_per_s"])}
                   if 2 in plan.dispatchers else {}),
            }
            for m in plan.fleet_sizes
        },
        "jobs_per_s_by_fleet": {f"{n}_dispatcher": {str(c["workers"]): c["jobs_per_s"] for c in cells
                                                    if c["dispatchers"] == n} for n in plan.dispatchers},
        "max_fake_worker_busy_fraction": float(np.max([c["fake_workers"]["busy_fraction"] or 0 for c in cells])),
        "plot": _plot(cells, raw, plan, args.out),
    }
