"""What a model's traffic looks like, estimated from each tick's observation. Pure.

- **Arrival rates**: EWMAs of arrivals per second over about one cold start (``rate``) and
  over ten (``base_rate``), corrected while younger than their window.
- **Run time**: run seconds per completed job over the last few hundred, starting from the
  configured ``mean_run_s`` (counted as one job).
- **Burst need**: the workers that, idle at the start of some window of the last cold start,
  would have started every job arriving in it within the target; what a warm pool must hold
  because capacity launched for it comes too late.
- **Surges**: while a queue exists, the rate since it formed, and how much longer that rate is
  expected to last: the upper quartile of what past surges of that age went on for (learned
  per model), or, past anything seen, Gott's rule (a run that has lasted A ends within
  another 3 A with 75% probability).
- **Floors**: the fleet a steady Poisson stream at the estimated rate needs for the wait
  target (Erlang C): one for the short-run rate, which justifies holding capacity, and one
  for the rate both windows support, which justifies launching it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from autoscaler.histogram import Durations
from autoscaler.queueing import steady_workers
from autoscaler.scaling import ModelObservation, ScalingConfig

SLO_QUANTILE = 0.95
# The steady floor lets half the SLO's 5% wait longer: Erlang C assumes a steady Poisson stream at the
# estimated rate, and the rest of the 5% absorbs the estimate's error and the queues of rate changes.
FLOOR_MISS = (1.0 - SLO_QUANTILE) / 2
# The run-time estimate remembers about this many completions.
RUN_MEMORY_JOBS = 300
# The rate traffic returns to after a surge: an EWMA over this many rate windows.
BASE_WINDOWS = 10
SURGE_QUANTILE = 0.75
SURGE_EVIDENCE = 2.0  # past surges (faded count) that must have lasted as long for them to be the guide
SURGE_PERSISTENCE = 3.0


@dataclass(frozen=True, slots=True)
class Estimator:
    """What the estimates remember between ticks."""

    at: float | None = None  # the last tick
    born: float | None = None  # the first tick
    rate: float = 0.0  # raw EWMA over rate_window_s
    base_rate: float = 0.0  # raw EWMA over BASE_WINDOWS rate windows
    run_s_sum: float = 0.0  # faded run seconds of completed jobs ...
    done: float = 0.0  # ... and faded completions
    recent: tuple[tuple[float, int], ...] = ()  # (start of tick, arrivals) over the last cold start
    backlog_since: float | None = None  # when the current queue formed; None while nothing waits
    backlog_arrivals: int = 0  # jobs that arrived since then
    surge_last: float | None = None  # the last tick that kept the surge going
    surges: Durations = field(default_factory=Durations)  # how long past surges went on

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at, "born": self.born, "rate": self.rate, "base_rate": self.base_rate,
            "run_s_sum": self.run_s_sum, "done": self.done, "recent": [list(r) for r in self.recent],
            "backlog_since": self.backlog_since, "backlog_arrivals": self.backlog_arrivals,
            "surge_last": self.surge_last, "surges": self.surges.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Estimator:
        return cls(
            at=_opt(d["at"]), born=_opt(d["born"]), rate=float(d["rate"]), base_rate=float(d["base_rate"]),
            run_s_sum=float(d["run_s_sum"]), done=float(d["done"]),
            recent=tuple((float(t), int(n)) for t, n in d["recent"]),
            backlog_since=_opt(d["backlog_since"]), backlog_arrivals=int(d["backlog_arrivals"]),
            surge_last=_opt(d["surge_last"]), surges=Durations.from_dict(d["surges"]),
        )


@dataclass(frozen=True, slots=True)
class Estimates:
    rate: float  # arrivals per second over about one cold start
    base_rate: float  # ... over ten
    lasting_rate: float  # the rate both support, not counting the latest arrival (see update)
    run_s: float
    burst_need: int
    floor: int  # workers the short-run rate needs: capacity this holds
    launch_floor: int  # workers the rate both windows support needs: capacity this launches
    stable_floor: int  # workers that rate needs just to keep its queue from growing
    surge_rate: float  # arrivals per second since the current queue formed (0: no queue)
    surge_s: float  # how long ago it formed
    surge_left_s: float  # how much longer its rate is expected to last


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)


def _ewma_rate(prev: float, arrivals: int, dt: float, tau: float) -> float:
    """EWMA of the arrival rate; arrivals are taken as spread evenly over the last ``dt``."""
    if dt <= 0:
        return prev + arrivals / tau
    keep = math.exp(-dt / tau)
    return prev * keep + arrivals * (1.0 - keep) / dt


def _window(age_s: float, tau: float) -> float:
    """How many seconds of arrivals an EWMA that started ``age_s`` ago effectively averages."""
    return tau * (1.0 - math.exp(-age_s / tau)) if age_s > 0 else 0.0


def _steady(ewma: float, age_s: float, tau: float) -> tuple[float, float]:
    """(rate, rate not counting one arrival) from an EWMA that started from zero ``age_s`` ago.

    The EWMA is corrected for the weight it has not had yet. One arrival is no rate: without the
    latest arrival in the window, a lone job after a long gap (or the first one seen) does not
    look like a stream."""
    window = _window(age_s, tau)
    if window <= 1e-9:
        return ewma, 0.0
    rate = ewma * tau / window
    return rate, max(0.0, rate - 1.0 / window)


def burst_need(recent: tuple[tuple[float, int], ...], now: float, run_s: float, cfg: ScalingConfig) -> int:
    """Over windows ending now: a slot idle at a window's start starts its first job at once and one
    more every ``run_s`` until the window's end plus the target, so the window's jobs need
    ``jobs / (slots * (1 + (window + target) / run_s))`` workers."""
    need, jobs = 0.0, 0
    for start, n in reversed(recent):
        jobs += n
        need = max(need, jobs / (cfg.slots * (1.0 + (now - start + cfg.target_wait_s) / run_s)))
    return math.ceil(need - 1e-9)


def update(st: Estimator, obs: ModelObservation, cfg: ScalingConfig, now: float) -> tuple[Estimates, Estimator]:
    dt = max(0.0, now - st.at) if st.at is not None else 0.0
    tau = cfg.rate_window_s
    born = st.born if st.born is not None else now - cfg.interval_s
    raw_rate = _ewma_rate(st.rate, obs.arrivals, dt, tau)
    raw_base = _ewma_rate(st.base_rate, obs.arrivals, dt, BASE_WINDOWS * tau)
    rate, short = _steady(raw_rate, now - born, tau)
    base_rate, base = _steady(raw_base, now - born, BASE_WINDOWS * tau)

    fade = (1.0 - 1.0 / RUN_MEMORY_JOBS) ** obs.completions
    run_sum = st.run_s_sum * fade + obs.completed_run_s
    done = st.done * fade + obs.completions
    run_s = max(1e-3, (run_sum + cfg.mean_run_s) / (done + 1.0))

    # This tick's arrivals came after the last tick, and within one interval of now (a caller that
    # skipped idle ticks ticks again right after an arrival).
    start = max(st.at if st.at is not None else now - cfg.interval_s, now - cfg.interval_s)
    recent = tuple((t, n) for t, n in st.recent if t > now - cfg.cold_start_s)
    if obs.arrivals:
        recent = (*recent, (start, obs.arrivals))

    # The rate both windows support: the long one forgets a step down slowly, the short one a burst.
    lasting = min(short, base)
    floor = steady_workers(short, run_s, cfg.slots, cfg.target_wait_s, FLOOR_MISS, cfg.max_workers)
    launch_floor = min(floor, steady_workers(lasting, run_s, cfg.slots, cfg.target_wait_s, FLOOR_MISS,
                                             cfg.max_workers))

    surges = st.surges
    if obs.queued:
        since = st.backlog_since if st.backlog_since is not None else start
        jobs = st.backlog_arrivals + obs.arrivals if st.backlog_since is not None else obs.arrivals
        surge_s = max(now - since, cfg.interval_s)
        surge_rate = max(0, jobs - 1) / surge_s  # one arrival is no rate here either
        # The surge goes on while ticks bring at least half its mean rate: a queue that outlasts its
        # burst (capacity still booting) does not make the burst longer.
        tick_rate = obs.arrivals / max(now - start, cfg.interval_s)
        last = now if obs.arrivals and tick_rate >= 0.5 * surge_rate else st.surge_last
        left = surges.remaining(surge_s, SURGE_QUANTILE, SURGE_EVIDENCE)
        surge_left = left if left is not None else SURGE_PERSISTENCE * surge_s
    else:
        if st.backlog_since is not None and st.surge_last is not None:
            surges = surges.record(max(cfg.interval_s, st.surge_last - st.backlog_since))
        since, jobs, last, surge_s, surge_rate, surge_left = None, 0, None, 0.0, 0.0, 0.0

    stable = min(cfg.max_workers, math.floor(lasting * run_s / cfg.slots) + 1) if lasting > 0 else 0
    est = Estimates(rate, base_rate, lasting, run_s, burst_need(recent, now, run_s, cfg), floor, launch_floor,
                    stable, surge_rate, surge_s, surge_left)
    return est, replace(
        st, at=now, born=born, rate=raw_rate, base_rate=raw_base, run_s_sum=run_sum, done=done, recent=recent,
        backlog_since=since, backlog_arrivals=jobs, surge_last=last, surges=surges,
    )
