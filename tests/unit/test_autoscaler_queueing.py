"""The arithmetic under the scaling policy: Erlang C, the fluid backlog, late jobs, the duration
histograms and the keep-alive plan. Expected values are worked by hand in the comments."""

from __future__ import annotations

import math

import pytest

from autoscaler.histogram import Durations, bin_of, lower_edge, upper_edge
from autoscaler.keepalive import GapStats, plan
from autoscaler.queueing import Outlook, backlog_at, late_jobs, launches_needed, steady_workers


def test_steady_workers_is_erlang_c() -> None:
    # a = 1 Erlang. Two servers: C(2, 1) = 1/3, so P(W > 1 s) = e^-1 / 3 = 0.123.
    assert steady_workers(1.0, 1.0, 1, 1.0, 0.2, 100) == 2
    # Three servers: B(3, 1) = 1/16, C = 3/16 / (3 - 15/16) = 1/11, P(W > 1 s) = e^-2 / 11 = 0.012.
    assert steady_workers(1.0, 1.0, 1, 1.0, 0.1, 100) == 3
    assert steady_workers(1.0, 1.0, 2, 1.0, 0.1, 100) == 2  # three slots on workers of two
    assert steady_workers(0.0, 1.0, 1, 1.0, 0.1, 100) == 0
    assert steady_workers(50.0, 1.0, 1, 1.0, 0.05, 20) == 20  # capped


def test_backlog_at_follows_capacity_and_rate_changes() -> None:
    # 64 queued on 4 slots of 2 s jobs (2 jobs/s): 6/s for 14 s (+56), 1.6/s after (-0.4/s),
    # one more slot at 80 s (-0.9/s): 64 + 56 - 0.4 * 66 - 0.9 * 10 = 84.6.
    left, slots = backlog_at(90.0, Outlook(64, 4, [(80.0, 1)], [(14.0, 6.0), (90.0, 1.6)], 2.0))
    assert left == pytest.approx(84.6) and slots == 5
    assert backlog_at(90.0, Outlook(64, 4, [], [(90.0, 1.0)], 2.0)) == (0.0, 4)  # drains, never negative


def test_late_jobs_among_the_queued_and_the_arriving() -> None:
    # 8 jobs queued over the last 2 s (position k has waited 2.25 - 0.25 k), target 3 s, 1 s jobs, no
    # more arrivals. One worker ready now starts the oldest at once and the rest one a second: position
    # k waits 1.25 + 0.75 k, late from k = 2.33 on, 5.67 of 8. With two, 1.25 + 0.25 k: only the last.
    assert late_jobs(8, 1, 1, 2.0, 0.0, 1.0, 3.0) == pytest.approx(17 / 3)
    assert late_jobs(8, 2, 2, 2.0, 0.0, 1.0, 3.0) == pytest.approx(1.0)
    assert late_jobs(8, 3, 3, 2.0, 0.0, 1.0, 3.0) == 0.0
    # A job that has waited 92 s is late whatever starts it.
    assert late_jobs(1, 5, 5, 92.0, 0.0, 22.0, 10.0) == pytest.approx(1.0)
    # 100 just queued on 2 busy slots of 1 s jobs, target 5 s: the first 10 start in time, 90 do not;
    # arrivals at 1/s behind them see the queue drain at 1/s, so 90 s of them wait too long as well.
    assert late_jobs(100, 2, 0, 0.0, 1.0, 1.0, 5.0) == pytest.approx(90 + 90)


def test_launches_pay_off_after_a_cold_start_or_not_at_all() -> None:
    idle = [(math.inf, 0.0)]
    # A queue with no capacity always gets a worker.
    assert launches_needed(Outlook(1, 0, [], idle, 20.0), 90.0, 1, 10.0, 90.0, 180.0)[0] == 1
    # 20 jobs of 1 s on 3 ready workers drain in 7 s: nothing left when a new one could start.
    launch, left, _, _ = launches_needed(Outlook(20, 3, [], idle, 1.0), 90.0, 1, 10.0, 90.0, 180.0)
    assert (launch, left) == (0, 0.0)
    # Arrivals at 6/s of 2 s jobs need 12 slots just to keep up: a queue on 4 gets at least the rest.
    steady = Outlook(50, 4, [], [(math.inf, 6.0)], 2.0)
    assert launches_needed(steady, 90.0, 1, 10.0, 0.0, 180.0)[0] == 9  # 4 + 9 = 13 > 12
    # With the same queue priced at a cold start per late job, enough to drain it soon after.
    assert 9 < launches_needed(steady, 90.0, 1, 10.0, 90.0, 180.0, most=60)[0] <= 56
    # A worker ready within the target drains what is queued within it: 12 one-second jobs, 3 s.
    assert launches_needed(Outlook(12, 0, [], idle, 1.0), 2.0, 1, 3.0, 0.0, 12.0)[0] == 4


def test_duration_bins_and_remaining_life() -> None:
    assert bin_of(0.5) == 0 and lower_edge(bin_of(90.0)) <= 90.0 < upper_edge(bin_of(90.0))
    assert bin_of(1e9) == len(Durations().weight) - 1
    past = Durations()
    for v in (5, 8, 10, 12, 20, 30, 6, 9):
        past = past.record(v)
    left = past.remaining(5.0, 0.75, 2.0)
    assert left is not None and 5.0 < left < 30.0  # most past runs that reached 5 s ended within 30
    assert past.remaining(60.0, 0.75, 2.0) is None  # longer than anything seen: no guide


def gaps_of(*gaps: tuple[float, int, int]) -> GapStats:
    stats = GapStats()
    for gap, jobs, late in gaps:
        stats = stats.record(gap, jobs, late)
    return stats


def test_plan_keeps_through_gaps_shorter_than_a_cold_start() -> None:
    # Gaps of ~40 s: holding one worker costs less than a 90 s boot, whatever a late job is worth.
    stats = gaps_of(*[(40.0, 3, 3)] * 20)
    p = plan(stats, 1, 90.0, 10.0, 0.025, 0.0)
    assert p.keep_s >= 40.0 and p.prewarm_s is None and p.slo_met and p.late_share == 0.0
    assert p.level(30.0, 1) == 1 and p.level(30.0, 0) == 0  # holds, never launches


def test_plan_prewarms_ahead_of_predictable_gaps() -> None:
    # Gaps of ~480 s, one job each, late after a cold start: pre-warming ~100 s ahead costs a boot
    # plus the early part, far less than holding 480 s, and the job starts in time.
    stats = gaps_of(*[(480.0, 1, 1)] * 20)
    p = plan(stats, 1, 90.0, 10.0, 0.025, 300.0)
    assert p.prewarm_s is not None and p.keep_s < p.prewarm_s < 480.0 - 90.0 + 10.0
    assert p.slo_met and p.late_share == 0.0
    assert p.level(p.prewarm_s, 0) == 1
    assert p.next_change_s(p.keep_s) == p.prewarm_s
    # Not yet trusted (few gaps): no pre-warm, and the SLO is not given up.
    q = plan(stats, 1, 90.0, 10.0, 0.025, 300.0, trusted=False)
    assert q.prewarm_s is None and q.slo_met


def test_plan_gives_up_the_slo_when_it_costs_more_than_it_is_worth() -> None:
    # Lone jobs hours apart: meeting p95 would mean holding a worker for hours per job.
    stats = gaps_of(*[(7000.0 + 100 * k, 1, 1) for k in range(20)])
    p = plan(stats, 1, 90.0, 10.0, 0.025, 20.0)
    assert not p.slo_met and p.keep_s < 7000.0 and p.prewarm_s is None
