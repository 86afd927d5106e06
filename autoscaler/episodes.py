"""Busy periods and the idle gaps between them, and the keep-alive plan they teach. Pure.

A busy period starts with the first tick that has work (queued, in flight or arrived) after
one that had none, and ends with the next tick that has none. For each one the policy
remembers the idle gap before it, its jobs, the jobs that arrived before a worker launched at
its start could have started them within the target (``early``: a cold start would have made
them late), and the most workers its first cold start needed (from the burst need and the
steady floor). Finished busy periods feed the idle-gap histogram; the keep-alive plan
(:mod:`autoscaler.keepalive`) is made from it for a pool sized to what 95% of jobs' busy
periods needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from autoscaler import keepalive
from autoscaler.estimates import SLO_QUANTILE, Estimates
from autoscaler.keepalive import GapStats, KeepAlive
from autoscaler.scaling import ScalingConfig

# Busy periods that start cold may make half the SLO's 5% late: the estimate rests on a few dozen
# gaps, and queueing inside busy periods takes its share too.
COLD_LATE_BUDGET = (1.0 - SLO_QUANTILE) / 2
# The plan is made once this many gaps have been seen; before that, the break-even hold.
GAPS_TO_LEARN = 2
# It may pre-warm, or find the SLO out of reach, once this many have: the choices a few gaps mislead.
GAPS_TO_TRUST = 8
RECENT_PERIODS = 32  # busy periods whose needs size the pool
# Re-planning: after every gap while the histogram is young, then every few.
REPLAN_YOUNG = 32
REPLAN_EVERY = 8


@dataclass(frozen=True, slots=True)
class BusyPeriod:
    start: float
    gap_s: float | None  # the idle gap before it; None when not seen
    jobs: int = 0
    early: int = 0
    need: int = 0


@dataclass(frozen=True, slots=True)
class Episodes:
    idle_since: float | None = None  # when the model last had no work; None while it has some
    busy: BusyPeriod | None = None
    gaps: GapStats = field(default_factory=GapStats)
    needs: tuple[tuple[int, int], ...] = ()  # (workers needed, jobs) of recent busy periods
    last_early: int = 0  # jobs a cold start would have made late in the last busy period
    last_need: int = 0  # workers its first cold start needed
    plan: KeepAlive | None = None
    planned_at: int = 0  # gaps.seen when the plan was made

    @property
    def learned(self) -> bool:
        return self.plan is not None and self.gaps.seen >= GAPS_TO_LEARN

    def to_dict(self) -> dict[str, Any]:
        b = self.busy
        return {
            "idle_since": self.idle_since,
            "busy": None if b is None else {"start": b.start, "gap_s": b.gap_s, "jobs": b.jobs, "early": b.early,
                                            "need": b.need},
            "gaps": self.gaps.to_dict(), "needs": [list(n) for n in self.needs], "last_early": self.last_early,
            "last_need": self.last_need, "plan": None if self.plan is None else self.plan.to_dict(),
            "planned_at": self.planned_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Episodes:
        b = d["busy"]
        return cls(
            idle_since=None if d["idle_since"] is None else float(d["idle_since"]),
            busy=None if b is None else BusyPeriod(float(b["start"]), None if b["gap_s"] is None else float(b["gap_s"]),
                                                   int(b["jobs"]), int(b["early"]), int(b["need"])),
            gaps=GapStats.from_dict(d["gaps"]), needs=tuple((int(n), int(j)) for n, j in d["needs"]),
            last_early=int(d["last_early"]), last_need=int(d["last_need"]),
            plan=None if d["plan"] is None else KeepAlive.from_dict(d["plan"]), planned_at=int(d["planned_at"]),
        )


def pool_size(needs: tuple[tuple[int, int], ...]) -> int:
    """Workers that 95% of jobs' busy periods needed in their first cold start (job-weighted)."""
    total = sum(j for _, j in needs)
    acc = 0
    for need, jobs in sorted(needs):
        acc += jobs
        if acc >= SLO_QUANTILE * total:
            return need
    return max((n for n, _ in needs), default=0)


def track(st: Episodes, working: bool, arrivals: int, est: Estimates, cfg: ScalingConfig, now: float) -> Episodes:
    """The next state after a tick with (or without) work."""
    if working:
        busy = st.busy
        if busy is None or st.idle_since is not None:
            busy = BusyPeriod(start=now, gap_s=now - st.idle_since if st.idle_since is not None else None)
        age = now - busy.start
        early = arrivals if age <= cfg.cold_start_s - cfg.target_wait_s else 0
        need = max(busy.need, est.burst_need, est.floor) if age <= cfg.cold_start_s else busy.need
        return replace(st, idle_since=None,
                       busy=replace(busy, jobs=busy.jobs + arrivals, early=busy.early + early, need=need))
    if st.idle_since is not None:
        return st
    st = replace(st, idle_since=now)
    busy = st.busy
    if busy is None:
        return st
    needs = (*st.needs, (max(1, busy.need), max(1, busy.jobs)))[-RECENT_PERIODS:]
    gaps = st.gaps if busy.gap_s is None else st.gaps.record(busy.gap_s, busy.jobs, busy.early)
    st = replace(st, busy=None, needs=needs, gaps=gaps, last_early=busy.early, last_need=max(1, busy.need))
    due = gaps.seen < REPLAN_YOUNG or gaps.seen - st.planned_at >= REPLAN_EVERY or st.plan is None
    if gaps.seen >= GAPS_TO_LEARN and due:
        plan = keepalive.plan(
            gaps, pool_size(needs), cfg.cold_start_s, cfg.target_wait_s, COLD_LATE_BUDGET,
            cfg.cost_bias * est.run_s, trusted=gaps.seen >= GAPS_TO_TRUST,
        )
        st = replace(st, plan=plan, planned_at=gaps.seen)
    return st
