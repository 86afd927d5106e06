"""What the scaling policy is given: one model's observation per tick, and its configuration."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import AutoscalerSettings, ModelSettings


@dataclass(frozen=True, slots=True)
class ModelObservation:
    """One model's queue and fleet as measured on one tick, and what happened since the last."""

    queued: int  # jobs waiting in the model's queues
    in_flight: int  # jobs dispatched to a ready worker or running there
    workers: int  # live workers in state "ready"
    slots_per_worker: int
    idle_workers: int  # live ready workers holding no job
    booting: int  # instances launched whose worker has not registered yet
    draining: int = 0  # live workers finishing their jobs before they are stopped
    arrivals: int = 0  # jobs submitted since the last tick
    completions: int = 0  # jobs that finished running since the last tick
    completed_run_s: float = 0.0  # their run times, summed
    booting_age_s: tuple[float, ...] = ()  # seconds since each booting instance was launched


@dataclass(frozen=True, slots=True)
class ScalingConfig:
    min_workers: int
    max_workers: int
    slots: int
    target_wait_s: float  # the SLO: p95 of the time a job waits before it starts
    cold_start_s: float  # launch to taking jobs: boot plus model load
    mean_run_s: float  # where the run-time estimate starts
    interval_s: float  # the autoscaler's tick
    max_step: int  # most launches per tick
    hold_s: float  # how long capacity no longer needed is kept
    idle_timeout_s: float | None = None  # cap on keep-alive with no work at all
    # What the SLO is worth: a late job is priced at cost_bias cold starts of GPU time when deciding
    # launches for a backlog, and at cost_bias times its own run time when deciding idle capacity.
    cost_bias: float = 1.0
    max_gpu_hours_per_day: float | None = None

    @classmethod
    def from_settings(cls, autoscaler: AutoscalerSettings, model: ModelSettings) -> ScalingConfig:
        cold = autoscaler.cold_start_s if autoscaler.cold_start_s is not None else autoscaler.typical_cold_start_s()
        wait = model.target_wait_p95_s if model.target_wait_p95_s is not None else autoscaler.acceptable_wait_s
        hold = autoscaler.scale_down_window_s if autoscaler.scale_down_window_s is not None else cold
        return cls(
            min_workers=model.min_workers,
            max_workers=model.max_workers,
            slots=model.slots,
            target_wait_s=wait,
            cold_start_s=cold,
            mean_run_s=model.mean_run_s,
            interval_s=autoscaler.interval_s,
            max_step=autoscaler.max_step,
            hold_s=hold,
            idle_timeout_s=autoscaler.idle_timeout_s,
            cost_bias=model.cost_bias,
            max_gpu_hours_per_day=model.max_gpu_hours_per_day,
        )

    @property
    def rate_window_s(self) -> float:
        # Capacity cannot change faster than a cold start, so the rate that sizes it is averaged
        # over about one.
        return max(self.cold_start_s, 2.0 * self.interval_s)
