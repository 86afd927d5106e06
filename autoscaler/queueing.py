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
from dataclasses import dataclass


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


@dataclass(frozen=True, slots=True)
class Outlook:
    """What a model's queue faces from now: the jobs waiting, the capacity running and booting,
    and the arrivals to come."""

    queued: float
    ready_slots: int
    coming: Sequence[tuple[float, int]]  # (seconds until ready, slots) of capacity still booting
    rates: Sequence[tuple[float, float]]  # (until, arrivals per second); the last lasts to any horizon
    run_s: float
    queue_age_s: float = 0.0  # how long the oldest queued job has waited

    def rate_at(self, t: float) -> float:
        return next((r for u, r in self.rates if u > t), self.rates[-1][1] if self.rates else 0.0)


def backlog_at(horizon_s: float, o: Outlook) -> tuple[float, int]:
    """(jobs still queued, slots running) ``horizon_s`` from now.

    While a queue exists every slot works, so it changes at ``rate - slots / run_s``; a queue
    never goes below zero.
    """
    coming = [(min(max(at, 0.0), horizon_s), extra) for at, extra in o.coming]
    points = sorted({0.0, horizon_s, *(at for at, _ in coming), *(min(u, horizon_s) for u, _ in o.rates if u > 0)})
    q = float(o.queued)
    for start, end in itertools.pairwise(points):
        slots = o.ready_slots + sum(extra for at, extra in coming if at <= start)
        q = max(0.0, q + (o.rate_at(start) - slots / o.run_s) * (end - start))
    return q, o.ready_slots + sum(extra for _, extra in coming)


def _count_late(first: float, last: float, wait0: float, slope: float, wait_s: float) -> float:
    """How many of the queue positions ``first < k <= last`` (a continuum) have a wait
    ``wait0 + slope * k`` above ``wait_s``."""
    if last <= first:
        return 0.0
    if slope == 0.0:
        return last - first if wait0 > wait_s else 0.0
    cut = (wait_s - wait0) / slope
    if slope > 0.0:  # later positions wait longer: late above the cut
        return last - min(max(cut, first), last)
    return min(max(cut, first), last) - first  # earlier positions wait longer: late below the cut


def late_jobs(left: float, slots: int, free: int, oldest_s: float, rate: float, run_s: float, wait_s: float) -> float:
    """Jobs that start later than ``wait_s``, among ``left`` queued now and those arriving from now on.

    FIFO on ``slots`` slots draining ``mu = slots / run_s`` jobs per second, of which ``free``
    are idle now and start the oldest jobs at once. The queued jobs arrived evenly over the
    last ``oldest_s`` seconds; position ``k`` (1 the oldest) has waited ``oldest_s - (k - 1) /
    queue_rate`` and starts ``max(0, k - free) / mu`` from now. Later arrivals come at ``rate``
    and wait for the queue they find. A queue that does not drain is counted as if one slot
    drained it.
    """
    mu = slots / run_s
    late = 0.0
    if left > 0.0:
        gap = oldest_s / left  # seconds between queued arrivals
        head = min(float(free), left)
        late += _count_late(0.0, head, oldest_s + gap, -gap, wait_s)
        late += _count_late(head, left, oldest_s + gap - free / mu, 1.0 / mu - gap, wait_s)
    ahead = max(0.0, left - free)
    threshold = mu * wait_s
    if ahead > threshold:
        late += rate * (ahead - threshold) / max(mu - rate, 1.0 / run_s)
    return late


def launches_needed(
    o: Outlook, cold_start_s: float, slots: int, wait_s: float, late_price_s: float, launch_cost_s: float,
    most: int = 1000,
) -> tuple[int, float, int, float]:
    """(workers to launch now, jobs still queued when they would be ready, slots running then,
    jobs that would still start late).

    A worker launched now takes jobs after ``cold_start_s``. Each further worker is worth the
    late jobs it avoids among those queued then and those arriving after (:func:`late_jobs`;
    the oldest queued then has waited ``queue_age_s`` plus the cold start, so with a long one
    the queued have waited too long already), at ``late_price_s`` GPU-seconds each, against
    ``launch_cost_s`` (its boot and the time it is held), up to ``most``. A cold start shorter
    than the target gets at least the workers that drain the queue left within the target. With
    nothing running or booting, or too little for the arrivals then, so that the queue would
    never drain, workers are launched regardless: every job must run.
    """
    left, slots_then = backlog_at(cold_start_s, o)
    rate_then, run_s = o.rate_at(cold_start_s), o.run_s

    def late(n: int) -> float:
        return late_jobs(left, slots_then + n * slots, n * slots, o.queue_age_s + cold_start_s, rate_then, run_s,
                         wait_s)

    launch = 0
    if o.queued and slots_then == 0:
        launch = 1
    # A queue that grows forever gets the slots to make it drain.
    stable = rate_then * run_s
    if slots_then + launch * slots <= stable:
        launch = math.floor((stable - slots_then) / slots) + 1
    # A worker ready within the target can still start queued jobs in time: then the queue left
    # is drained within the target, as many workers as that takes.
    if cold_start_s < wait_s and left > 0.0:
        launch = max(launch, math.ceil((left * run_s / wait_s - slots_then) / slots - 1e-9))
    if left > 0.0 and late_price_s > 0.0:
        # The number that saves the most late jobs net of what it costs. Not a marginal search:
        # queued jobs that started late already save nothing until enough workers start the young
        # ones at once.
        base, base_late = launch, late(launch)
        best = 0.0
        for n in range(base + 1, max(base, most) + 1):
            gain = late_price_s * (base_late - late(n)) - launch_cost_s * (n - base)
            if gain > best:
                best, launch = gain, n
            if late(n) <= 0.0:
                break
    return launch, left, slots_then, late(launch)
