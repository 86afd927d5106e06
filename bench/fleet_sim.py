"""One model's autoscaled fleet replaying its jobs, by discrete-event simulation.

Jobs wait in the model's queue and go to ready workers through
:func:`dispatcher.policies.choose` (prefetch = slots, so a dispatched job starts at once).
Every ``tick_s`` a :class:`Controller` may set a new desired worker count, and the fleet is
reconciled toward it the way Tidal's autoscaler acts (``autoscaler/act.py``):

- put draining workers back to work first (their model is loaded), then launch the rest of
  ``desired - (ready + booting)``; a launch is billed at once and takes ``cold_start_s``
  (boot and model load) before it takes jobs;
- to scale in, cancel booting instances first (newest first), then mark idle ready workers
  draining (longest idle first); a draining worker gets no new job and is terminated on
  the next tick. Busy workers are never stopped.

GPU time is every instance's launch-to-termination time, booting included.

While the fleet is empty and no job is waiting or running, ticks are skipped up to the next
arrival or the controller's ``idle_until`` (the first tick on the ``tick_s`` grid after
either), so traces of weeks replay in seconds. A controller promises by ``idle_until`` that,
with no arrival, it would not change its answer before then.

A constant fleet needs no events at all: :func:`static_waits` is the FCFS multi-server
queue it amounts to.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bench.sim import EventQueue
from dispatcher.policies import Candidate, PolicyState, choose


@dataclass(frozen=True, slots=True)
class View:
    """What a controller sees on one tick."""

    now: float
    queued: int
    in_flight: int
    ready: int
    idle: int
    booting: int
    draining: int
    slots: int
    arrivals: int = 0  # since the last tick
    completions: int = 0  # since the last tick
    completed_run_s: float = 0.0  # their run times, summed
    booting_age_s: tuple[float, ...] = ()


class Controller(Protocol):
    name: str
    idle_until: float  # with the fleet empty and no arrival, no new answer before this time

    def desired(self, view: View) -> int | None:
        """The worker count to reconcile toward from now on; ``None`` keeps the last one."""
        ...


@dataclass(frozen=True, slots=True)
class FleetConfig:
    cold_start_s: float = 90.0
    tick_s: float = 2.0
    slots: int = 1
    dispatch_policy: str = "least-backlog"
    sample_s: float = 10.0  # timeline resolution, for plots


@dataclass(slots=True)
class _Instance:
    id: str
    launched_at: float
    ready_at: float
    state: str = "booting"  # booting | ready | draining
    running: int = 0
    last_job_at: float = 0.0


@dataclass
class Outcome:
    wait_s: np.ndarray
    gpu_s: float
    booting_s: float
    cold_starts: int
    cancelled_boots: int
    peak_fleet: int
    end_s: float
    timeline: dict[str, list[float]] = field(default_factory=dict)


def simulate(
    arrival_s: np.ndarray, service_s: np.ndarray, controller: Controller, initial_workers: int, cfg: FleetConfig
) -> Outcome:
    arrival = arrival_s.tolist()
    service = service_s.tolist()
    m = len(arrival)
    wait = np.full(m, np.nan)
    events: EventQueue[tuple[str, str, float]] = EventQueue()
    fleet: dict[str, _Instance] = {}
    queue: deque[int] = deque()
    serial = 0
    gpu_s = booting_s = 0.0
    cold_starts = cancelled = peak = done = 0
    arrived_since = done_since = 0
    run_since = 0.0
    target = initial_workers
    state = PolicyState()
    timeline: dict[str, list[float]] = {k: [] for k in ("t", "queued", "ready", "booting", "draining")}
    next_sample = 0.0

    def launch(now: float, ready_now: bool) -> None:
        nonlocal serial, cold_starts
        iid = f"i{serial:06d}"
        serial += 1
        ready_at = now if ready_now else now + cfg.cold_start_s
        fleet[iid] = _Instance(iid, now, ready_at, "ready" if ready_now else "booting", last_job_at=now)
        if not ready_now:
            cold_starts += 1
            events.push(ready_at, ("ready", iid, 0.0))

    def terminate(inst: _Instance, now: float) -> None:
        nonlocal gpu_s, booting_s
        gpu_s += now - inst.launched_at
        booting_s += min(now, inst.ready_at) - inst.launched_at
        del fleet[inst.id]

    def dispatch(now: float) -> None:
        nonlocal state
        while queue:
            cands = [
                Candidate(i.id, 1.0, cfg.slots, 0, i.running, cfg.slots - i.running)
                for i in fleet.values()
                if i.state == "ready" and i.running < cfg.slots
            ]
            if not cands:
                return
            wid, state = choose(cfg.dispatch_policy, cands, state)
            if wid is None:
                return
            j = queue.popleft()
            inst = fleet[wid]
            inst.running += 1
            wait[j] = now - arrival[j]
            events.push(now + service[j], ("done", wid, service[j]))

    def reconcile(now: float) -> None:
        nonlocal cancelled
        ready = [i for i in fleet.values() if i.state == "ready"]
        booting = sorted((i for i in fleet.values() if i.state == "booting"), key=lambda i: -i.launched_at)
        draining = [i for i in fleet.values() if i.state == "draining"]
        current = len(ready) + len(booting)
        undrain = draining[: max(0, target - current)]
        for inst in undrain:
            inst.state = "ready"
        for inst in draining[len(undrain) :]:
            if inst.running == 0:
                terminate(inst, now)
        current += len(undrain)
        if target > current:
            for _ in range(target - current):
                launch(now, ready_now=False)
            return
        excess = current - target
        for inst in booting[:excess]:
            cancelled += 1
            terminate(inst, now)
        excess -= min(excess, len(booting))
        idle = sorted((i for i in ready if i.running == 0), key=lambda i: (i.last_job_at, i.id))
        for inst in idle[:excess]:
            inst.state = "draining"

    def tick(now: float) -> float:
        """Ask the controller, reconcile, and return when the next tick is due."""
        nonlocal target, arrived_since, done_since, run_since
        ready = idle = draining = busy_jobs = 0
        ages = []
        for inst in fleet.values():
            if inst.state == "ready":
                ready += 1
                idle += inst.running == 0
                busy_jobs += inst.running
            elif inst.state == "booting":
                ages.append(now - inst.launched_at)
            else:
                draining += 1
        view = View(now, len(queue), busy_jobs, ready, idle, len(ages), draining, cfg.slots,
                    arrived_since, done_since, run_since, tuple(ages))
        arrived_since = done_since = 0
        run_since = 0.0
        wanted = controller.desired(view)
        if wanted is not None:
            target = max(0, wanted)
        reconcile(now)
        due = now + cfg.tick_s
        if not fleet and not queue:
            wake = min(controller.idle_until, arrival[nxt] if nxt < m else math.inf)
            if wake > due and math.isfinite(wake):
                due = math.ceil(wake / cfg.tick_s - 1e-9) * cfg.tick_s
        return due

    for _ in range(initial_workers):
        launch(0.0, ready_now=True)
    events.push(0.0, ("tick", "", 0.0))
    nxt = 0
    now = 0.0
    while done < m:
        if nxt < m and arrival[nxt] <= events.next_time():
            now = arrival[nxt]
            queue.append(nxt)
            nxt += 1
            arrived_since += 1
        else:
            now, (kind, iid, ran) = events.pop()
            if kind == "done":
                inst = fleet[iid]
                inst.running -= 1
                inst.last_job_at = now
                done += 1
                done_since += 1
                run_since += ran
            elif kind == "ready":
                if iid in fleet:  # not cancelled while booting
                    fleet[iid].state = "ready"
                    fleet[iid].last_job_at = now
            else:
                # Ticks are skipped only with nothing running, booting or waiting, and the arrival that
                # ends a skip came within the last tick: samples before that saw an empty model.
                while next_sample < now - cfg.tick_s:
                    for key, val in zip(timeline, (next_sample, 0, 0, 0, 0), strict=True):
                        timeline[key].append(val)
                    next_sample += cfg.sample_s
                events.push(tick(now), ("tick", "", 0.0))
                while now >= next_sample:
                    counts = [0, 0, 0]
                    for inst in fleet.values():
                        counts[("ready", "booting", "draining").index(inst.state)] += 1
                    for key, val in zip(timeline, (next_sample, len(queue), *counts), strict=True):
                        timeline[key].append(val)
                    next_sample += cfg.sample_s
        peak = max(peak, len(fleet))
        dispatch(now)
    for inst in list(fleet.values()):
        terminate(inst, now)
    return Outcome(wait, gpu_s, booting_s, cold_starts, cancelled, peak, now, timeline)


def static_waits(arrival_s: np.ndarray, service_s: np.ndarray, workers: int, slots: int) -> tuple[np.ndarray, float]:
    """(queue wait of each job, last completion) on ``workers`` always-ready workers: FCFS on the
    earliest free slot, which is what least-backlog dispatch does on identical workers."""
    servers = workers * slots
    if servers <= 0:
        raise ValueError("a static fleet needs at least one worker")
    free = [0.0] * servers
    out = np.empty(len(arrival_s))
    end = 0.0
    for k, (a, s) in enumerate(zip(arrival_s.tolist(), service_s.tolist(), strict=True)):
        t = heapq.heappop(free)
        start = a if a > t else t
        out[k] = start - a
        finish = start + s
        end = finish if finish > end else end
        heapq.heappush(free, finish)
    return out, end


def offered_workers(arrival_s: np.ndarray, service_s: np.ndarray, slots: int, window_s: float) -> np.ndarray:
    """Workers kept exactly busy by the work arriving in each window: ``work / window / slots``."""
    bins = (arrival_s // window_s).astype(int)
    work = np.bincount(bins, weights=service_s)
    return work / window_s / slots


def initial_fleet(arrival_s: np.ndarray, service_s: np.ndarray, slots: int, window_s: float = 300.0) -> int:
    """Every dynamic policy starts warm, sized to the offered load of the first window."""
    if not len(arrival_s):
        return 0
    return max(1, math.ceil(float(offered_workers(arrival_s, service_s, slots, window_s)[0])))
