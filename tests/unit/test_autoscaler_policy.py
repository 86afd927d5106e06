"""The scaling policy, tick by tick with an injected clock.

Each scenario is a table of ``(now, observation, expected desired, phrase of the reason)``; the
policy's state is carried from one row to the next exactly as the autoscaler loop carries it.
An expected count is exact, or a ``(low, high)`` range where only the direction is the rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pytest

from autoscaler.policy import Decision, ModelObservation, ModelState, ScalingConfig, decide
from core.settings import AutoscalerSettings, ModelSettings

COLD = 90.0
CFG = ScalingConfig(
    min_workers=0, max_workers=50, slots=1, target_wait_s=10.0, cold_start_s=COLD, mean_run_s=1.0,
    interval_s=2.0, max_step=8, hold_s=COLD,
)


def obs(
    queued: int = 0, in_flight: int = 0, workers: int = 0, idle: int | None = None, booting: int = 0,
    arrivals: int = 0, done: int = 0, run_s: float = 1.0, ages: tuple[float, ...] = (),
) -> ModelObservation:
    """``idle`` defaults to the workers not needed for ``in_flight`` at one job per worker."""
    return ModelObservation(
        queued=queued, in_flight=in_flight, workers=workers, slots_per_worker=1,
        idle_workers=max(0, workers - in_flight) if idle is None else idle, booting=booting,
        arrivals=arrivals, completions=done, completed_run_s=done * run_s, booting_age_s=ages,
    )


@dataclass(frozen=True)
class Tick:
    now: float
    seen: ModelObservation
    desired: int | tuple[int, int]
    says: str = ""


def replay(cfg: ScalingConfig, ticks: list[Tick], state: ModelState | None = None) -> tuple[list[Decision], ModelState]:
    st: dict[str, ModelState] = {} if state is None else {"m": state}
    out = []
    for i, t in enumerate(ticks):
        decisions, st = decide({"m": t.seen}, {"m": cfg}, st, t.now)
        d = decisions["m"]
        lo, hi = t.desired if isinstance(t.desired, tuple) else (t.desired, t.desired)
        assert lo <= d.desired <= hi, f"tick {i} at t={t.now}: {d.reason}"
        assert t.says in d.reason, f"tick {i} at t={t.now}: {d.reason!r} lacks {t.says!r}"
        out.append(d)
    return out, st["m"]


def steady(start: float, end: float, workers: int, per_tick: int, run_s: float) -> list[Tick]:
    """Ticks of a steady load: ``per_tick`` jobs arrive and finish every 2 s, none waits."""
    busy = round(per_tick * run_s / 2)
    return [Tick(t, obs(in_flight=busy, workers=workers, arrivals=per_tick, done=per_tick, run_s=run_s), (0, 99))
            for t in range(int(start), int(end), 2)]


SCENARIOS: dict[str, tuple[ScalingConfig, list[Tick]]] = {
    "the first job with no worker launches one, with no window": (
        CFG,
        [
            Tick(0, obs(), 0),
            Tick(2, obs(queued=1, arrivals=1), 1, "queued and no worker: launching 1, ready in 90s"),
            # With a 90 s cold start the job will be late anyway: a second worker would not help it.
            Tick(4, obs(queued=1, booting=1, ages=(2.0,)), 1, "launching none"),
        ],
    ),
    "a burst the warm fleet drains before a cold start launches nothing": (
        CFG,
        [
            # Ten minutes of a job every 2 s on 3 workers, then 20 jobs at once.
            *steady(0, 600, workers=3, per_tick=1, run_s=1.0),
            Tick(600, obs(queued=17, in_flight=3, workers=3, arrivals=20), 3, "drains before a new worker could help"),
            Tick(602, obs(queued=11, in_flight=3, workers=3, done=6), 3, "launching none"),
            Tick(604, obs(queued=5, in_flight=3, workers=3, done=6), 3),
            # Idle workers go back to what the rate needs: nothing launched them, none would be relaunched.
            Tick(606, obs(in_flight=2, workers=3, done=6), (2, 3)),
        ],
    ),
    "a backlog that will still be there when a worker is ready launches for the new rate": (
        CFG,
        [
            *steady(0, 200, workers=4, per_tick=2, run_s=2.0),
            # The rate jumps from 1/s to 6/s: the queue grows by 8 jobs per tick on 4 workers.
            # For the first ticks, a queue that may be gone before a worker could boot launches nothing.
            *[Tick(200 + 2 * k, obs(queued=8 * k, in_flight=4, workers=4, arrivals=12, done=4, run_s=2.0), 4)
              for k in range(1, 3)],
            # Past anything seen, the surge is expected to last (Gott's rule): launches begin, and grow
            # with the surge's age, at most max_step per tick.
            Tick(206, obs(queued=24, in_flight=4, workers=4, arrivals=12, done=4, run_s=2.0), (5, 12), "launching"),
            Tick(208, obs(queued=32, in_flight=4, workers=4, booting=3, ages=(2.0,) * 3, arrivals=12, done=4,
                          run_s=2.0), (8, 15), "launching"),
        ],
    ),
    "a gap shorter than a cold start keeps the worker": (
        CFG,
        [
            Tick(0, obs(in_flight=1, workers=1, arrivals=1), 1),
            Tick(2, obs(workers=1, done=1), 1, "idle 0s: keeping 1"),
            Tick(60, obs(workers=1), 1, "idle 58s"),
            Tick(88, obs(workers=1), 1),
            Tick(90, obs(in_flight=1, workers=1, arrivals=1), 1),
            Tick(92, obs(workers=1, done=1), 1),
        ],
    ),
    "never scale in busy workers": (
        CFG,
        [
            Tick(0, obs(in_flight=6, workers=6), 6),
            Tick(100, obs(in_flight=6, workers=6), 6),
            Tick(200, obs(in_flight=5, workers=6, done=1), (5, 6)),
            Tick(400, obs(in_flight=5, workers=6), 5),
        ],
    ),
    "min_workers is held with no work, and reached at once": (
        replace(CFG, min_workers=2),
        [
            Tick(0, obs(), 2, "min_workers=2"),
            Tick(2, obs(booting=2, ages=(2.0, 2.0)), 2),
            Tick(5000, obs(workers=2), 2),
        ],
    ),
    "max_workers caps a backlog that wants more": (
        replace(CFG, max_workers=3),
        [
            Tick(0, obs(queued=1000, arrivals=1000), 3, "max_workers=3"),
            Tick(2, obs(queued=997, in_flight=3, workers=3), 3),
        ],
    ),
    "idle_timeout_s caps keep-alive": (
        replace(CFG, idle_timeout_s=30.0),
        [
            Tick(0, obs(in_flight=1, workers=1, arrivals=1), 1),
            Tick(2, obs(workers=1, done=1), 1),
            Tick(30, obs(workers=1), 1),
            Tick(32, obs(workers=1), 0, "idle 30s >= idle_timeout 30s"),
        ],
    ),
    "a lone job after hours goes back to zero after its break-even hold": (
        CFG,
        [
            Tick(0, obs(queued=1, arrivals=1), 1),
            Tick(92, obs(in_flight=1, workers=1), 1),
            Tick(112, obs(workers=1, done=1, run_s=20.0), 1),
            # One job would be late after a cold start: hold one cold start plus that job's price
            # (one cold start's worth of GPU time at the default cost_bias): 180 s.
            Tick(250, obs(workers=1), 1, "until idle 3min (break-even with a cold start that makes 1 jobs late)"),
            Tick(294, obs(workers=1), 0, "keep-alive 3min"),
            Tick(296, obs(), 0),
        ],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    cfg, ticks = SCENARIOS[name]
    replay(cfg, ticks)


def periodic_jobs(cycles: int, period_s: float, run_s: float) -> list[Tick]:
    """One job every ``period_s`` (a cron-like caller), each run ``run_s``; the fleet is whatever
    the policy asked for on the tick before (booting for a cold start, then ready)."""
    ticks: list[Tick] = []
    for c in range(cycles):
        t0 = c * period_s
        ticks += [
            Tick(t0, obs(queued=1, arrivals=1), (0, 1)),
            Tick(t0 + COLD, obs(in_flight=1, workers=1), 1),
            Tick(t0 + COLD + run_s, obs(workers=1, done=1, run_s=run_s), (0, 1)),
            *[Tick(t, obs(), (0, 1)) for t in range(int(t0 + COLD + run_s + 2), int(t0 + period_s), 2)],
        ]
    return ticks


def test_predictable_arrivals_are_pre_warmed() -> None:
    """A job every 10 minutes: once enough gaps are seen, the worker is started again shortly
    before the next job is due instead of being held through the whole gap or started cold."""
    cfg = replace(CFG, cost_bias=10.0)
    decisions, state = replay(cfg, periodic_jobs(12, 600.0, 30.0))
    plan = state.episodes.plan
    assert plan is not None and plan.prewarm_s is not None, plan
    assert plan.keep_s < plan.prewarm_s < 600.0 - COLD
    warming = [d for d in decisions[-250:] if d.desired == 1 and "pre-warm" in d.reason and "keeping 1" in d.reason]
    assert warming, "no tick pre-warmed the worker before the next job"
    assert any(d.desired == 0 for d in decisions[-250:]), "the worker was held through the whole gap"


def test_gaps_longer_than_cold_starts_between_lone_jobs_are_not_bought() -> None:
    """Single jobs hours apart: keeping a worker warm for them would cost hours of GPU per late
    job, more than the default price, so the plan minimises GPU time and says so."""
    _, state = replay(CFG, periodic_jobs(10, 7200.0, 20.0))
    plan = state.episodes.plan
    assert plan is not None and not plan.slo_met
    assert plan.keep_s < 7200 and plan.prewarm_s is None


def test_idle_at_zero_reports_until_when_nothing_changes() -> None:
    decisions, _ = decide({"m": obs()}, {"m": CFG}, {}, 0.0)
    assert decisions["m"].desired == 0 and decisions["m"].quiet_until == float("inf")
    decisions, _ = decide({"m": obs(queued=1, arrivals=1)}, {"m": CFG}, {}, 0.0)
    assert decisions["m"].quiet_until is None


def test_reason_states_the_inputs_and_the_result() -> None:
    decisions, _ = decide({"m": obs(queued=12, in_flight=4, booting=1, ages=(30.0,))}, {"m": CFG}, {}, 0.0)
    reason = decisions["m"].reason
    assert reason.startswith("queued=12 in_flight=4 workers=0 busy=0 booting=1 arrivals=")
    assert "→ desired" in reason


def test_state_survives_json() -> None:
    _, state = replay(CFG, periodic_jobs(4, 300.0, 10.0))
    text = json.dumps(state.to_dict())
    assert ModelState.from_dict(json.loads(text)) == state


def test_unobserved_model_gets_no_decision_and_keeps_its_state() -> None:
    _, held = replay(CFG, [Tick(0, obs(workers=2), 2)])
    decisions, state = decide({}, {"m": CFG}, {"m": held}, 100.0)
    assert decisions == {}
    assert state == {"m": held}


def test_unconfigured_model_is_ignored() -> None:
    decisions, _ = decide({"other": obs(queued=5)}, {"m": CFG}, {}, 0.0)
    assert decisions == {}


def test_config_from_settings() -> None:
    auto = AutoscalerSettings(acceptable_wait_s=30.0, max_step=3, interval_s=1.0)
    model = ModelSettings(handler="m:f", slots=2, mean_run_s=10.0, min_workers=1, max_workers=5)
    cfg = ScalingConfig.from_settings(auto, model)
    # The local provider's workers start in a second or two; holding defaults to one cold start.
    assert (cfg.cold_start_s, cfg.hold_s, cfg.target_wait_s, cfg.idle_timeout_s) == (2.0, 2.0, 30.0, None)
    assert (cfg.min_workers, cfg.max_workers, cfg.slots, cfg.max_step, cfg.mean_run_s) == (1, 5, 2, 3, 10.0)
    ec2 = ScalingConfig.from_settings(
        AutoscalerSettings(provider="aws-ec2", scale_down_window_s=60.0),
        ModelSettings(handler="m:f", target_wait_p95_s=4.0, cost_bias=0.5, max_gpu_hours_per_day=24.0),
    )
    assert (ec2.cold_start_s, ec2.hold_s, ec2.target_wait_s, ec2.cost_bias, ec2.max_gpu_hours_per_day) == (
        90.0, 60.0, 4.0, 0.5, 24.0)
