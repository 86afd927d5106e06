"""The scaling policy, tick by tick with an injected clock.

Each scenario is a table of ``(now, observation, expected desired)``; the policy's state is
carried from one row to the next exactly as the autoscaler loop carries it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from autoscaler.policy import (
    Decision,
    ModelObservation,
    ModelState,
    ScalingConfig,
    decide,
    target_backlog_per_worker,
)
from core.settings import AutoscalerSettings, ModelSettings

CFG = ScalingConfig(
    min_workers=0,
    max_workers=8,
    target_backlog_per_worker=4,
    max_step=2,
    scale_down_window_s=30,
    idle_timeout_s=60,
)


def obs(
    queued: int = 0, in_flight: int = 0, workers: int = 0, idle: int | None = None, booting: int = 0
) -> ModelObservation:
    """``idle`` defaults to the workers not needed for ``in_flight`` at one job per worker."""
    if idle is None:
        idle = max(0, workers - in_flight)
    return ModelObservation(
        queued=queued,
        in_flight=in_flight,
        workers=workers,
        slots_per_worker=1,
        idle_workers=idle,
        booting=booting,
    )


@dataclass(frozen=True)
class Tick:
    now: float
    seen: ModelObservation
    desired: int


def replay(cfg: ScalingConfig, ticks: list[Tick]) -> list[Decision]:
    state: dict[str, ModelState] = {}
    out = []
    for i, t in enumerate(ticks):
        decisions, state = decide({"m": t.seen}, {"m": cfg}, state, t.now)
        d = decisions["m"]
        assert d.desired == t.desired, f"tick {i} at t={t.now}: {d.reason}"
        out.append(d)
    return out


SCENARIOS: dict[str, tuple[ScalingConfig, list[Tick]]] = {
    "scale from zero on the first queued job, no window": (
        CFG,
        [
            Tick(0, obs(), 0),
            Tick(1, obs(queued=1), 1),
        ],
    ),
    "booting capacity counts: no second launch while the first boots": (
        CFG,
        [
            Tick(0, obs(queued=3), 1),
            Tick(1, obs(queued=3, booting=1), 1),
            Tick(2, obs(queued=4, booting=1), 1),
            Tick(3, obs(queued=0, in_flight=1, workers=1), 1),
        ],
    ),
    "burst scales up by max_step per tick up to max_workers": (
        CFG,
        [
            Tick(0, obs(queued=100), 2),
            Tick(1, obs(queued=100, booting=2), 4),
            Tick(2, obs(queued=100, booting=4), 6),
            Tick(3, obs(queued=96, in_flight=4, workers=4, booting=2), 8),
            Tick(4, obs(queued=92, in_flight=8, workers=8), 8),
        ],
    ),
    "scale down waits for the window, then goes to the window's highest need": (
        CFG,
        [
            Tick(0, obs(queued=28, in_flight=4, workers=4, idle=0), 6),
            Tick(1, obs(queued=26, in_flight=6, workers=6, booting=2, idle=0), 8),
            Tick(10, obs(queued=0, in_flight=8, workers=8, idle=0), 8),  # busy workers stay
            Tick(11, obs(queued=0, in_flight=3, workers=8, idle=5), 8),  # need 3: window opens
            Tick(20, obs(queued=4, in_flight=2, workers=8, idle=6), 8),  # need 2
            Tick(40, obs(queued=0, in_flight=1, workers=8, idle=7), 8),  # 29 s: still holding
            Tick(41, obs(queued=0, in_flight=1, workers=8, idle=7), 3),  # 30 s: highest need was 3
        ],
    ),
    "never scale in busy workers": (
        CFG,
        [
            Tick(0, obs(in_flight=6, workers=6, idle=0), 6),
            Tick(100, obs(in_flight=6, workers=6, idle=0), 6),
            Tick(200, obs(in_flight=5, workers=6, idle=1), 6),
            Tick(230, obs(in_flight=5, workers=6, idle=1), 5),
        ],
    ),
    "min_workers is held with no work, and reached at once": (
        ScalingConfig(2, 8, 4, 2, 30, 60),
        [
            Tick(0, obs(), 2),
            Tick(1, obs(booting=2), 2),
            Tick(500, obs(workers=2), 2),
        ],
    ),
    "max_workers caps a backlog that wants more": (
        ScalingConfig(0, 3, 4, 10, 30, 60),
        [
            Tick(0, obs(queued=1000), 3),
            Tick(1, obs(queued=997, in_flight=3, workers=3, idle=0), 3),
        ],
    ),
    "flapping load does not flap the fleet": (
        CFG,
        [
            Tick(0, obs(queued=16, workers=4, idle=4), 4),
            *[
                Tick(t, obs(queued=15 if t % 20 == 0 else 0, in_flight=1, workers=4, idle=3), 4)
                for t in range(10, 200, 10)
            ],
        ],
    ),
    "scale to zero only after idle_timeout of no work": (
        CFG,
        [
            Tick(0, obs(in_flight=1, workers=2, idle=1), 2),
            Tick(1, obs(workers=2), 2),  # idle from t=1; keeps one warm
            Tick(31, obs(workers=2), 1),  # window of 30 s passed: down to the warm one
            Tick(40, obs(workers=1), 1),
            Tick(60, obs(workers=1), 1),  # 59 s idle
            Tick(61, obs(workers=1), 0),  # 60 s idle
            Tick(62, obs(), 0),
            Tick(63, obs(queued=1), 1),  # and back on the next job
        ],
    ),
    "new work resets the idle clock": (
        CFG,
        [
            Tick(0, obs(workers=1), 1),
            Tick(50, obs(in_flight=1, workers=1, idle=0), 1),
            Tick(100, obs(workers=1), 1),
            Tick(159, obs(workers=1), 1),
            Tick(160, obs(workers=1), 0),
        ],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    cfg, ticks = SCENARIOS[name]
    replay(cfg, ticks)


def test_reason_states_the_inputs_and_the_result() -> None:
    decisions, _ = decide({"m": obs(queued=12, in_flight=4, booting=1)}, {"m": CFG}, {}, 0.0)
    reason = decisions["m"].reason
    assert reason.startswith("queued=12 in_flight=4 target=4/worker workers=0 busy=0 booting=1 → desired 3")
    assert "max_step=2" in reason


def test_unobserved_model_gets_no_decision_and_keeps_its_state() -> None:
    held = ModelState(below_since=5.0, window_peak=2, idle_since=None)
    decisions, state = decide({}, {"m": CFG}, {"m": held}, 100.0)
    assert decisions == {}
    assert state == {"m": held}


def test_unconfigured_model_is_ignored() -> None:
    decisions, _ = decide({"other": obs(queued=5)}, {"m": CFG}, {}, 0.0)
    assert decisions == {}


def test_target_backlog_follows_the_acceptable_wait_formula() -> None:
    # 2 slots, 10 s acceptable wait, 5 s jobs: 2 running + 2 * 10 / 5 queued
    assert target_backlog_per_worker(2, 10.0, 5.0) == 6.0
    cfg = ScalingConfig.from_settings(
        AutoscalerSettings(acceptable_wait_s=30.0, max_step=3, scale_down_window_s=7, idle_timeout_s=9),
        ModelSettings(handler="m:f", slots=1, mean_run_s=10.0, min_workers=1, max_workers=5),
    )
    assert cfg == ScalingConfig(
        min_workers=1,
        max_workers=5,
        target_backlog_per_worker=4.0,
        max_step=3,
        scale_down_window_s=7,
        idle_timeout_s=9,
    )
