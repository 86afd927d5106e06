"""Autoscaling controllers for :mod:`bench.fleet_sim`: Tidal's policy and the baselines.

Tidal's decisions come from :func:`autoscaler.policy.decide` itself. The baselines model
other systems' published behaviour, each with its constants as fields:

- ``Keda``: KEDA's Redis list scaler driving a Kubernetes HPA. Every ``poll_s`` the metric is
  the pending list length only; HPA wants ``ceil(pending / list_length)`` replicas (its
  AverageValue rule), scales up at most ``max(2x, +4)`` at once, and scales down to the
  highest recommendation of the last ``stabilization_s``. After ``cooldown_s`` with an empty
  list KEDA deactivates to zero. Jobs already running and instances still booting are
  invisible to the rule, so while instances boot the growing list asks for more again.
- ``SageMaker``: SageMaker asynchronous inference. Target tracking on
  ApproximateBacklogSizePerInstance (queued + in flight per in-service instance), averaged
  into 1-minute datapoints. Scale-out needs ``out_datapoints`` consecutive datapoints above
  the target, scale-in ``in_datapoints`` below 90% of it; the new capacity is
  ``ceil(capacity * metric / target)``, where capacity includes booting instances but the
  metric does not. Plus the documented extra step policy for 0 -> 1, fired by the
  HasBacklogWithoutCapacity alarm after one 1-minute datapoint.
- ``Schedule``: a per-interval fleet plan known in advance, launched ``lead_s`` ahead so each
  interval's workers are ready when it starts (the oracle's plan).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from autoscaler.policy import ModelObservation, ModelState, ScalingConfig, decide
from bench.fleet_sim import View

MODEL = "model"


@dataclass
class Tidal:
    config: ScalingConfig
    name: str = "tidal"
    idle_until: float = 0.0
    _state: dict[str, ModelState] = field(default_factory=dict)
    _next: float = 0.0
    _arrivals: int = 0
    _completions: int = 0
    _run_s: float = 0.0

    def desired(self, view: View) -> int | None:
        # The simulator may tick more often than the autoscaler; what happens in between is
        # reported on the autoscaler's next tick, as the counters in Redis would be.
        self._arrivals += view.arrivals
        self._completions += view.completions
        self._run_s += view.completed_run_s
        if view.now < self._next:
            return None
        self._next = view.now + self.config.interval_s
        obs = ModelObservation(
            queued=view.queued,
            in_flight=view.in_flight,
            workers=view.ready,
            slots_per_worker=view.slots,
            idle_workers=view.idle,
            booting=view.booting,
            draining=view.draining,
            arrivals=self._arrivals,
            completions=self._completions,
            completed_run_s=self._run_s,
            booting_age_s=view.booting_age_s,
        )
        self._arrivals = self._completions = 0
        self._run_s = 0.0
        decisions, self._state = decide({MODEL: obs}, {MODEL: self.config}, self._state, view.now)
        quiet = decisions[MODEL].quiet_until
        self.idle_until = quiet if quiet is not None else 0.0
        return decisions[MODEL].desired


@dataclass
class Keda:
    list_length: float = 5.0
    poll_s: float = 30.0
    stabilization_s: float = 300.0
    cooldown_s: float = 300.0
    name: str = "keda"
    idle_until: float = 0.0
    _history: deque[tuple[float, int]] = field(default_factory=deque)
    _last_active: float = 0.0
    _next: float = 0.0

    def desired(self, view: View) -> int | None:
        if view.now < self._next:
            return None
        # Polls stay on their own grid even when the simulator skips idle ticks.
        self._next = (math.floor(view.now / self.poll_s) + 1) * self.poll_s
        self.idle_until = 0.0
        pending = view.queued
        if pending > 0:
            self._last_active = view.now
        elif view.now - self._last_active >= self.cooldown_s:
            self._history.clear()
            self.idle_until = math.inf  # deactivated: only a pending job changes that
            return 0
        current = view.ready + view.booting
        raw = max(1, math.ceil(pending / self.list_length))  # HPA's floor while KEDA is active
        self._history.append((view.now, raw))
        while self._history[0][0] < view.now - self.stabilization_s:
            self._history.popleft()
        wanted = max(r for _, r in self._history)
        if wanted > current:
            wanted = min(wanted, max(2 * current, current + 4))
        return wanted


@dataclass
class SageMaker:
    target: float
    period_s: float = 60.0
    out_datapoints: int = 3
    in_datapoints: int = 15
    scale_out_cooldown_s: float = 300.0
    scale_in_cooldown_s: float = 600.0
    name: str = "sagemaker"
    # With no instance and no backlog there is no datapoint and nothing to act on.
    idle_until: float = math.inf
    _samples: list[float] = field(default_factory=list)
    _backlog_without_capacity: bool = False
    _points: deque[float] = field(default_factory=deque)
    _period_end: float = 0.0
    _last_out: float = -math.inf
    _last_in: float = -math.inf

    def desired(self, view: View) -> int | None:
        backlog = view.queued + view.in_flight
        if view.ready:
            self._samples.append(backlog / view.ready)
        self._backlog_without_capacity |= backlog > 0 and view.ready + view.booting == 0
        if view.now < self._period_end:
            return None
        self._period_end = (math.floor(view.now / self.period_s) + 1) * self.period_s
        capacity = view.ready + view.booting
        if self._backlog_without_capacity:
            self._backlog_without_capacity = False
            self._samples.clear()
            if capacity == 0:
                return 1
        if not self._samples:
            return None
        self._points.append(sum(self._samples) / len(self._samples))
        self._samples.clear()
        while len(self._points) > self.in_datapoints:
            self._points.popleft()
        metric = self._points[-1]
        recent = list(self._points)
        out_ready = view.now - self._last_out >= self.scale_out_cooldown_s
        if (
            out_ready
            and len(recent) >= self.out_datapoints
            and all(p > self.target for p in recent[-self.out_datapoints :])
        ):
            self._last_out = view.now
            return max(capacity, math.ceil(capacity * metric / self.target))
        in_ready = view.now - max(self._last_in, self._last_out) >= self.scale_in_cooldown_s
        if in_ready and len(recent) >= self.in_datapoints and all(p < 0.9 * self.target for p in recent):
            self._last_in = view.now
            return min(capacity, math.ceil(capacity * metric / self.target))
        return None


@dataclass
class Schedule:
    workers: Sequence[int]  # one count per interval
    interval_s: float
    lead_s: float
    name: str = "oracle"
    idle_until: float = 0.0

    def desired(self, view: View) -> int | None:
        first = int(view.now // self.interval_s)
        last = int((view.now + self.lead_s) // self.interval_s)
        upcoming = self.workers[first : last + 1]
        wanted = max(upcoming) if upcoming else 0
        if wanted == 0:
            later = next((k for k in range(last + 1, len(self.workers)) if self.workers[k] > 0), None)
            self.idle_until = math.inf if later is None else later * self.interval_s - self.lead_s
        else:
            self.idle_until = 0.0
        return wanted
