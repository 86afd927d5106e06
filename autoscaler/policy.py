"""How many workers each model should have: a pure function of what was observed.

``decide(observations, configs, state, now)`` returns a :class:`Decision` per observed model
and the policy's next state. It does no I/O; time comes in as ``now`` (epoch seconds), so
the live loop, ``tidal autoscale --once`` from cron and the benchmark's simulator run this
same code.

The goal is the model's SLO, at most 5% of jobs waiting longer than ``target_wait_s`` before
they start, for the least GPU time. Per model and tick, from the estimates of
:mod:`autoscaler.estimates` and the busy periods of :mod:`autoscaler.episodes`:

1. **Launch for a backlog, only if it pays after a cold start.** A worker launched now takes
   jobs ``cold_start_s`` later. The queue is projected to that moment (the capacity running
   and booting drains it; arrivals come at the surge's rate for as long as the surge is
   expected to last, then at the lasting rate). Jobs queued before then are late or not
   whatever is launched; each further worker is worth the late arrivals it avoids after
   that, at ``cost_bias`` cold starts of GPU time per late job, against its boot and hold.
   A burst the fleet drains before a new worker could help launches nothing. A queue with
   no capacity, or one that would never drain, always gets workers: every job must run.
2. **Launch for a lasting rate**: the Erlang-C floor of the rate both rate windows support.
3. **Hold what was needed** within ``hold_s`` (one cold start unless ``scale_down_window_s``
   says otherwise): releasing capacity and needing it again costs a cold start, the
   break-even of ski rental. Busy workers always stay; a worker still draining is put back
   rather than a new one launched.
4. **While idle**, the learned keep-alive plan decides about the pool (hold it through gaps
   likely to end soon, pre-warm it ahead of gaps that end predictably), unless the SLO is
   out of reach at ``cost_bias`` times a job's run time of idle GPU per late job, in which
   case idle capacity is for cost alone, and so are launches. Before the plan has enough
   gaps, the pool is held until holding it has cost what a cold start would.
5. Bounds: ``[min_workers, max_workers]``, at most ``max_step`` launches per tick, no idle
   capacity past ``idle_timeout_s`` or over ``max_gpu_hours_per_day``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from autoscaler import episodes, estimates
from autoscaler.episodes import Episodes
from autoscaler.estimates import Estimates, Estimator
from autoscaler.keepalive import KeepAlive
from autoscaler.queueing import Outlook, launches_needed
from autoscaler.scaling import ModelObservation, ScalingConfig

__all__ = ["Decision", "ModelObservation", "ModelState", "ScalingConfig", "decide", "decide_model"]

DAY_S = 86_400.0  # max_gpu_hours_per_day is judged over a rolling day (an EWMA)


@dataclass(frozen=True, slots=True)
class ModelState:
    estimator: Estimator = field(default_factory=Estimator)
    episodes: Episodes = field(default_factory=Episodes)
    held: tuple[tuple[float, int], ...] = ()  # (time, workers needed): a sliding maximum over hold_s
    gpu_rate: float = 0.0  # GPUs running, EWMA over a day

    def to_dict(self) -> dict[str, Any]:
        return {"estimator": self.estimator.to_dict(), "episodes": self.episodes.to_dict(),
                "held": [list(h) for h in self.held], "gpu_rate": self.gpu_rate}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelState:
        """Inverse of :meth:`to_dict`; raises ``KeyError``, ``TypeError`` or ``ValueError`` on a bad one."""
        return cls(Estimator.from_dict(d["estimator"]), Episodes.from_dict(d["episodes"]),
                   tuple((float(t), int(n)) for t, n in d["held"]), float(d["gpu_rate"]))


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int
    reason: str
    # Idle at zero: with no arrival, the decision stays the same until then (inf: until an arrival).
    # None otherwise. A caller such as the simulator may skip ticks up to it.
    quiet_until: float | None = None


Held = tuple[tuple[float, int], ...]


def _slide(held: Held, now: float, level: int, window_s: float) -> Held:
    """The sliding maximum over ``window_s`` after seeing ``level`` now (entries decreasing in level)."""
    kept = [(t, v) for t, v in held if t > now - window_s and v > level]
    return (*kept, (now, level))


def _fmt_s(s: float) -> str:
    if s >= 7200:
        return f"{s / 3600:.1f}h"
    if s >= 120:
        return f"{s / 60:.0f}min"
    return f"{s:.0f}s"


def _launch(obs: ModelObservation, cfg: ScalingConfig, est: Estimates, late_price: float) -> tuple[int, str]:
    """Workers to launch for the backlog, and why."""
    cold, wait, current = cfg.cold_start_s, cfg.target_wait_s, obs.workers + obs.booting
    coming = [(max(0.0, cold - age), cfg.slots) for age in obs.booting_age_s[: obs.booting]]
    coming += [(cold, cfg.slots)] * (obs.booting - len(coming))
    after = est.lasting_rate
    rates = [(est.surge_left_s, max(est.surge_rate, after)), (math.inf, after)]
    outlook = Outlook(obs.queued, obs.workers * cfg.slots, coming, rates, est.run_s, est.surge_s)
    launch, left, slots_then, late = launches_needed(
        outlook, cold, cfg.slots, wait, late_price, cold + cfg.hold_s, max(0, cfg.max_workers - current)
    )
    if launch and slots_then:
        then = left * est.run_s / slots_then
        if then > wait:
            return launch, (f"expected wait {then:.0f}s > {wait:g}s target when a new worker could start "
                            f"({_fmt_s(cold)}) with {current}: launching {launch}, ready in {_fmt_s(cold)}")
        return launch, (f"backlog {obs.queued}: jobs queued for up to {_fmt_s(est.surge_s)} would start late with "
                        f"{current}: launching {launch}, ready in {_fmt_s(cold)}")
    if launch:
        return launch, f"{obs.queued} queued and no worker: launching {launch}, ready in {_fmt_s(cold)}"
    if left <= 0.0:
        return 0, f"backlog {obs.queued} drains before a new worker could help ({_fmt_s(cold)}): launching none"
    if late >= 0.5:
        return 0, (f"backlog {obs.queued}: about {late:.0f} jobs will start late whatever is launched now; "
                   f"more workers would not save enough of them for the {_fmt_s(cold + cfg.hold_s)} each costs: "
                   f"launching none")
    return 0, f"backlog {obs.queued}: the {current} running and booting start it within {wait:g}s: launching none"


def _idle_note(plan: KeepAlive, idle_s: float, level: int, cfg: ScalingConfig) -> str:
    why = f"{plan.workers} warm until idle {_fmt_s(plan.keep_s)}"
    if plan.prewarm_s is not None:
        why += f", pre-warm from {_fmt_s(plan.prewarm_s)} to {_fmt_s(plan.until_s)}"
    why += f"; expected {plan.late_share:.1%} of jobs late after cold starts"
    if not plan.slo_met:
        why += (f"; p95 <= {cfg.target_wait_s:g}s would cost more idle GPU than {cfg.cost_bias:g}x a job's run time "
                f"per late job avoided, so GPU time is minimised (raise cost_bias to buy it)")
    return f"idle {_fmt_s(idle_s)}: {f'keeping {level}' if level else 'none warm'} ({why})"


def decide_model(
    obs: ModelObservation, cfg: ScalingConfig, state: ModelState, now: float
) -> tuple[Decision, ModelState]:
    current = obs.workers + obs.booting
    busy = obs.workers - obs.idle_workers
    working = obs.queued + obs.in_flight + obs.arrivals > 0
    if state.estimator.at is None:
        # A fresh state knows nothing of why the fleet is what it is: hold it for hold_s as if needed now.
        state = replace(state, held=((now, current),))
    dt = max(0.0, now - state.estimator.at) if state.estimator.at is not None else 0.0
    est, estimator = estimates.update(state.estimator, obs, cfg, now)
    ep = episodes.track(state.episodes, working, obs.arrivals, est, cfg, now)
    keep = math.exp(-dt / DAY_S)
    gpu_rate = state.gpu_rate * keep + (current + obs.draining) * (1.0 - keep)
    over_budget = cfg.max_gpu_hours_per_day is not None and gpu_rate * 24 > cfg.max_gpu_hours_per_day
    plan = ep.plan if ep.learned and not over_budget else None
    # A late job is worth cost_bias cold starts of GPU time, unless the plan found the SLO out of
    # reach: then launches, like idle capacity, are for cost alone.
    late_price = 0.0 if plan is not None and not plan.slo_met else cfg.cost_bias * cfg.cold_start_s
    notes: list[str] = []
    wake = math.inf
    held = state.held

    launch = 0
    if obs.queued:
        launch, why = _launch(obs, cfg, est, late_price)
        notes.append(why)
    up = current + launch if launch else 0
    # With the SLO out of reach, a lasting rate buys only the workers that keep its queue from growing.
    launch_floor = est.launch_floor if late_price > 0 else min(est.launch_floor, est.stable_floor)

    if working:
        # What is held: capacity that would be bought again if released (ski rental), i.e. what the
        # short-run floor or a launch justified. A momentary peak of busy workers is not: its queue
        # drains before a new worker could boot, so releasing the workers it used costs nothing.
        # While jobs wait, nothing is released (what runs or boots is in use or on its way to them).
        held = _slide(held, now, max(est.floor, up), cfg.hold_s)
        kept = max(min(current, max(v for _, v in held)), current if obs.queued else 0)
        # Workers still draining are warm and free to take back: a backlog reclaims them up to the
        # acceptable backlog per worker (slots running plus slots * target / run time waiting).
        per_worker = cfg.slots * (1.0 + cfg.target_wait_s / est.run_s)
        reclaim = min(current + obs.draining, math.ceil((obs.queued + obs.in_flight) / per_worker - 1e-9))
        desired = max(busy, launch_floor, up, kept, reclaim if obs.queued else 0)
        if launch_floor >= max(up, kept, busy) and launch_floor:
            goal = f"keep p95 wait <= {cfg.target_wait_s:g}s" if late_price > 0 else "keep up"
            notes.append(f"{est.lasting_rate:.3g}/s x {est.run_s:.3g}s: {launch_floor} workers {goal}")
        elif kept > max(up, launch_floor, busy):
            notes.append(f"holding {kept}: needed within the last {_fmt_s(cfg.hold_s)}")
    else:
        idle_s = now - ep.idle_since if ep.idle_since is not None else 0.0
        held = _slide(held, now, 0, cfg.hold_s)
        recent = min(current, max(v for _, v in held))
        if over_budget:
            desired = 0
            notes.append(f"over max_gpu_hours_per_day {cfg.max_gpu_hours_per_day:g}: no idle capacity")
        elif cfg.idle_timeout_s is not None and idle_s >= cfg.idle_timeout_s:
            desired = 0
            notes.append(f"idle {_fmt_s(idle_s)} >= idle_timeout {_fmt_s(cfg.idle_timeout_s)}")
        elif plan is not None:
            # The plan decides about the pool; capacity above it that work needed within hold_s is
            # held as while working (a lull under steady load is not a gap to plan for).
            level = plan.level(idle_s, current)
            desired = max(level, recent) if recent > plan.workers else level
            if desired > level:
                notes.append(f"idle {_fmt_s(idle_s)}: holding {desired}: needed within the last {_fmt_s(cfg.hold_s)}")
            else:
                notes.append(_idle_note(plan, idle_s, desired, cfg))
                wake = now - idle_s + plan.next_change_s(idle_s)
        else:
            # Too few gaps to plan from: hold what the last busy period's first cold start needed
            # until holding it has cost what a cold start would (its boot, plus the jobs it would
            # make late at the late-job price): the break-even of ski rental.
            pool = min(current, ep.last_need) if ep.last_need else recent
            break_even = cfg.hold_s + late_price * ep.last_early / max(1, pool)
            desired = max(recent if idle_s < cfg.hold_s else 0, pool if idle_s < break_even else 0)
            if desired:
                notes.append(f"idle {_fmt_s(idle_s)}: keeping {desired} until idle {_fmt_s(break_even)} (break-even "
                             f"with a cold start that makes {ep.last_early} jobs late)")
            elif idle_s < break_even:
                notes.append(f"idle {_fmt_s(idle_s)}: nothing running to keep")
            else:
                notes.append(f"idle {_fmt_s(idle_s)} >= keep-alive {_fmt_s(break_even)} (break-even with a cold start)")

    if desired < cfg.min_workers:
        desired = cfg.min_workers
        notes.append(f"min_workers={cfg.min_workers}")
    if desired > cfg.max_workers:
        desired = cfg.max_workers
        notes.append(f"max_workers={cfg.max_workers}")
    if desired > current + cfg.max_step:
        notes.append(f"wants {desired}, max_step={cfg.max_step}")
        desired = current + cfg.max_step
    quiet = wake if not working and desired == 0 and current == 0 and not obs.draining else None
    facts = (f"queued={obs.queued} in_flight={obs.in_flight} workers={obs.workers} busy={busy} "
             f"booting={obs.booting} arrivals={est.rate:.3g}/s run={est.run_s:.3g}s")
    reason = f"{facts} → desired {desired}" + (f" ({'; '.join(notes)})" if notes else "")
    return Decision(desired, reason, quiet), ModelState(estimator, ep, held, gpu_rate)


def decide(
    observations: Mapping[str, ModelObservation],
    configs: Mapping[str, ScalingConfig],
    state: Mapping[str, ModelState],
    now: float,
) -> tuple[dict[str, Decision], dict[str, ModelState]]:
    """Decisions for every model that was both observed and configured.

    A model missing from ``observations`` gets no decision and keeps its state: the
    autoscaler never scales on data it does not have.
    """
    decisions: dict[str, Decision] = {}
    next_state = dict(state)
    for model, obs in observations.items():
        cfg = configs.get(model)
        if cfg is None:
            continue
        decisions[model], next_state[model] = decide_model(obs, cfg, state.get(model, ModelState()), now)
    return decisions, next_state
