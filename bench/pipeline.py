"""``pipeline``: the real stack end to end against plain rq, on the same Redis server in the same run.

Tidal: the API under uvicorn, one dispatcher and N worker processes (separate processes), jobs
submitted over HTTP and awaited with the ``?wait=`` long poll. rq: N ``SimpleWorker`` processes
on one queue with the JSON serializer, jobs enqueued with ``Queue.enqueue`` and awaited with
``job.latest_result(timeout=)``. Both run a no-op job and a 5 ms sleep under the same closed-loop
client load, then one job at a time. Command counts are ``INFO commandstats`` deltas over each
phase (commands run inside Lua scripts included). Separately, the API's submit handler is
compared with a bare FastAPI endpoint that parses the same body, under the same uvicorn settings.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from bench import loadgen
from bench.common import figure, ratio, save, summary
from bench.realstack import (
    Children,
    add_redis_argument,
    calls_between,
    children,
    command_calls,
    http_up,
    per_job,
    redis_server,
    wait_for,
)
from core import keys
from core.embedded import free_port

CONFIG = """
[api]
port = {port}
[dispatcher]
tick_s = 1.0
[models.echo]
handler = "worker.handlers.echo:Echo"
max_queue_len = 1000000
[models.sleep]
handler = "worker.handlers.sleep:Sleep"
max_queue_len = 1000000
[models.sink]
handler = "worker.handlers.echo:Echo"
max_queue_len = 1000000
"""

# kind -> (Tidal model, Tidal input, rq function, rq argument)
KINDS: dict[str, tuple[str, Any, str, Any]] = {
    "noop": ("echo", {"x": 1}, "bench.rq_jobs.noop", {"x": 1}),
    "sleep_5ms": ("sleep", {"ms": 5}, "bench.rq_jobs.sleep_ms", 5),
}
WARMUP_JOBS = 50
RQ_QUEUE = "bench-rq"


@dataclass(frozen=True)
class Plan:
    workers: int
    jobs: int
    clients: int
    single: int
    submits: int


QUICK = Plan(workers=2, jobs=300, clients=16, single=200, submits=600)
FULL = Plan(workers=4, jobs=3000, clients=32, single=1000, submits=4000)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_redis_argument(p)
    p.add_argument("--workers", type=int, default=None, help="worker processes per side")
    p.add_argument("--jobs", type=int, default=None, help="jobs per kind per side")
    p.add_argument("--clients", type=int, default=None, help="jobs in flight at once")


def _load_doc(load: loadgen.Load, calls: dict[str, int] | None = None) -> dict[str, Any]:
    lat_ms = np.asarray(load.latencies_s) * 1000
    doc: dict[str, Any] = {"jobs": len(load.latencies_s), "failed": load.failed, "elapsed_s": load.elapsed_s,
                           "jobs_per_s": load.jobs_per_s, "latency_ms": summary(lat_ms)}
    if calls is not None:
        doc.update(per_job(calls, len(load.latencies_s)))
    return doc


def _measure(r: redis.Redis, fn: Callable[[], loadgen.Load]) -> tuple[loadgen.Load, dict[str, int]]:
    before = command_calls(r)
    load = fn()
    return load, calls_between(before, command_calls(r))


def _rq_side(url: str, kids: Children, plan: Plan, samples: dict[str, list[float]]) -> dict[str, Any]:
    r = redis.Redis.from_url(url)
    queue = Queue(RQ_QUEUE, connection=r, serializer=JSONSerializer)
    procs = [kids.spawn(["-m", "bench.rq_jobs", url, RQ_QUEUE], "rq-worker") for _ in range(plan.workers)]
    wait_for(lambda: len(Worker.all(queue=queue)) >= plan.workers, 30, "rq workers", poll_s=0.1)
    out: dict[str, Any] = {}
    for kind, (_, _, func, arg) in KINDS.items():
        loadgen.rq_jobs(queue, func, arg, WARMUP_JOBS, plan.clients)
        load, calls = _measure(r, functools.partial(loadgen.rq_jobs, queue, func, arg, plan.jobs, plan.clients))
        out[kind] = _load_doc(load, calls)
        samples[f"rq {kind}"] = load.latencies_s
    func, arg = KINDS["noop"][2:]
    single = loadgen.rq_jobs(queue, func, arg, plan.single, 1)
    out["single_noop"] = _load_doc(single)
    samples["rq single"] = single.latencies_s
    kids.stop(procs)
    r.close()
    return out


def _live_workers(r: redis.Redis, model: str) -> int:
    ids = r.smembers(keys.WORKERS)
    return sum(r.hget(keys.worker_info(str(w)), "model") == model and bool(r.exists(keys.worker_alive(str(w))))
               for w in ids)


def _enough_workers(r: redis.Redis, model: str, n: int) -> bool:
    return _live_workers(r, model) >= n


def _tidal_side(url: str, kids: Children, plan: Plan, samples: dict[str, list[float]]) -> dict[str, Any]:
    r = redis.Redis.from_url(url, decode_responses=True)
    port, bare_port = free_port(), free_port()
    config = kids.log_dir / "tidal.toml"
    config.write_text(CONFIG.format(port=port))
    env = {"REDIS_URL": url, "TIDAL_CONFIG": str(config), "TIDAL_LOG_LEVEL": "WARNING"}
    api_url, bare_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
    kids.spawn(["-m", "launcher.cli", "api"], "api", env)
    kids.spawn(["-m", "bench.bare_api", str(bare_port)], "bare-api")
    kids.spawn(["-m", "launcher.cli", "dispatcher"], "dispatcher", env)
    wait_for(lambda: http_up(f"{api_url}/healthz") and http_up(f"{bare_url}/healthz"), 30, "the APIs")

    body = {"input": {"x": 1}}
    path = "/v1/models/sink/jobs"
    loadgen.posts(bare_url, path, body, WARMUP_JOBS, plan.clients)
    loadgen.posts(api_url, path, body, WARMUP_JOBS, plan.clients)
    bare = loadgen.posts(bare_url, path, body, plan.submits, plan.clients)
    submit, submit_calls = _measure(r, lambda: loadgen.posts(api_url, path, body, plan.submits, plan.clients))
    r.delete(*keys.model_queues("sink"))  # the dispatcher would snapshot their length forever otherwise
    out: dict[str, Any] = {
        "submit_only": {"bare_fastapi": _load_doc(bare), "tidal_api": _load_doc(submit, submit_calls)},
    }

    for kind, (model, job_input, _, _) in KINDS.items():
        procs = [kids.spawn(["-m", "launcher.cli", "worker", "--model", model], f"worker-{model}", env)
                 for _ in range(plan.workers)]
        wait_for(functools.partial(_enough_workers, r, model, plan.workers), 30, f"{model} workers", poll_s=0.1)
        req = {"input": job_input}
        loadgen.tidal_jobs(api_url, model, req, WARMUP_JOBS, plan.clients)
        load, calls = _measure(r, functools.partial(loadgen.tidal_jobs, api_url, model, req, plan.jobs, plan.clients))
        out[kind] = _load_doc(load, calls)
        samples[f"tidal {kind}"] = load.latencies_s
        if kind == "noop":
            single = loadgen.tidal_jobs(api_url, model, req, plan.single, 1)
            out["single_noop"] = _load_doc(single)
            samples["tidal single"] = single.latencies_s
        kids.stop(procs)
    r.close()
    return out


def _ratios(tidal: dict[str, Any], rq: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in (*KINDS, "single_noop"):
        t, q = tidal[kind], rq[kind]
        out[kind] = {
            "jobs_per_s": ratio(t["jobs_per_s"], q["jobs_per_s"]),
            "p50_latency": ratio(t["latency_ms"]["p50"], q["latency_ms"]["p50"]),
            "p99_latency": ratio(t["latency_ms"]["p99"], q["latency_ms"]["p99"]),
        }
        if "commands_per_job" in t:
            out[kind]["commands_per_job"] = ratio(t["commands_per_job"], q["commands_per_job"])
    return out


def _plot(samples: dict[str, list[float]], tidal: dict[str, Any], rq: dict[str, Any], out: Path) -> str:
    fig, axes = figure(1, 3, width=5.0)
    for ax, what in zip(axes[0][:2], ("noop", "sleep_5ms"), strict=True):
        for side in ("tidal", "rq"):
            lat = np.sort(np.asarray(samples[f"{side} {what}"]) * 1000)
            ax.plot(lat, np.arange(1, lat.size + 1) / lat.size, label=side)
        single = np.sort(np.asarray(samples["tidal single"]) * 1000) if what == "noop" else None
        if single is not None:
            ax.plot(single, np.arange(1, single.size + 1) / single.size, label="tidal, one at a time", ls="--")
            rq_single = np.sort(np.asarray(samples["rq single"]) * 1000)
            ax.plot(rq_single, np.arange(1, rq_single.size + 1) / rq_single.size, label="rq, one at a time",
                    ls="--")
        ax.set(xscale="log", xlabel="submit → result visible (ms)", ylabel="CDF", title=f"{what} latency")
        ax.legend(fontsize=8)
    ax = axes[0][2]
    labels = ["noop", "sleep 5ms", "submit only"]
    t_vals = [tidal["noop"]["jobs_per_s"], tidal["sleep_5ms"]["jobs_per_s"],
              tidal["submit_only"]["tidal_api"]["jobs_per_s"]]
    b_vals = [rq["noop"]["jobs_per_s"], rq["sleep_5ms"]["jobs_per_s"],
              tidal["submit_only"]["bare_fastapi"]["jobs_per_s"]]
    x = np.arange(len(labels))
    ax.bar(x - 0.2, t_vals, 0.4, label="Tidal")
    ax.bar(x + 0.2, b_vals, 0.4, label="baseline (rq; bare FastAPI for submit)")
    ax.set_xticks(x, labels)
    ax.set(ylabel="jobs/s (requests/s for submit)", title="throughput")
    ax.legend(fontsize=8)
    return save(fig, out / "pipeline.png")


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = QUICK if args.quick else FULL
    plan = Plan(workers=args.workers or base.workers, jobs=args.jobs or base.jobs,
                clients=args.clients or base.clients, single=base.single, submits=base.submits)
    samples: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    with redis_server(args.redis_url) as url, children() as kids:
        rq = _rq_side(url, kids, plan, samples)
        tidal = _tidal_side(url, kids, plan, samples)
    sub = tidal["submit_only"]
    return {
        "config": {"workers": plan.workers, "jobs_per_kind": plan.jobs, "clients": plan.clients,
                   "single_jobs": plan.single, "submit_requests": plan.submits, "warmup_jobs": WARMUP_JOBS,
                   "redis": "given --redis-url" if args.redis_url else "embedded Valkey, no AOF",
                   "log_level": "WARNING on both sides", "uvicorn": "log_level=warning, access_log=False"},
        "tidal": tidal,
        "rq": rq,
        "ratios_tidal_over_rq": _ratios(tidal, rq),
        "submit_fraction_of_bare_fastapi": ratio(sub["tidal_api"]["jobs_per_s"], sub["bare_fastapi"]["jobs_per_s"]),
        "single_noop_latency_ms": {"p50": tidal["single_noop"]["latency_ms"]["p50"],
                                   "p99": tidal["single_noop"]["latency_ms"]["p99"],
                                   "jobs": tidal["single_noop"]["jobs"]},
        "measure_s": time.perf_counter() - t0,
        "plot": _plot(samples, tidal, rq, args.out),
    }
