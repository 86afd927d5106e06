"""``routing``: Tidal's dispatch policies against an ideal central queue, by simulation.

Every policy decision is made by :func:`dispatcher.policies.choose` itself. Fleets are
heterogeneous (three GPU generations with speeds 1:2:4, weight = speed) or homogeneous;
arrivals are Poisson or the Azure LLM trace, time-scaled to a utilisation of the fleet's
total capacity. Each cell reports mean, p99 and p99.9 sojourn time of every policy and its
ratio to the ideal (a work-conserving central FCFS queue) fed the same jobs.
"""

from __future__ import annotations

import argparse
import os
import time
import zlib
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bench import routing_sim, workload
from bench.common import figure, ratio, save
from bench.trace import Trace, add_trace_arguments, describe, trace_from_args
from dispatcher.policies import POLICIES, Candidate, PolicyState, choose

FLEETS = ("heterogeneous", "homogeneous")
GENERATION_SPEEDS = (1.0, 2.0, 4.0)
ARRIVALS = ("poisson", "azure")
LOADS = (0.5, 0.8, 0.9, 0.95)
PREFETCH = (1, 2, 4)
HEADLINE = ("heterogeneous", 100, 0.9)
WARMUP_FRACTION = 0.1
SESSIONS_PER_WORKER = 10
STATS = ("mean", "p99", "p99.9")


@dataclass(frozen=True, slots=True)
class Cell:
    fleet: str
    size: int
    arrivals: str
    load: float

    def seed(self, base: int) -> int:
        return base + zlib.crc32(f"{self.fleet}|{self.size}|{self.arrivals}|{self.load}".encode())


@dataclass(frozen=True, slots=True)
class Plan:
    cells: tuple[Cell, ...]
    prefetch: dict[Cell, tuple[int, ...]]
    jobs: int


def speeds(fleet: str, size: int) -> list[float]:
    if fleet == "homogeneous":
        return [1.0] * size
    # Generations interleaved so every id range holds each kind, as a real fleet would.
    return [GENERATION_SPEEDS[i % len(GENERATION_SPEEDS)] for i in range(size)]


def make_plan(quick: bool, jobs: int | None) -> Plan:
    """Which cells run at which prefetch bounds.

    Every load runs at prefetch 1 on 10 and 100 workers; deeper prefetch runs at 90%; 1000
    workers run at 90% with prefetch 1 (deeper prefetch there, where a decision looks at
    hundreds of workers, would not fit in the five minutes the full run may take).
    """
    prefetch: dict[Cell, tuple[int, ...]] = {}
    sizes = (10, 100)
    loads = (0.5, 0.9) if quick else LOADS
    fleets = ("heterogeneous",) if quick else FLEETS
    for fleet in fleets:
        for size in sizes:
            for arrivals in ARRIVALS:
                for load in loads:
                    prefetch[Cell(fleet, size, arrivals, load)] = PREFETCH if load == 0.9 else (1,)
    if not quick:
        for fleet in FLEETS:
            for arrivals in ARRIVALS:
                prefetch[Cell(fleet, 1000, arrivals, 0.9)] = (1,)
    return Plan(tuple(prefetch), prefetch, jobs or (6_000 if quick else 20_000))


def make_jobs(cell: Cell, n: int, trace: Trace, base_seed: int) -> workload.Jobs:
    rng = np.random.default_rng(cell.seed(base_seed))
    rate = cell.load * sum(speeds(cell.fleet, cell.size))
    n_sessions = SESSIONS_PER_WORKER * cell.size
    if cell.arrivals == "poisson":
        return workload.poisson(n, rate, n_sessions, rng)
    return workload.replay(trace, n, rate, n_sessions, rng)


def probe_ms(policy: str, size: int) -> float:
    """Cost of one ``choose`` over ``size`` open workers, to skip cells that would take hours."""
    cands = [Candidate(f"w{i:05d}", 1.0 + i % 3, 1, 0, i % 2, 1, 1.0) for i in range(size)]
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        choose(policy, cands, PolicyState(), session="s1", u=0.5)
        best = min(best, time.perf_counter() - t)
    return best * 1e3


_TRACE: Trace | None = None


def _init(trace: Trace) -> None:
    global _TRACE
    _TRACE = trace


def _stats(sojourn: np.ndarray) -> dict[str, float]:
    s = sojourn[int(WARMUP_FRACTION * sojourn.size) :]
    return {"mean": float(s.mean()), "p99": float(np.percentile(s, 99)), "p99.9": float(np.percentile(s, 99.9))}


def _task(cell: Cell, policy: str | None, bound: int, n: int, base_seed: int) -> tuple[Any, ...]:
    assert _TRACE is not None
    jobs = make_jobs(cell, n, _TRACE, base_seed)
    sp = speeds(cell.fleet, cell.size)
    started = time.perf_counter()
    if policy is None:
        sojourn = routing_sim.ideal(sp, jobs)
    else:
        weights = sp  # an operator sets weight = relative speed
        u = np.random.default_rng(cell.seed(base_seed) + 1).random(len(jobs))
        sojourn = routing_sim.with_policy(policy, sp, weights, bound, jobs, u)
    return cell, policy, bound, _stats(sojourn), time.perf_counter() - started


def _ratios(stats: dict[str, float], ideal: dict[str, float]) -> dict[str, float | None]:
    return {k: ratio(stats[k], ideal[k]) for k in STATS}


def run_plan(
    plan: Plan, policies: Iterable[str], trace: Trace, seed: int, workers: int, budget_s: float
) -> dict[str, Any]:
    policies = list(policies)
    probes = {(p, s): probe_ms(p, s) for p in policies for s in {c.size for c in plan.cells}}
    tasks: list[tuple[Cell, str | None, int]] = []
    skipped = []
    for cell in plan.cells:
        tasks.append((cell, None, 0))
        for bound in plan.prefetch[cell]:
            for p in policies:
                estimate_s = probes[(p, cell.size)] * plan.jobs / 1e3
                if estimate_s > budget_s:
                    skipped.append(
                        {
                            **asdict(cell),
                            "prefetch": bound,
                            "policy": p,
                            "probe_ms": probes[(p, cell.size)],
                            "estimated_s": estimate_s,
                        }
                    )
                else:
                    tasks.append((cell, p, bound))
    # Largest first, so the pool's last stragglers are short.
    tasks.sort(key=lambda t: -(t[0].size * (1 + t[2]) * (probes[(t[1], t[0].size)] if t[1] else 0.01)))
    results: dict[tuple[Cell, str | None, int], dict[str, float]] = {}
    took_s: dict[tuple[Cell, str | None, int], float] = {}
    sim_s = 0.0
    with ProcessPoolExecutor(max_workers=workers, initializer=_init, initargs=(trace,)) as pool:
        futures = [pool.submit(_task, c, p, b, plan.jobs, seed) for c, p, b in tasks]
        for f in futures:
            cell, policy, bound, stats, took = f.result()
            results[(cell, policy, bound)] = stats
            took_s[(cell, policy, bound)] = took
            sim_s += took

    cells = []
    for cell in plan.cells:
        ideal = results[(cell, None, 0)]
        for bound in plan.prefetch[cell]:
            per_policy = {
                p: {
                    **results[(cell, p, bound)],
                    "ratio": _ratios(results[(cell, p, bound)], ideal),
                    "sim_s": round(took_s[(cell, p, bound)], 2),
                }
                for p in policies
                if (cell, p, bound) in results
            }
            cells.append({**asdict(cell), "prefetch": bound, "ideal": ideal, "policies": per_policy})
    return {"cells": cells, "skipped": skipped, "simulation_cpu_s": round(sim_s, 1)}


def headline(cells: list[dict[str, Any]], policies: Iterable[str]) -> dict[str, Any]:
    fleet, size, load = HEADLINE
    out: dict[str, Any] = {"fleet": fleet, "size": size, "load": load, "stat": "p99 sojourn / ideal p99"}
    for arrivals in ARRIVALS:
        here = [c for c in cells if (c["fleet"], c["size"], c["load"], c["arrivals"]) == (fleet, size, load, arrivals)]
        if not here:
            continue
        row: dict[str, Any] = {}
        for p in policies:
            by_bound = {c["prefetch"]: c["policies"][p]["ratio"] for c in here if p in c["policies"]}
            if not by_bound:
                continue
            best = min(by_bound, key=lambda b: by_bound[b]["p99"] or float("inf"))
            row[p] = {
                "prefetch_1": by_bound.get(1),
                "best_prefetch": best,
                "best": by_bound[best],
            }
        out[arrivals] = row
    return out


def plot(cells: list[dict[str, Any]], policies: list[str], path: Any) -> str:
    fleets = [f for f in FLEETS if any(c["fleet"] == f for c in cells)]
    fig, axes = figure(len(ARRIVALS), len(fleets) + 1)
    for r, arrivals in enumerate(ARRIVALS):
        for c, fleet in enumerate(fleets):
            ax = axes[r][c]
            key = (fleet, 100, arrivals, 1)
            rows = sorted(
                (x for x in cells if (x["fleet"], x["size"], x["arrivals"], x["prefetch"]) == key),
                key=lambda x: x["load"],
            )
            for p in policies:
                pts = [(x["load"], x["policies"][p]["ratio"]["p99"]) for x in rows if p in x["policies"]]
                if pts:
                    ax.plot([a for a, _ in pts], [b for _, b in pts], marker="o", label=p)
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_title(f"{arrivals}, {fleet}, 100 workers, prefetch 1", fontsize=9)
            ax.set_xlabel("utilisation")
            ax.set_ylabel("p99 sojourn / ideal")
            ax.grid(alpha=0.3)
        ax = axes[r][len(fleets)]
        fleet, size, load = HEADLINE
        here = {
            x["prefetch"]: x
            for x in cells
            if (x["fleet"], x["size"], x["arrivals"], x["load"]) == (fleet, size, arrivals, load)
        }
        width = 0.8 / max(len(here), 1)
        for k, (bound, x) in enumerate(sorted(here.items())):
            vals = [x["policies"][p]["ratio"]["p99"] if p in x["policies"] else np.nan for p in policies]
            ax.bar(np.arange(len(policies)) + k * width, vals, width, label=f"prefetch {bound}")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(policies)) + width * (len(here) - 1) / 2, policies, rotation=45, fontsize=7)
        ax.set_title(f"{arrivals}, {fleet} {size} workers, {load:.0%} load", fontsize=9)
        ax.set_ylabel("p99 sojourn / ideal")
        ax.legend(fontsize=7)
    axes[0][0].legend(fontsize=7)
    return save(fig, path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs-per-cell", type=int, default=None, help="default 20000 (6000 with --quick)")
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated dispatch policies")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="simulation processes")
    parser.add_argument(
        "--cell-budget-s",
        type=float,
        default=60.0,
        help="skip a policy in a cell when its estimated run time (probe x jobs) exceeds this",
    )
    add_trace_arguments(parser)


def run(args: argparse.Namespace) -> dict[str, Any]:
    trace = trace_from_args(args)
    policies = [p for p in args.policies.split(",") if p]
    unknown = set(policies) - set(POLICIES)
    if unknown:
        raise SystemExit(f"unknown policies {sorted(unknown)}; known: {sorted(POLICIES)}")
    plan = make_plan(args.quick, args.jobs_per_cell)
    result = run_plan(plan, policies, trace, args.seed, args.workers, args.cell_budget_s)
    return {
        "headline": headline(result["cells"], policies),
        "config": {
            "seed": args.seed,
            "jobs_per_cell": plan.jobs,
            "warmup_fraction": WARMUP_FRACTION,
            "policies": policies,
            "generation_speeds": GENERATION_SPEEDS,
            "slots": routing_sim.SLOTS,
            "ewma_alpha": routing_sim.EWMA_ALPHA,
            "sessions_per_worker": SESSIONS_PER_WORKER,
            "session_zipf_s": workload.SESSION_ZIPF_S,
            "trace": {"path": str(args.trace), **describe(trace)},
        },
        **result,
        "plot": plot(result["cells"], policies, args.out / "routing.png"),
    }
