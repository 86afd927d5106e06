"""``chaos``: jobs over HTTP while a driver SIGKILLs a worker, a dispatcher, the API and Valkey; then the invariants.

The stack (``bench/localstack.py``): Valkey with its AOF (``appendfsync everysec``), one API,
two dispatchers and a few workers running ``bench.recording:RecordingSleep``, which writes a
line per execution outside Redis. Clients submit sleep jobs of 10-200 ms with an
``Idempotency-Key`` (so a retried submit is the same job) and long-poll most of them with a
random ``wait``, retrying on 503 and on a refused connection. Meanwhile the driver kills, in a
shuffled order and after random pauses, each kind ``rounds`` times: a worker (a busy one when
there is one; a replacement starts at once, as an autoscaler would start one), one of the two
dispatchers (started again at once), the API (started again) and the Valkey server (started
again on the same port and data directory: a restart from its AOF). After each kill a
high-priority probe job is submitted and awaited: the recovery time is kill → probe succeeded.

The load stops once ``jobs`` are accepted and every kill is done (or at ``max_s``); then the
run waits (at most ``settle_s``) for every job to end and for the killed workers to be reaped,
and checks the invariants. Each broken one is a line in ``violations``:

- every job whose submit was acknowledged (202, or 200 for a replay) ends ``succeeded`` or
  ``failed`` with an error saying why; only a job acknowledged within 1 s before a Valkey kill
  may be missing (AOF everysec), and it is counted as lost in that window;
- a job runs more than once only when a worker that ran it was killed (counted from the
  recording file, and compared with Redis' ``executions`` counter);
- nothing is orphaned: no registered worker, heartbeat key, worker queue or active list
  belongs to a dead process, no job is left in any list, and no autoscaler lock is held;
- a long poll gets an answer or a 503 within its ``wait`` (plus ``HANG_SLACK_S``), never a hang;
  a refused or reset connection only while the API is dead;
- no process exits that the driver did not kill (each must reconnect to Redis by itself).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.common import figure, save
from bench.localstack import LocalStack, local_stack
from bench.realstack import wait_for
from bench.recording import read_executions
from core import keys

MODEL = "chaos"
KINDS = ("worker", "dispatcher", "api", "valkey")
TERMINAL = frozenset({"succeeded", "failed", "canceled", "expired"})
AOF_WINDOW_S = 1.0  # appendfsync everysec: what a kill may take back
HANG_SLACK_S = 2.0  # a long poll answering later than its wait plus this is a hang
WAITS_S = (1, 2, 5)
PROBE_TIMEOUT_S = 60.0

CONFIG = """
[api]
port = {api_port}
[worker]
heartbeat_interval_s = 0.5
heartbeat_ttl_s = 3.0
[dispatcher]
tick_s = 0.5
[models.chaos]
handler = "bench.recording:RecordingSleep"
timeout_s = 30
max_attempts = 3
options = {{ path = "{tmp}/executions.log" }}
"""


@dataclass(frozen=True)
class Plan:
    jobs: int
    rounds: int  # kills of each kind
    workers: int
    clients: int
    max_s: float  # the load stops by then, whatever is left
    settle_s: float
    gap_s: tuple[float, float] = (1.0, 3.0)  # pause before each kill, after the last recovery
    ms: tuple[float, float] = (10.0, 200.0)
    seed: int = 7
    kinds: tuple[str, ...] = KINDS


QUICK = Plan(jobs=300, rounds=1, workers=3, clients=10, max_s=45, settle_s=30)
FULL = Plan(jobs=1000, rounds=3, workers=4, clients=16, max_s=240, settle_s=60)


@dataclass(frozen=True)
class PollRecord:
    at: float
    took_s: float
    wait_s: float
    outcome: str  # answer | 503 | 404 | transport | hang | http <status>


@dataclass
class Kill:
    kind: str
    at: float
    target: str
    recovered_at: float | None = None
    reaped_at: float | None = None  # worker kills: its registration and jobs taken back by the reaper
    back_at: float | None = None  # API kills: the new API answers

    def summary(self, t0: float) -> dict[str, Any]:
        def rel(t: float | None) -> float | None:
            return round(t - self.at, 3) if t is not None else None

        return {"kind": self.kind, "at_s": round(self.at - t0, 3), "target": self.target,
                "recovered_s": rel(self.recovered_at), "reaped_s": rel(self.reaped_at), "api_back_s": rel(self.back_at)}


@dataclass
class Ledger:
    """What the clients saw. Written by the load's event loop and the driver thread; read at the end."""

    accepted: dict[str, float] = field(default_factory=dict)  # job id -> when the submit was acknowledged
    submits: Counter[str] = field(default_factory=Counter)
    polls: list[PollRecord] = field(default_factory=list)


# --- the load -----------------------------------------------------------------------------------


async def submit(client: httpx.AsyncClient, body: dict[str, Any], ledger: Ledger, stop: threading.Event
                 ) -> str | None:
    """Submit until acknowledged (the same Idempotency-Key each time, so a retry is the same job)."""
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    while not stop.is_set():
        try:
            r = await client.post(f"/v1/models/{MODEL}/jobs", json=body, headers=headers)
        except httpx.TransportError:
            ledger.submits["transport"] += 1
            await asyncio.sleep(0.1)
            continue
        ledger.submits[str(r.status_code)] += 1
        if r.status_code in (200, 202):
            job_id = str(r.json()["id"])
            ledger.accepted.setdefault(job_id, time.time())
            return job_id
        if r.status_code in (429, 503):
            await asyncio.sleep(min(1.0, float(r.headers.get("Retry-After", "1"))))
            continue
        return None
    return None


async def follow(client: httpx.AsyncClient, job_id: str, rng: random.Random, ledger: Ledger,
                 stop: threading.Event) -> None:
    """Long-poll a job until it ends, retrying a 503 or a refused connection."""
    while not stop.is_set():
        wait = rng.choice(WAITS_S)
        t0 = time.time()
        try:
            r = await client.get(f"/v1/jobs/{job_id}", params={"wait": wait}, timeout=wait + HANG_SLACK_S + 10)
            outcome = {200: "answer", 503: "503", 404: "404"}.get(r.status_code, f"http {r.status_code}")
        except httpx.TimeoutException:
            outcome = "hang"
        except httpx.TransportError:
            outcome = "transport"
        took = time.time() - t0
        if took > wait + HANG_SLACK_S:
            outcome = "hang"
        ledger.polls.append(PollRecord(t0, took, wait, outcome))
        if (outcome == "answer" and r.json()["status"] in TERMINAL) or outcome == "404":
            return
        if outcome != "answer":
            await asyncio.sleep(0.2)


async def load(url: str, plan: Plan, ledger: Ledger, stop: threading.Event) -> None:
    rng = random.Random(plan.seed)

    async def user(i: int, client: httpx.AsyncClient) -> None:
        mine = random.Random(rng.random())
        # Three clients in four follow their jobs; the others only submit, so a backlog builds up.
        follows = i % 4 != 3
        while not stop.is_set():
            job_id = await submit(client, {"input": {"ms": round(mine.uniform(*plan.ms), 1)}}, ledger, stop)
            if job_id is not None and follows:
                await follow(client, job_id, mine, ledger, stop)
            elif not follows:
                await asyncio.sleep(mine.uniform(0.05, 0.3))

    limits = httpx.Limits(max_connections=plan.clients, max_keepalive_connections=plan.clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=15) as client:
        await asyncio.gather(*(user(i, client) for i in range(plan.clients)))


# --- the driver ---------------------------------------------------------------------------------


def probe(url: str, ledger: Ledger) -> float | None:
    """Submit a high-priority job and wait for it; when it succeeded, or None if not within the bound."""
    deadline = time.time() + PROBE_TIMEOUT_S
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    job_id: str | None = None
    with httpx.Client(base_url=url, timeout=10) as http:
        while time.time() < deadline:
            try:
                if job_id is None:
                    r = http.post(f"/v1/models/{MODEL}/jobs", json={"input": {"ms": 10}, "priority": "high"},
                                  headers=headers)
                    if r.status_code in (200, 202):
                        job_id = str(r.json()["id"])
                        ledger.accepted.setdefault(job_id, time.time())
                    else:
                        time.sleep(0.05)
                    continue
                r = http.get(f"/v1/jobs/{job_id}", params={"wait": 2})
                if r.status_code == 200 and r.json()["status"] == "succeeded":
                    return time.time()
                if r.status_code != 200:
                    time.sleep(0.05)
            except httpx.TransportError:
                time.sleep(0.05)
    return None


def kill_worker(stack: LocalStack, rng: random.Random) -> Kill:
    live = [p for p in stack.workers if p.poll() is None]
    ids = {p.pid: stack.worker_id(p.pid) for p in live}
    busy = [p for p in live if ids[p.pid] and stack.redis.llen(keys.worker_active(str(ids[p.pid])))]
    victim = rng.choice(busy or live)
    kill = Kill("worker", time.time(), ids[victim.pid] or f"pid {victim.pid}")
    stack.kill(victim)
    stack.start_worker(MODEL, wait=False)
    return kill


def kill_dispatcher(stack: LocalStack, rng: random.Random) -> Kill:
    victim = rng.choice([p for p in stack.dispatchers if p.poll() is None])
    kill = Kill("dispatcher", time.time(), f"pid {victim.pid}")
    stack.kill(victim)
    stack.start_dispatcher()
    return kill


def kill_api(stack: LocalStack, rng: random.Random) -> Kill:
    assert stack.api is not None
    kill = Kill("api", time.time(), f"pid {stack.api.pid}")
    stack.kill(stack.api)
    stack.start_api(wait=False)
    return kill


def kill_valkey(stack: LocalStack, rng: random.Random) -> Kill:
    kill = Kill("valkey", time.time(), f"pid {stack.valkey_server_pid()}")
    stack.kill_valkey()
    stack.start_valkey()
    return kill


KILLERS: dict[str, Callable[[LocalStack, random.Random], Kill]] = {
    "worker": kill_worker, "dispatcher": kill_dispatcher, "api": kill_api, "valkey": kill_valkey,
}


def drive(stack: LocalStack, plan: Plan, ledger: Ledger, kills: list[Kill], errors: list[str]) -> None:
    rng = random.Random(plan.seed + 1)
    order = [k for k in plan.kinds for _ in range(plan.rounds)]
    rng.shuffle(order)
    try:
        wait_for(lambda: len(ledger.accepted) >= 20, 60, "the load to start")
        for kind in order:
            time.sleep(rng.uniform(*plan.gap_s))
            kill = KILLERS[kind](stack, rng)
            kills.append(kill)
            if kind == "api":
                wait_for(lambda: api_up(stack.url), 60, "the API to come back")
                kill.back_at = time.time()
            kill.recovered_at = probe(stack.url, ledger)
            if kind == "worker":
                wait_for(lambda k=kill: not stack.redis.sismember(keys.WORKERS, k.target), 60,  # type: ignore[misc]
                         "the reaper")
                kill.reaped_at = time.time()
    except Exception as exc:  # the run goes on to its checks, which report it
        errors.append(f"driver: {type(exc).__name__}: {exc}")


def api_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code in (200, 503)
    except httpx.TransportError:
        return False


# --- the checks ---------------------------------------------------------------------------------


def read_jobs(r: redis.Redis, ids: list[str]) -> dict[str, dict[str, str | None]]:
    fields = ("state", "error", "executions", "finished_at_s", "attempt", "worker")
    out: dict[str, dict[str, str | None]] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i: i + 500]
        with r.pipeline(transaction=False) as p:
            for job_id in chunk:
                p.hmget(keys.job(job_id), fields)
            for job_id, values in zip(chunk, p.execute(), strict=True):
                out[job_id] = dict(zip(fields, values, strict=True))
    return out


def settle(stack: LocalStack, ledger: Ledger, kills: list[Kill], bound_s: float) -> dict[str, dict[str, str | None]]:
    """Wait (bounded) until every accepted job ended or is gone and every killed worker was reaped."""
    ids = list(ledger.accepted)
    killed_workers = [k.target for k in kills if k.kind == "worker"]
    deadline = time.time() + bound_s
    while True:
        try:
            jobs = read_jobs(stack.redis, ids)
            reaped = not any(stack.redis.sismember(keys.WORKERS, w) for w in killed_workers)
        except redis.RedisError:
            jobs, reaped = {}, False
        if jobs and reaped and all(j["state"] in TERMINAL or j["state"] is None for j in jobs.values()):
            return jobs
        if time.time() > deadline:
            return jobs or read_jobs(stack.redis, ids)
        time.sleep(0.5)


def check_jobs(ledger: Ledger, jobs: dict[str, dict[str, str | None]], kills: list[Kill],
               violations: list[str]) -> dict[str, Any]:
    valkey_kills = [k.at for k in kills if k.kind == "valkey"]
    states = Counter(j["state"] or "missing" for j in jobs.values())
    lost = [i for i, j in jobs.items() if j["state"] is None]
    in_window = [i for i in lost if any(t - AOF_WINDOW_S < ledger.accepted[i] <= t for t in valkey_kills)]
    outside = sorted(set(lost) - set(in_window))
    stuck = sorted(i for i, j in jobs.items() if j["state"] is not None and j["state"] not in TERMINAL)
    failed = [j for j in jobs.values() if j["state"] == "failed"]
    unexplained_failures = [j for j in failed if not j["error"]]
    if outside:
        violations.append(f"{len(outside)} acknowledged job(s) lost outside the AOF window, e.g. {outside[:3]}")
    if stuck:
        violations.append(f"{len(stuck)} job(s) never ended, e.g. {stuck[:3]}: "
                          f"{[jobs[i]['state'] for i in stuck[:3]]}")
    if unexplained_failures:
        violations.append(f"{len(unexplained_failures)} failed job(s) without a reason")
    return {
        "accepted": len(ledger.accepted),
        "terminal": sum(n for s, n in states.items() if s in TERMINAL),
        "by_state": dict(states),
        "failed_reasons": dict(Counter(reason_of(j["error"]) for j in failed)),
        "lost": len(lost),
        "lost_in_aof_window": len(in_window),
        "lost_outside_aof_window": len(outside),
        "stuck": len(stuck),
    }


def reason_of(error: str | None) -> str:
    """An error message with its ids and numbers taken out, to count failures by kind."""
    words = (error or "").split()
    return " ".join("…" if any(c.isdigit() for c in w) or "-" in w else w for w in words)[:120]


def check_executions(path: Path, jobs: dict[str, dict[str, str | None]], killed_pids: set[int],
                     violations: list[str]) -> dict[str, Any]:
    runs = read_executions(str(path))
    again = {j: r for j, r in runs.items() if len(r) > 1}
    # Every run but the last must have been on a worker the driver killed.
    unexplained = sorted(j for j, r in again.items() if any(pid not in killed_pids for pid, _ in r[:-1]))
    counter_differs = sorted(j for j, r in runs.items()
                             if j in jobs and jobs[j]["executions"] is not None
                             and int(jobs[j]["executions"] or 0) != len(r))
    if unexplained:
        violations.append(f"{len(unexplained)} job(s) ran more than once without a worker dying, "
                          f"e.g. {unexplained[:3]}")
    never_ran = [j for j, s in jobs.items() if s["state"] == "succeeded" and j not in runs]
    if never_ran:
        violations.append(f"{len(never_ran)} job(s) succeeded without running, e.g. {never_ran[:3]}")
    return {
        "runs": sum(len(r) for r in runs.values()),
        "jobs_run": len(runs),
        "jobs_run_more_than_once": len(again),
        "duplicated_runs": sum(len(r) - 1 for r in again.values()),
        "duplicated_runs_unexplained": sum(len(again[j]) - 1 for j in unexplained),
        "redis_counter_differs": len(counter_differs),
    }


def check_orphans(stack: LocalStack, violations: list[str]) -> dict[str, Any]:
    r = stack.redis
    live_pids = {p.pid for p in stack.workers if p.poll() is None}
    registered = {w: r.hget(keys.worker_info(w), "pid") for w in r.smembers(keys.WORKERS)}
    dead_registered = sorted(w for w, pid in registered.items() if not pid or int(pid) not in live_pids)
    owners = {w for w in registered if w not in dead_registered}
    worker_keys = [*r.scan_iter("tidal:worker:*"), *r.scan_iter(keys.worker_queue("*"))]
    stray = [k for k in worker_keys if not any(k in (keys.worker_info(w), keys.worker_alive(w), keys.worker_active(w),
                                                      keys.worker_queue(w), keys.worker_cancels(w)) for w in owners)]
    left = {k: r.llen(k) for k in [*keys.model_queues(MODEL), *(keys.worker_active(w) for w in owners),
                                    *(keys.worker_queue(w) for w in owners)] if r.llen(k)}
    lock = r.get(keys.AUTOSCALER_LOCK)
    if dead_registered:
        violations.append(f"dead workers still registered: {dead_registered}")
    if stray:
        violations.append(f"keys of dead workers left: {stray[:5]}")
    if left:
        violations.append(f"jobs left in lists after the run: {left}")
    if lock is not None:
        violations.append("the autoscaler lock is held, and no autoscaler runs")
    return {"dead_workers_registered": len(dead_registered), "keys_of_dead_workers": len(stray),
            "jobs_left_in_lists": sum(left.values()), "autoscaler_lock_held": lock is not None}


def check_polls(ledger: Ledger, kills: list[Kill], violations: list[str]) -> dict[str, Any]:
    api_down = [(k.at, (k.back_at or k.at) + 0.5) for k in kills if k.kind == "api"]
    outcomes = Counter(p.outcome for p in ledger.polls)
    transport = [p for p in ledger.polls if p.outcome == "transport"]
    unexplained = [p for p in transport
                   if not any(a <= p.at + p.took_s and p.at <= b for a, b in api_down)]
    others = {o: n for o, n in outcomes.items() if o.startswith("http ")}
    if outcomes["hang"]:
        violations.append(f"{outcomes['hang']} long poll(s) hung past their wait + {HANG_SLACK_S}s")
    if unexplained:
        violations.append(f"{len(unexplained)} long poll(s) lost their connection while the API was up")
    if others:
        violations.append(f"long polls answered {others}")
    overrun = [p.took_s - p.wait_s for p in ledger.polls if p.outcome in ("answer", "503")]
    return {"requests": len(ledger.polls), "by_outcome": dict(outcomes),
            "transport_while_api_down": len(transport) - len(unexplained),
            "max_over_wait_s": round(max(overrun), 3) if overrun else None}


def recovery(kills: list[Kill]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        times = [k.recovered_at - k.at for k in kills if k.kind == kind and k.recovered_at is not None]
        reaped = [k.reaped_at - k.at for k in kills if k.kind == kind and k.reaped_at is not None]
        out[kind] = {"kills": sum(k.kind == kind for k in kills),
                     "median_s": round(statistics.median(times), 3) if times else None,
                     "max_s": round(max(times), 3) if times else None}
        if reaped:
            out[kind]["reaped_median_s"] = round(statistics.median(reaped), 3)
    return out


# --- the run ------------------------------------------------------------------------------------


def run_chaos(plan: Plan, out: Path | None = None) -> dict[str, Any]:
    with local_stack(CONFIG) as stack:
        stack.start_valkey()
        stack.start_api()
        for _ in range(2):
            stack.start_dispatcher()
        for _ in range(plan.workers):
            stack.start_worker(MODEL)
        ledger, kills, errors = Ledger(), [], []  # type: ignore[var-annotated]
        stop = threading.Event()
        driver = threading.Thread(target=drive, args=(stack, plan, ledger, kills, errors), daemon=True)
        t0 = time.time()

        async def main() -> None:
            loader = asyncio.create_task(load(stack.url, plan, ledger, stop))
            driver.start()
            while time.time() - t0 < plan.max_s and (driver.is_alive() or len(ledger.accepted) < plan.jobs):
                await asyncio.sleep(0.1)
            stop.set()
            await loader

        asyncio.run(main())
        load_s = time.time() - t0
        driver.join(timeout=PROBE_TIMEOUT_S + 5)
        violations = list(errors)
        if driver.is_alive():
            violations.append("the kill driver did not finish")
        exits = stack.unexpected_exits()
        if exits:
            violations.append(f"processes exited that nobody killed: {exits}")
        missing = set(plan.kinds) - {k.kind for k in kills}
        if missing:
            violations.append(f"kinds never killed (run too short?): {sorted(missing)}")
        jobs = settle(stack, ledger, kills, plan.settle_s)
        result = {
            "config": {**asdict(plan), "model": MODEL, "dispatchers": 2, "aof_window_s": AOF_WINDOW_S,
                       "hang_slack_s": HANG_SLACK_S, "waits_s": list(WAITS_S),
                       "heartbeat_ttl_s": 3.0, "appendfsync": "everysec"},
            "load_s": round(load_s, 2),
            "jobs": check_jobs(ledger, jobs, kills, violations),
            "executions": check_executions(stack.tmp / "executions.log", jobs, stack.killed, violations),
            "orphans": check_orphans(stack, violations),
            "long_polls": check_polls(ledger, kills, violations),
            "submits": dict(ledger.submits),
            "recovery_s": recovery(kills),
            "kills": [k.summary(t0) for k in kills],
            "violations": violations,
        }
        if out is not None:
            result["plot"] = plot(out / "chaos.png", ledger, jobs, kills, t0)
        return result


def plot(path: Path, ledger: Ledger, jobs: dict[str, dict[str, str | None]], kills: list[Kill], t0: float) -> str:
    fig, axes = figure(1, 1, width=10, height=4)
    ax = axes[0][0]
    accepted = sorted(t - t0 for t in ledger.accepted.values())
    finished = sorted(float(j["finished_at_s"]) - t0 for j in jobs.values() if j["finished_at_s"])
    ax.plot(accepted, range(1, len(accepted) + 1), label="accepted (202)")
    ax.plot(finished, range(1, len(finished) + 1), label="ended")
    colors = {"worker": "tab:red", "dispatcher": "tab:purple", "api": "tab:orange", "valkey": "black"}
    for k in kills:
        ax.axvline(k.at - t0, color=colors[k.kind], linestyle="--", linewidth=1)
        ax.text(k.at - t0, 0, f" {k.kind}", rotation=90, va="bottom", fontsize=7, color=colors[k.kind])
    ax.set_xlabel("seconds")
    ax.set_ylabel("jobs")
    ax.set_title("Jobs accepted and ended while processes are SIGKILLed (dashed: kills)")
    ax.legend(loc="upper left")
    return save(fig, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=None, help="jobs to submit at least (default 1000, quick 300)")
    p.add_argument("--rounds", type=int, default=None, help="kills of each kind (default 3, quick 1)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--kinds", default=",".join(KINDS),
                   help=f"what to kill, comma-separated (default all: {','.join(KINDS)})")


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise SystemExit(f"--kinds: unknown {sorted(unknown)}; choose from {','.join(KINDS)}")
    overrides: dict[str, Any] = {k: v for k, v in (("jobs", args.jobs), ("rounds", args.rounds),
                                                   ("seed", args.seed), ("kinds", kinds)) if v is not None}
    return run_chaos(replace(plan, **overrides), args.out)
