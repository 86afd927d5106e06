"""Constant fleets: every size of each model's fleet, and the smallest that meets a p95 wait.

A constant fleet of ``n`` ready workers is an FCFS queue on ``n * slots`` servers
(:func:`bench.fleet_sim.static_waits`), so each size is one pass over the model's jobs.
Each model has its own SLO, so with several models each gets its own constant fleet, sized
to a p95 for that model: the allocation is per model, never one model's jobs sacrificed to
another's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.fleet_sim import static_waits

SETTLED_WAIT_S = 0.01  # a fleet whose longest wait is below this gains nothing from one more worker


@dataclass(frozen=True)
class ModelSizes:
    """One model's waits on each constant fleet size from ``sizes[0]`` upward."""

    sizes: list[int]
    waits: list[np.ndarray]
    p95: list[float]
    ends: list[float]  # per size, when the last job finished

    def smallest(self, max_wait_s: float) -> int:
        """Index of the smallest size whose p95 wait is at most ``max_wait_s`` (the largest if none)."""
        return next((k for k, p in enumerate(self.p95) if p <= max_wait_s + 1e-9), len(self.sizes) - 1)


def sizes_for(arrival_s: np.ndarray, service_s: np.ndarray, slots: int, cap: int) -> ModelSizes:
    """Waits for every size from just under the mean load until no job waits."""
    duration = max(float(arrival_s[-1]) if arrival_s.size else 0.0, 1.0)
    n = max(1, math.ceil(0.8 * float(service_s.sum()) / duration / slots))
    sizes, waits, p95, ends = [], [], [], []
    while True:
        w, end = static_waits(arrival_s, service_s, n, slots)
        sizes.append(n)
        waits.append(w)
        p95.append(float(np.percentile(w, 95)))
        ends.append(end)
        if float(w.max(initial=0.0)) <= SETTLED_WAIT_S or n >= cap:
            return ModelSizes(sizes, waits, p95, ends)
        n += 1


@dataclass(frozen=True)
class Allocation:
    workers: dict[str, int]
    gpu_hours: float
    p95_wait_s: float
    waits: np.ndarray


def allocation(models: dict[str, ModelSizes], picks: dict[str, int]) -> Allocation:
    """The fleets choosing index ``picks[m]`` of each model's sizes, billed until the last job ends."""
    end = max(models[m].ends[k] for m, k in picks.items())
    waits = np.concatenate([models[m].waits[k] for m, k in picks.items()])
    workers = {m: models[m].sizes[k] for m, k in picks.items()}
    return Allocation(workers, sum(workers.values()) * end / 3600, float(np.percentile(waits, 95)), waits)


def meeting(models: dict[str, ModelSizes], max_wait_s: dict[str, float]) -> Allocation:
    """Each model's smallest constant fleet with its p95 wait within that model's bound."""
    return allocation(models, {m: s.smallest(max_wait_s[m]) for m, s in models.items()})


def frontier(models: dict[str, ModelSizes], bounds: list[float]) -> list[Allocation]:
    """Pareto points (GPU-hours, p95) of constant fleets: every size for one model; for several,
    every model sized to the same p95 bound, for each bound."""
    if len(models) == 1:
        ((name, sizes),) = models.items()
        points = [allocation(models, {name: k}) for k in range(len(sizes.sizes))]
    else:
        points = [meeting(models, dict.fromkeys(models, b)) for b in bounds]
    points.sort(key=lambda a: (a.gpu_hours, a.p95_wait_s))
    out: list[Allocation] = []
    for a in points:
        if not out or a.p95_wait_s < out[-1].p95_wait_s - 1e-9:
            out.append(a)
    return out
