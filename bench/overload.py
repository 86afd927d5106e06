"""``overload``: submits far beyond ``max_queue_len`` for a while; answers, memory and the jobs let in before.

The stack (``bench/localstack.py``: Valkey with its AOF, the API, one dispatcher, two sleep
workers) first gets ``pre`` jobs, half the model's ``max_queue_len``. Then ``clients``
concurrent clients submit as fast as the API answers, for ``seconds``: the backlog fills and
nearly every answer must be 429 with a ``Retry-After``. Once a second, Redis' ``used_memory``
(``INFO memory``), the API process' resident memory (``VmRSS``) and the backlog are sampled.
Then the load stops and every job let in (before or during the overload) must finish.

Bounded means: the backlog never passes ``max_queue_len``, and neither memory keeps growing
with the requests refused: the second half of the overload refuses as many requests as the
first, so its growth is compared with the first half's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from bench.common import figure, save
from bench.localstack import LocalStack, local_stack
from bench.realstack import wait_for
from core import keys

MODEL = "sleep"
TERMINAL = frozenset({"succeeded", "failed", "canceled", "expired"})

CONFIG = """
[api]
port = {api_port}
[dispatcher]
tick_s = 0.5
[models.sleep]
handler = "worker.handlers.sleep:Sleep"
max_queue_len = {max_queue_len}
options = {{ ms = {ms} }}
"""


@dataclass(frozen=True)
class Plan:
    seconds: float
    clients: int = 32
    max_queue_len: int = 200
    workers: int = 2
    ms: int = 50
    settle_s: float = 120.0


QUICK = Plan(seconds=10)
FULL = Plan(seconds=60)


@dataclass
class Tally:
    statuses: Counter[str]
    retry_after: list[int]
    missing_retry_after: int = 0
    accepted: list[str] | None = None


async def flood(url: str, plan: Plan, stop: threading.Event, tally: Tally) -> None:
    limits = httpx.Limits(max_connections=plan.clients, max_keepalive_connections=plan.clients)
    body = {"input": {"ms": plan.ms}}

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                r = await client.post(f"/v1/models/{MODEL}/jobs", json=body)
            except httpx.TransportError as exc:
                tally.statuses[f"transport {type(exc).__name__}"] += 1
                continue
            tally.statuses[str(r.status_code)] += 1
            if r.status_code == 429:
                value = r.headers.get("Retry-After", "")
                if value.isdigit():
                    tally.retry_after.append(int(value))
                else:
                    tally.missing_retry_after += 1
            elif r.status_code == 202 and tally.accepted is not None:
                tally.accepted.append(r.json()["id"])

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(plan.clients)))


def sample(stack: LocalStack, t0: float) -> dict[str, float | int | None]:
    assert stack.api is not None
    return {
        "t_s": round(time.time() - t0, 2),
        "redis_used_memory": int(stack.redis.info("memory")["used_memory"]),
        "api_rss_kb": stack.rss_kb(stack.api.pid),
        "backlog": sum(int(stack.redis.llen(q)) for q in keys.model_queues(MODEL)),
    }


def states(stack: LocalStack, ids: list[str]) -> Counter[str]:
    with stack.redis.pipeline(transaction=False) as p:
        for job_id in ids:
            p.hget(keys.job(job_id), "state")
        return Counter(s or "missing" for s in p.execute())


def run_overload(plan: Plan, out: Path | None = None) -> dict[str, Any]:
    config = CONFIG.replace("{max_queue_len}", str(plan.max_queue_len)).replace("{ms}", str(plan.ms))
    with local_stack(config) as stack:
        stack.start_valkey()
        stack.start_api()
        stack.start_dispatcher()
        for _ in range(plan.workers):
            stack.start_worker(MODEL)
        pre: list[str] = []
        with httpx.Client(base_url=stack.url, timeout=30) as http:
            for _ in range(plan.max_queue_len // 2):
                r = http.post(f"/v1/models/{MODEL}/jobs", json={"input": {"ms": plan.ms}})
                r.raise_for_status()
                pre.append(r.json()["id"])
        tally = Tally(Counter(), [], accepted=[])
        stop = threading.Event()
        t0 = time.time()
        samples = [sample(stack, t0)]
        flooder = threading.Thread(target=lambda: asyncio.run(flood(stack.url, plan, stop, tally)), daemon=True)
        flooder.start()
        halves: list[int] = []
        while time.time() - t0 < plan.seconds:
            time.sleep(1.0)
            samples.append(sample(stack, t0))
            if not halves and time.time() - t0 >= plan.seconds / 2:
                halves.append(len(samples) - 1)
        stop.set()
        flooder.join(timeout=60)
        overload_s = time.time() - t0
        during = list(tally.accepted or [])
        settle_t0 = time.time()
        wait_for(lambda: all(s in TERMINAL for s in states(stack, pre + during)), plan.settle_s,
                 "the jobs let in to finish", poll_s=0.5)
        settle_s = time.time() - settle_t0
        mid = samples[halves[0]] if halves else samples[len(samples) // 2]
        growth = int(samples[-1]["redis_used_memory"] or 0) - int(samples[0]["redis_used_memory"] or 0)
        result = {
            "config": {**asdict(plan), "model": MODEL, "pre_jobs": len(pre)},
            "overload_s": round(overload_s, 2),
            "requests": sum(tally.statuses.values()),
            "requests_per_s": round(sum(tally.statuses.values()) / overload_s, 1),
            "by_status": dict(tally.statuses),
            "retry_after_s": {"missing": tally.missing_retry_after,
                              "min": min(tally.retry_after, default=None),
                              "median": statistics.median(tally.retry_after) if tally.retry_after else None,
                              "max": max(tally.retry_after, default=None)},
            "backlog_max": max(int(s["backlog"] or 0) for s in samples),
            "redis_used_memory": memory_summary([s["redis_used_memory"] for s in samples], mid["redis_used_memory"]),
            # Finished jobs are kept for result_ttl_s: Redis grows with the jobs let in, not the ones refused.
            "redis_growth_per_job_let_in_bytes": round(growth / len(during)) if during else None,
            "api_rss_kb": memory_summary([s["api_rss_kb"] for s in samples], mid["api_rss_kb"]),
            "pre_jobs": dict(states(stack, pre)),
            "jobs_let_in_during": dict(states(stack, during)),
            "settle_s": round(settle_s, 2),
            "samples": samples,
        }
        if out is not None:
            result["plot"] = plot(out / "overload.png", samples, plan)
        return result


def memory_summary(values: list[Any], mid: Any) -> dict[str, int | None]:
    known = [int(v) for v in values if v is not None]
    if not known:
        return {"start": None, "max": None, "end": None, "first_half_growth": None, "second_half_growth": None}
    return {"start": known[0], "max": max(known), "end": known[-1],
            "first_half_growth": int(mid) - known[0] if mid is not None else None,
            "second_half_growth": known[-1] - int(mid) if mid is not None else None}


def plot(path: Path, samples: list[dict[str, Any]], plan: Plan) -> str:
    fig, axes = figure(1, 2, width=6, height=3.5)
    t = [s["t_s"] for s in samples]
    axes[0][0].plot(t, [s["redis_used_memory"] / 2**20 for s in samples], label="Redis used_memory")
    axes[0][0].plot(t, [(s["api_rss_kb"] or 0) / 1024 for s in samples], label="API RSS")
    axes[0][0].set_xlabel("seconds into the overload")
    axes[0][0].set_ylabel("MiB")
    axes[0][0].legend()
    axes[0][1].plot(t, [s["backlog"] for s in samples], label="backlog")
    axes[0][1].axhline(plan.max_queue_len, linestyle="--", color="gray", label="max_queue_len")
    axes[0][1].set_xlabel("seconds into the overload")
    axes[0][1].legend()
    fig.suptitle(f"{plan.clients} clients submitting without pause for {plan.seconds:g}s")
    return save(fig, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=None, help="overload duration (default 60, quick 10)")
    p.add_argument("--clients", type=int, default=None, help="concurrent submitters (default 32)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    overrides = {k: v for k, v in (("seconds", args.seconds), ("clients", args.clients)) if v is not None}
    return run_overload(replace(plan, **overrides), args.out)
