"""``roundtrips``: Redis round trips per job on the job path, counted on the client side, per role.

The API, one dispatcher and one worker run in this process, each with its own store (its own
connection pool), as they would in separate processes; jobs go through the API in memory
(httpx's ASGI transport): submit, then the ``?wait=`` long poll until the job ends. A round trip
is one ``send_packed_command`` of redis-py (a command, a pipeline or a script call); it is
credited to the role whose task sent it. Timed work is pushed out of the window (heartbeat
every 60 s, sweep every 60 s), so what is counted is what each job costs. Server-side commands
(``INFO commandstats`` deltas, commands inside scripts included) are reported beside them.
Jobs run one at a time (``sequential``), then ``clients`` at a time (``concurrent``). CPU per
job is this one process's (every role and the client together), so a change's cost shows
even on a loaded machine where throughput does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import redis
import redis.asyncio.connection as aioconn

from api.app import create_app
from bench.realstack import add_redis_argument, calls_between, command_calls, per_job, redis_server
from core.settings import DispatcherSettings, ModelSettings, Settings, WorkerSettings
from core.store import Store
from dispatcher.service import Dispatcher
from worker.handler import load_handler
from worker.runtime import Worker, WorkerIdentity

MODEL = "echo"
ROLES = ("api", "dispatcher", "worker")
WAIT_S = 30

_role: contextvars.ContextVar[str] = contextvars.ContextVar("role", default="other")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_redis_argument(p)
    p.add_argument("--jobs", type=int, default=None, help="jobs per phase")
    p.add_argument("--clients", type=int, default=None, help="jobs in flight at once in the concurrent phase")


class Counts:
    """Round trips and the commands in them, by role."""

    def __init__(self) -> None:
        self.trips: Counter[str] = Counter()
        self.commands: dict[str, Counter[str]] = {r: Counter() for r in (*ROLES, "other")}

    def snapshot(self) -> tuple[Counter[str], dict[str, Counter[str]]]:
        return Counter(self.trips), {r: Counter(c) for r, c in self.commands.items()}


def _names(packed: Any) -> list[str]:
    """Command names in a packed RESP payload (one, or several for a pipeline)."""
    data = b"".join(packed) if isinstance(packed, list | tuple) else bytes(packed)
    names, parts = [], data.split(b"\r\n")
    for i, part in enumerate(parts):
        if part.startswith(b"*") and i + 2 < len(parts):
            names.append(parts[i + 2].decode(errors="replace").upper())
    return names


@contextlib.contextmanager
def _counting(counts: Counts) -> Any:
    original = aioconn.AbstractConnection.send_packed_command

    async def counted(self: Any, command: Any, check_health: bool = True) -> None:
        role = _role.get()
        counts.trips[role] += 1
        counts.commands[role].update(_names(command))
        await original(self, command, check_health)

    aioconn.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield
    finally:
        aioconn.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def _settings(url: str) -> Settings:
    s = Settings(
        models={MODEL: ModelSettings(handler="worker.handlers.echo:Echo", max_queue_len=1_000_000)},
        dispatcher=DispatcherSettings(tick_s=60.0),
        worker=WorkerSettings(heartbeat_interval_s=60.0, heartbeat_ttl_s=300.0),
    )
    s.redis.url = url
    return s


async def _one(client: httpx.AsyncClient) -> bool:
    r = await client.post(f"/v1/models/{MODEL}/jobs", json={"input": {"x": 1}})
    r.raise_for_status()
    job_id = r.json()["id"]
    while True:
        r = await client.get(f"/v1/jobs/{job_id}", params={"wait": WAIT_S})
        r.raise_for_status()
        if r.json()["status"] in ("succeeded", "failed", "canceled", "expired"):
            return bool(r.json()["status"] == "succeeded")


async def _load(client: httpx.AsyncClient, jobs: int, clients: int) -> int:
    left, ok = jobs, 0

    async def loop() -> None:
        nonlocal left, ok
        while left > 0:
            left -= 1
            succeeded = await _one(client)
            ok += succeeded

    await asyncio.gather(*(loop() for _ in range(clients)))
    return ok


@contextlib.asynccontextmanager
async def _stack(url: str, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    stores = {r: Store.from_url(url, result_ttl_s=settings.api.result_ttl_s) for r in ("dispatcher", "worker")}
    stop = asyncio.Event()
    _role.set("dispatcher")
    dispatcher = asyncio.create_task(Dispatcher(stores["dispatcher"], settings).run(stop))
    _role.set("worker")
    cfg = settings.models[MODEL]
    worker = Worker(stores["worker"], WorkerIdentity.new(MODEL, cfg.version, cfg.weight, cfg.slots, ""),
                    load_handler(cfg.handler, cfg.options), settings.worker)
    working = asyncio.create_task(worker.run())
    _role.set("api")
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://tidal", timeout=WAIT_S + 30
        ) as client:
            yield client
    finally:
        _role.set("worker")
        await worker.drain()
        await working
        stop.set()
        dispatcher.cancel()  # it may be waiting for events until its next sweep
        await asyncio.gather(dispatcher, return_exceptions=True)
        for store in stores.values():
            await store.close()


def _phase(counts: Counts, before: tuple[Counter[str], dict[str, Counter[str]]], server: dict[str, int],
           jobs: int, ok: int, elapsed_s: float, cpu_s: float) -> dict[str, Any]:
    trips, commands = counts.snapshot()
    trips.subtract(before[0])
    by_role = {}
    for role in ROLES:
        cmds = commands[role]
        cmds.subtract(before[1][role])
        by_role[role] = {
            "round_trips_per_job": trips[role] / jobs,
            "commands_per_job": {k: round(v / jobs, 3) for k, v in sorted(cmds.items()) if v > 0},
        }
    return {
        "jobs": jobs, "succeeded": ok, "elapsed_s": elapsed_s, "cpu_ms_per_job": cpu_s * 1000 / jobs,
        "round_trips_per_job": sum(trips[r] for r in ROLES) / jobs,
        "other_round_trips": trips["other"],
        "by_role": by_role,
        "server": per_job(server, jobs),
    }


async def _measure(url: str, jobs: int, clients: int) -> dict[str, Any]:
    counts = Counts()
    raw = redis.Redis.from_url(url)
    out: dict[str, Any] = {}
    with _counting(counts):
        async with _stack(url, _settings(url)) as client:
            await _load(client, 20, 1)  # warm-up: scripts loaded, connections open
            for name, concurrency in (("sequential", 1), ("concurrent", clients)):
                before, server = counts.snapshot(), command_calls(raw)
                t0, cpu0 = time.perf_counter(), time.process_time()
                ok = await _load(client, jobs, concurrency)
                elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                out[name] = _phase(counts, before, calls_between(server, command_calls(raw)), jobs, ok, elapsed, cpu)
    raw.close()
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    jobs = args.jobs or (200 if args.quick else 1000)
    clients = args.clients or 16
    with redis_server(args.redis_url) as url:
        result = asyncio.run(_measure(url, jobs, clients))
    return {
        "config": {"jobs_per_phase": jobs, "clients": clients, "model": MODEL, "workers": 1, "dispatchers": 1,
                   "excluded": "heartbeats and sweeps (intervals set to 60 s)"},
        **result,
    }
