"""A perfect-foresight lower bound on the GPU time needed to meet a p95 queue wait.

The plan is a fleet size per interval of ``interval_s`` for one model (each model has its own
SLO, so a trace of several models gets one bound per model, summed). Meeting ``p95 wait <= W``
means at most ``budget = floor(0.05 * (jobs - 1))`` jobs may wait longer than ``W``.

1. Per interval ``i`` and fleet size ``n``, ``late_i(n)`` counts that interval's jobs that
   would wait longer than ``W`` with ``n`` workers, all idle at the interval's start
   (FCFS, exact service times from the trace). Starting empty and idle is the most a plan
   could hope for, so ``late_i(n)`` never overstates the late jobs.
2. Choosing one ``n_i`` per interval to minimise ``sum(n_i) * interval_s`` subject to
   ``sum(late_i(n_i)) <= budget`` is a multiple-choice knapsack. Its Lagrangian dual,
   ``max_l sum_i min_n (n * interval_s + l * late_i(n)) - l * budget``, is a lower bound on
   the knapsack's optimum; ``l`` is found by bisection.
3. The knapsack leaves out booting time (a real plan pays ``cold_start_s`` per launch) and
   the backlog carried between intervals, and may even give an interval no worker (its
   jobs count as late and are never served), so it can fall below the work itself. Every
   plan must also run every job, so the bound is ``max(dual, total service / slots)``.

``feasible_plan`` is the other side: interval by interval, the fewest workers that
keep that interval's late jobs within 5% of its own given the backlog the plan so far carries
in. Replayed with perfect-foresight pre-booting (:class:`bench.scalers.Schedule`), it shows
what an omniscient per-interval controller achieves; the true optimum lies between the two.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

import numpy as np

from bench.trace import Trace


@dataclass(frozen=True, slots=True)
class OracleBound:
    dual_gpu_s: float  # the knapsack's Lagrangian dual
    work_gpu_s: float  # total service time / slots
    late_allowed: int

    @property
    def bound_gpu_s(self) -> float:
        return max(self.dual_gpu_s, self.work_gpu_s)


def _waits(arrival: list[float], service: list[float], servers: int) -> np.ndarray:
    free = [arrival[0]] * servers if arrival else []
    out = np.empty(len(arrival))
    for k, (a, s) in enumerate(zip(arrival, service, strict=True)):
        t = heapq.heappop(free)
        start = a if a > t else t
        out[k] = start - a
        heapq.heappush(free, start + s)
    return out


def _intervals(trace: Trace, interval_s: float) -> list[tuple[list[float], list[float]]]:
    """Arrivals and service times of each interval, empty intervals included."""
    if not len(trace):
        return []
    n_intervals = int(trace.arrival_s[-1] // interval_s) + 1
    cuts = np.searchsorted(trace.arrival_s, np.arange(n_intervals + 1) * interval_s, side="left").tolist()
    arr, svc = trace.arrival_s.tolist(), trace.service_s.tolist()
    return [(arr[a:b], svc[a:b]) for a, b in itertools.pairwise(cuts)]


def late_table(trace: Trace, interval_s: float, max_wait_s: float, slots: int) -> list[list[int]]:
    """``late[i][n]`` for ``n = 0 .. first n with no late job`` (intervals with no job left out)."""
    table = []
    for arr, svc in _intervals(trace, interval_s):
        if not arr:
            continue
        row = [len(arr)]
        n = 0
        while row[-1] > 0:
            n += 1
            row.append(int(np.count_nonzero(_waits(arr, svc, n * slots) > max_wait_s + 1e-9)))
        table.append(row)
    return table


def _choose(table: list[list[int]], interval_s: float, lam: float) -> tuple[list[int], float, int]:
    picks, cost, late = [], 0.0, 0
    for row in table:
        n = min(range(len(row)), key=lambda k: k * interval_s + lam * row[k])
        picks.append(n)
        cost += n * interval_s
        late += row[n]
    return picks, cost, late


def lower_bound(trace: Trace, interval_s: float, max_wait_s: float, slots: int, quantile: float = 0.95) -> OracleBound:
    table = late_table(trace, interval_s, max_wait_s, slots)
    budget = math.floor((1.0 - quantile) * (len(trace) - 1))
    lo, hi = 0.0, interval_s * (max(len(r) for r in table) + 1)  # at hi no late job is worth a worker
    for _ in range(60):
        mid = (lo + hi) / 2
        if _choose(table, interval_s, mid)[2] <= budget:
            hi = mid
        else:
            lo = mid
    dual = max(c + lam * lt - lam * budget for lam in (lo, hi) for _, c, lt in [_choose(table, interval_s, lam)])
    work = float(trace.service_s.sum()) / slots
    return OracleBound(dual, work, budget)


def _resize(free: list[float], servers: int, at: float) -> list[float]:
    # New servers were booted ahead and are free at the interval's start; removed ones are
    # those that free up first (idle ones, then the soonest done).
    out = sorted(free)[len(free) - servers :] if servers < len(free) else sorted(free)
    out.extend([at] * (servers - len(out)))
    heapq.heapify(out)
    return out


def _serve(free: list[float], arrival: list[float], service: list[float], max_wait_s: float) -> int:
    late = 0
    for a, s in zip(arrival, service, strict=True):
        t = heapq.heappop(free)
        start = a if a > t else t
        late += start - a > max_wait_s + 1e-9
        heapq.heappush(free, start + s)
    return late


def feasible_plan(trace: Trace, interval_s: float, max_wait_s: float, slots: int, quantile: float = 0.95) -> list[int]:
    """Interval by interval, the fewest workers that keep that interval's late jobs within
    ``1 - quantile`` of its own, with the backlog carried in from the plan so far."""
    free: list[float] = []
    plan = []
    for i, (arr, svc) in enumerate(_intervals(trace, interval_s)):
        allowed = math.floor((1.0 - quantile) * len(arr))
        n = 0
        while True:
            trial = _resize(free, n * slots, i * interval_s)
            if (n > 0 or not arr) and _serve(trial, arr, svc, max_wait_s) <= allowed:
                break
            n += 1
        free = trial
        plan.append(n)
    return plan
