"""Learned keep-alive and pre-warm: a per-model histogram of idle gaps and the plan it implies.

The idea is the hybrid histogram policy of "Serverless in the Wild" (ATC'20): remember how
long a model's idle gaps were, keep its workers through the gaps that are likely to end
soon, and for gaps that are long but predictable, let the workers go and start them again
just before the next arrival is expected. Here the choice is made by expected cost rather
than fixed percentiles:

- holding a pool of ``w`` workers through an idle gap costs ``w`` GPU-seconds per second;
- letting it go costs a cold start (``w * cold_start_s`` GPU-seconds of boot) plus the jobs
  of the next busy period that arrive before a new worker could start them within the wait
  target (``late`` jobs, learned per gap length);
- a late job is priced at ``price`` GPU-seconds. The price is the smallest that keeps the
  expected share of jobs made late by cold starts within the SLO's budget. If even
  ``max_price`` (the cost bias times one cold start) cannot, the SLO is out of reach at a
  price worth paying and the plan minimises GPU time alone: a p95 is missed as badly with 6%
  of jobs late as with 30%, so half-bought warmth is wasted. Spending hours of GPU time to
  save one late job is not worth it, so a model idle for hours between single jobs goes to zero.

Everything here is pure and JSON-friendly (tuples of floats), so the plan survives from one
cron run to the next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from autoscaler.histogram import N_BINS, bin_of, bins, faded, lower_edge, upper_edge


@dataclass(frozen=True, slots=True)
class GapStats:
    """Per bin: faded count of gaps, and the faded sums of their length, of the jobs the next
    busy period brought, and of those among them a cold start would have made late."""

    weight: tuple[float, ...] = (0.0,) * N_BINS
    gap_s: tuple[float, ...] = (0.0,) * N_BINS
    jobs: tuple[float, ...] = (0.0,) * N_BINS
    late: tuple[float, ...] = (0.0,) * N_BINS
    seen: int = 0  # gaps recorded, ever

    def record(self, gap_s: float, jobs: int, late: int) -> GapStats:
        b = bin_of(gap_s)
        return GapStats(
            faded(self.weight, b, 1.0), faded(self.gap_s, b, gap_s), faded(self.jobs, b, jobs),
            faded(self.late, b, late), self.seen + 1,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"weight": list(self.weight), "gap_s": list(self.gap_s), "jobs": list(self.jobs),
                "late": list(self.late), "seen": self.seen}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GapStats:
        return cls(bins(d["weight"]), bins(d["gap_s"]), bins(d["jobs"]), bins(d["late"]), int(d["seen"]))


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """What to do with a pool of ``workers`` while the model is idle, in seconds since it went idle.

    Hold the pool until ``keep_s``; then, if ``prewarm_s`` is set, launch it again at
    ``prewarm_s`` (ready a cold start later) and hold it until ``until_s``.
    """

    workers: int
    keep_s: float
    prewarm_s: float | None
    until_s: float
    late_share: float  # expected share of all jobs made late by cold starts under this plan
    price: float  # GPU-seconds the plan pays to avoid one late job
    idle_cost_s: float  # expected GPU-seconds per gap (idle holding and boots)
    slo_met: bool = True  # False: the budget was out of reach at max_price, so the plan is for cost only

    def level(self, idle_s: float, current: int) -> int:
        """Workers the plan wants ``idle_s`` seconds into a gap: the keep window holds what is
        running (up to the pool), the pre-warm window launches the pool."""
        if idle_s <= self.keep_s:
            return min(self.workers, current)
        if self.prewarm_s is not None and self.prewarm_s <= idle_s <= self.until_s:
            return self.workers
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {"workers": self.workers, "keep_s": self.keep_s, "prewarm_s": self.prewarm_s, "until_s": self.until_s,
                "late_share": self.late_share, "price": self.price, "idle_cost_s": self.idle_cost_s,
                "slo_met": self.slo_met}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeepAlive:
        prewarm = d["prewarm_s"]
        return cls(int(d["workers"]), float(d["keep_s"]), None if prewarm is None else float(prewarm),
                   float(d["until_s"]), float(d["late_share"]), float(d["price"]), float(d["idle_cost_s"]),
                   bool(d["slo_met"]))

    def next_change_s(self, idle_s: float) -> float:
        """Seconds into the gap of the next point where ``level`` may change (inf: none)."""
        points = [self.keep_s] + ([self.prewarm_s, self.until_s] if self.prewarm_s is not None else [])
        later = [p for p in points if p > idle_s]
        return min(later) if later else math.inf


@dataclass(frozen=True, slots=True)
class _Bin:
    p: float  # probability
    gap: float  # mean gap
    late: float  # mean late jobs after a cold start
    lo: float
    hi: float


def _bins(stats: GapStats) -> tuple[list[_Bin], float]:
    total = sum(stats.weight)
    out = []
    for b, w in enumerate(stats.weight):
        if w > 1e-9:
            out.append(_Bin(w / total, stats.gap_s[b] / w, stats.late[b] / w, lower_edge(b), upper_edge(b)))
    return out, sum(stats.jobs) / total


def _best(
    bins: list[_Bin], workers: int, cold_start_s: float, wait_s: float, price: float, prewarm: bool
) -> tuple[float, float, float, float | None, float]:
    """(objective, expected late jobs per gap, keep_s, prewarm ready-from, until_s) at one price."""
    n = len(bins)
    c, w = cold_start_s, workers
    # Pre-warm windows: launched at s = a - c + wait_s so that jobs from gap a on start in time,
    # held to Q = hi of bin end-1. delta[j] is the best saving of a window starting at bin j's
    # lower edge, relative to letting those gaps start cold.
    best_delta: list[tuple[float, float, float]] = []  # (delta, late saved, until)
    tail = [0.0] * (n + 1)
    for i in range(n - 1, -1, -1):
        tail[i] = tail[i + 1] + bins[i].p
    for j in range(n):
        a = bins[j].lo
        acc_cost = acc_late = 0.0
        best = (0.0, 0.0, math.nan)
        for end in range(j + 1, n + 1):
            b = bins[end - 1]
            acc_cost += b.p * w * max(0.0, b.gap - a - wait_s)
            acc_late += b.p * b.late
            until = b.hi if math.isfinite(b.hi) else b.gap * 2
            beyond = tail[end] * w * (until - a + c - wait_s)
            delta = acc_cost - price * acc_late + beyond
            if delta < best[0]:
                best = (delta, acc_late, until)
        best_delta.append(best)
    # Suffix minima over j (the window must start after the keep window ends).
    suffix: list[tuple[float, float, float, int]] = [(0.0, 0.0, math.nan, -1)] * (n + 1)
    for j in range(n - 1, -1, -1):
        d = best_delta[j]
        suffix[j] = (d[0], d[1], d[2], j) if d[0] < suffix[j + 1][0] else suffix[j + 1]

    result: tuple[float, float, float, float | None, float] = (math.inf, 0.0, 0.0, None, 0.0)
    held_gap = 0.0  # sum of p * gap over the bins the keep window covers
    late_after = sum(b.p * b.late for b in bins)
    for k in range(n + 1):
        keep = 0.0 if k == 0 else bins[k - 1].hi
        if not math.isfinite(keep):
            keep = bins[k - 1].gap * 2
        cost = w * (held_gap + tail[k] * (keep + c)) + price * late_after
        late = late_after
        # First bin whose lower edge lets a pre-warm launch after the keep window: a - c + wait >= keep.
        j = k
        while j < n and bins[j].lo - c + wait_s < keep:
            j += 1
        delta, saved, until, start = suffix[j] if j < n and prewarm else (0.0, 0.0, math.nan, -1)
        ready_from = None
        if start >= 0 and delta < 0.0:
            cost += delta
            late -= saved
            ready_from = bins[start].lo
        if cost < result[0] - 1e-9:
            result = (cost, late, keep, ready_from, until if ready_from is not None else keep)
        if k < n:
            held_gap += bins[k].p * bins[k].gap
            late_after -= bins[k].p * bins[k].late
    return result


def plan(
    stats: GapStats, workers: int, cold_start_s: float, wait_s: float, late_budget: float, max_price: float,
    trusted: bool = True,
) -> KeepAlive:
    """The cheapest keep-alive/pre-warm plan whose expected late share is within ``late_budget``,
    paying at most ``max_price`` GPU-seconds per late job avoided; if no such plan exists, the
    cheapest plan (``slo_met`` False). Until the histogram is ``trusted`` (enough gaps), it
    neither pre-warms nor gives the SLO up: those are the choices a few gaps mislead."""
    bins, jobs_per_gap = _bins(stats)
    workers = max(1, workers)

    def at(price: float) -> tuple[KeepAlive, float]:
        obj, late, keep, ready_from, until = _best(bins, workers, cold_start_s, wait_s, price, trusted)
        prewarm = None if ready_from is None else max(keep, ready_from - cold_start_s + wait_s)
        share = late / jobs_per_gap if jobs_per_gap > 0 else 0.0
        idle_cost = obj - price * late
        return KeepAlive(workers, keep, prewarm, until, share, price, idle_cost), share

    chosen, share = at(0.0)
    if share > late_budget:
        top, top_share = at(max_price)
        if top_share > late_budget and trusted:
            # A p95 is missed as badly with 6% of jobs late as with 30%: warmth that cannot bring the
            # share within budget buys nothing, so the plan is for GPU time alone.
            return replace(chosen, slo_met=False)
        lo, hi, chosen = 0.0, max_price, top
        for _ in range(24):
            mid = (lo + hi) / 2
            cand, s = at(mid)
            if s <= late_budget:
                hi, chosen = mid, cand
            else:
                lo = mid
            if hi - lo < 1e-3 * max_price:
                break
    return chosen
