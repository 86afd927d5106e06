"""Queueing arithmetic the scaling policy reasons with. Pure functions, no state.

- :func:`steady_workers`: the fleet a steady Poisson stream needs so that at most a fraction
  ``miss`` of jobs wait longer than ``wait_s`` (Erlang C, the M/M/c wait distribution). This
  is "arrival rate x run time / slots, with headroom", the headroom being exactly what the
  wait target asks for rather than a constant factor.
- :func:`backlog_at`: the queue left at a horizon by the capacity running or booting now,
  by a fluid model (work drains at ``slots / run_s`` per worker, arrivals at a constant rate).
- :func:`launches_needed`: how many workers to launch now, ready only after ``cold_start_s``,
  so that a job arriving when they are ready starts within the target. A backlog that the
  current fleet drains before then launches nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence


def steady_workers(rate: float, run_s: float, slots: int, wait_s: float, miss: float, cap: int) -> int:
    """Fewest workers (at most ``cap``) with P(wait > ``wait_s``) <= ``miss`` for Poisson arrivals.

    ``P(W > t) = C(m, a) * exp(-(m - a) * t / run_s)`` with ``m`` slots in all and ``a = rate *
    run_s`` busy slots on average.
    """
    offered = rate * run_s
    if offered <= 0.0:
        return 0
    m = max(1, math.floor(offered) + 1)
    b = 1.0
    for k in range(1, m + 1):
        b = offered * b / (k + offered * b)
    limit = cap * slots
    while m < limit:
        c = m * b / (m - offered * (1.0 - b))
        if c * math.exp(-(m - offered) * wait_s / run_s) <= miss:
            break
        m += 1
        b = offered * b / (m + offered * b)
    return min(cap, math.ceil(m / slots))


def backlog_at(
    horizon_s: float,
    queued: float,
    ready_slots: int,
    coming: Sequence[tuple[float, int]],
    rates: Sequence[tuple[float, float]],
    run_s: float,
) -> tuple[float, int]:
    """(jobs still queued, slots running) ``horizon_s`` from now.

    ``coming`` lists ``(seconds until ready, slots)`` for capacity still booting; ``rates``
    lists ``(until, arrivals per second)`` segments, the last one lasting to the horizon.
    While a queue exists every slot works, so it changes at ``rate - slots / run_s``; a queue
    never goes below zero.
    """
    coming = [(min(max(at, 0.0), horizon_s), extra) for at, extra in coming]
    points = sorted({0.0, horizon_s, *(at for at, _ in coming), *(min(u, horizon_s) for u, _ in rates if u > 0)})
    q = float(queued)
    for start, end in itertools.pairwise(points):
        slots = ready_slots + sum(extra for at, extra in coming if at <= start)
        rate = next((r for u, r in rates if u > start), rates[-1][1] if rates else 0.0)
        q = max(0.0, q + (rate - slots / run_s) * (end - start))
    return q, ready_slots + sum(extra for _, extra in coming)


def late_after(left: float, slots: int, rate: float, run_s: float, wait_s: float) -> float:
    """Jobs arriving at ``rate`` from now that start later than ``wait_s``, behind a queue of
    ``left`` on ``slots``: those that arrive while the queue is longer than the slots clear in
    ``wait_s``, until it drains. A queue that does not drain is counted as if one slot drained it."""
    threshold = slots * wait_s / run_s
    if left <= threshold:
        return 0.0
    drain = max(slots / run_s - rate, 1.0 / run_s)
    return rate * (left - threshold) / drain


def launches_needed(
    cold_start_s: float,
    queued: int,
    ready_slots: int,
    coming: Sequence[tuple[float, int]],
    rates: Sequence[tuple[float, float]],
    run_s: float,
    slots: int,
    wait_s: float,
    late_price_s: float,
    launch_cost_s: float,
) -> tuple[int, float, int, float]:
    """(workers to launch now, jobs still queued when they would be ready, slots running then,
    jobs arriving after that which would still start late).

    A worker launched now takes jobs after ``cold_start_s``; jobs queued before then are late
    or not whatever is launched. Each further worker is worth the late arrivals it avoids
    after that, at ``late_price_s`` GPU-seconds each, against ``launch_cost_s`` (its boot and
    the time it is held). With nothing running or booting, or too little for the arrivals
    then, so that the queue would never drain, workers are launched regardless: every job
    must run.
    """
    left, slots_then = backlog_at(cold_start_s, queued, ready_slots, coming, rates, run_s)
    rate_then = next((r for u, r in rates if u >= cold_start_s), rates[-1][1] if rates else 0.0)

    def late(n: int) -> float:
        return late_after(left, slots_then + n * slots, rate_then, run_s, wait_s)

    launch = 0
    if queued and slots_then == 0:
        launch = 1
    # A queue that grows forever gets the slots to make it drain.
    stable = rate_then * run_s
    if slots_then + launch * slots <= stable:
        launch = math.floor((stable - slots_then) / slots) + 1
    if left > 0.0 and late_price_s > 0.0:
        # Marginal value: keep adding while one more worker saves more than it costs.
        while late_price_s * (late(launch) - late(launch + 1)) > launch_cost_s:
            launch += 1
    return launch, left, slots_then, late(launch)
