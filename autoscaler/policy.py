"""How many workers each model should have: a pure function of what was observed.

``decide(observations, configs, state, now)`` returns a :class:`Decision` per observed model
and the policy's next state. It does no I/O; time comes in as ``now`` (epoch seconds).

The rule, per model, with ``load = queued + in_flight`` and ``current = workers + booting``:

1. ``need = ceil(load / target_backlog_per_worker)``. Booting instances count as current
   capacity, so work that is already being provisioned for is never provisioned twice.
2. While there is no work at all, one worker is kept warm until the model has been idle for
   ``idle_timeout_s``; then the fleet is released down to ``min_workers`` at once.
3. ``need`` never drops below the busy workers (only idle ones can go) and is clamped to
   ``[min_workers, max_workers]``.
4. Scaling up happens on the tick it is needed, at most ``max_step`` workers per tick (so the
   first queued job takes a model from zero to one with no delay).
5. Scaling down waits until ``need`` has stayed below ``current`` for ``scale_down_window_s``
   and then goes to the highest ``need`` seen during that window; any tick whose ``need`` is
   back at or above ``current`` restarts the window, so load that flaps never flaps the fleet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from core.settings import AutoscalerSettings, ModelSettings


@dataclass(frozen=True, slots=True)
class ModelObservation:
    """One model's queue and fleet as measured on one tick.

    ``slots_per_worker`` is reported for context; the policy works in jobs per worker through
    ``ScalingConfig.target_backlog_per_worker``, which already accounts for the slots.
    """

    queued: int  # jobs waiting in the model's queues
    in_flight: int  # jobs dispatched to a worker or running there
    workers: int  # live workers in state "ready"
    slots_per_worker: int
    idle_workers: int  # live ready workers holding no job
    booting: int  # instances launched whose worker has not registered yet
    draining: int = 0  # live workers finishing their jobs before they are stopped


def target_backlog_per_worker(slots: int, acceptable_wait_s: float, mean_run_s: float) -> float:
    """Jobs (queued + in flight) one worker may hold so that none waits longer than acceptable.

    This is AWS's "acceptable backlog per instance" (acceptable latency / mean processing
    time) measured in units of a worker's ``slots``, plus the ``slots`` jobs the worker is
    running: a worker with ``slots`` slots drains ``slots / mean_run_s`` jobs per second, so a
    newly queued job behind ``slots * acceptable_wait_s / mean_run_s`` others starts in time.
    """
    return slots * (1.0 + acceptable_wait_s / mean_run_s)


@dataclass(frozen=True, slots=True)
class ScalingConfig:
    min_workers: int
    max_workers: int
    target_backlog_per_worker: float
    max_step: int
    scale_down_window_s: float
    idle_timeout_s: float

    @classmethod
    def from_settings(cls, autoscaler: AutoscalerSettings, model: ModelSettings) -> ScalingConfig:
        return cls(
            min_workers=model.min_workers,
            max_workers=model.max_workers,
            target_backlog_per_worker=target_backlog_per_worker(
                model.slots, autoscaler.acceptable_wait_s, model.mean_run_s
            ),
            max_step=autoscaler.max_step,
            scale_down_window_s=autoscaler.scale_down_window_s,
            idle_timeout_s=autoscaler.idle_timeout_s,
        )


@dataclass(frozen=True, slots=True)
class ModelState:
    below_since: float | None = None  # when ``need`` first fell below ``current``; None: it has not
    window_peak: int = 0  # highest ``need`` since ``below_since``
    idle_since: float | None = None  # when the model last went from some work to none


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int
    reason: str


def _describe(obs: ModelObservation, cfg: ScalingConfig) -> str:
    return (
        f"queued={obs.queued} in_flight={obs.in_flight} target={cfg.target_backlog_per_worker:g}/worker "
        f"workers={obs.workers} busy={obs.workers - obs.idle_workers} booting={obs.booting}"
    )


def decide_model(
    obs: ModelObservation, cfg: ScalingConfig, state: ModelState, now: float
) -> tuple[Decision, ModelState]:
    load = obs.queued + obs.in_flight
    current = obs.workers + obs.booting
    busy = obs.workers - obs.idle_workers
    facts = _describe(obs, cfg)

    idle_since = None if load > 0 else (state.idle_since if state.idle_since is not None else now)
    no_window = replace(state, below_since=None, window_peak=0, idle_since=idle_since)

    if idle_since is not None and now - idle_since >= cfg.idle_timeout_s:
        desired = cfg.min_workers
        why = f"idle {now - idle_since:.0f}s >= idle_timeout {cfg.idle_timeout_s:g}s, min_workers={desired}"
        return Decision(desired, f"{facts} → desired {desired} ({why})"), no_window

    need = math.ceil(load / cfg.target_backlog_per_worker)
    notes: list[str] = []
    if load == 0 and current > 0:
        need = 1
        notes.append(f"keeping 1 warm until idle_timeout {cfg.idle_timeout_s:g}s")
    if busy > need:
        need = busy
        notes.append("busy workers stay")
    if need < cfg.min_workers:
        need = cfg.min_workers
        notes.append(f"min_workers={cfg.min_workers}")
    if need > cfg.max_workers:
        need = cfg.max_workers
        notes.append(f"max_workers={cfg.max_workers}")

    if need > current:
        desired = min(need, current + cfg.max_step)
        if desired < need:
            notes.append(f"need {need}, max_step={cfg.max_step}")
        notes.insert(0, f"scale up from {current}")
        return Decision(desired, _reason(facts, desired, notes)), no_window

    if need == current:
        return Decision(current, _reason(facts, current, notes)), no_window

    if state.below_since is None:
        below_since, peak = now, need
    else:
        below_since, peak = state.below_since, max(state.window_peak, need)
    waited = now - below_since
    if waited >= cfg.scale_down_window_s:
        notes.insert(0, f"scale down from {current}, highest need in {cfg.scale_down_window_s:g}s window")
        return Decision(peak, _reason(facts, peak, notes)), no_window

    notes.insert(0, f"need {need} for {waited:.0f}s of {cfg.scale_down_window_s:g}s window, holding")
    held = replace(state, below_since=below_since, window_peak=peak, idle_since=idle_since)
    return Decision(current, _reason(facts, current, notes)), held


def _reason(facts: str, desired: int, notes: list[str]) -> str:
    return f"{facts} → desired {desired}" + (f" ({'; '.join(notes)})" if notes else "")


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
