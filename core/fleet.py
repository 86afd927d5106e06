"""What the fleet looks like in Redis: registered workers and each model's load."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class WorkerState(StrEnum):
    READY = "ready"  # takes new jobs
    DRAINING = "draining"  # finishes what it runs, takes nothing new


class WorkerField(StrEnum):
    """Every field of a worker's info hash."""

    ID = "id"
    MODEL = "model"
    VERSION = "version"
    WEIGHT = "weight"
    SLOTS = "slots"
    HOST = "host"
    PID = "pid"
    INSTANCE_ID = "instance_id"
    GPU = "gpu"  # the GPU it is pinned to (CUDA_VISIBLE_DEVICES); empty when not pinned
    STATE = "state"
    STARTED_AT = "started_at"
    LAST_JOB_AT = "last_job_at"
    EWMA_RUN_S = "ewma_run_s"  # written by the finish script
    JOBS_DONE = "jobs_done"  # written by the finish script


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """What a worker registers about itself."""

    id: str
    model: str
    version: str
    weight: float
    slots: int
    host: str
    pid: int
    instance_id: str
    started_at: float
    gpu: str = ""  # the GPU it is pinned to; empty when not pinned

    def to_hash(self) -> dict[str, str]:
        return {
            WorkerField.ID: self.id, WorkerField.MODEL: self.model, WorkerField.VERSION: self.version,
            WorkerField.WEIGHT: repr(self.weight), WorkerField.SLOTS: str(self.slots), WorkerField.HOST: self.host,
            WorkerField.PID: str(self.pid), WorkerField.INSTANCE_ID: self.instance_id,
            WorkerField.GPU: self.gpu, WorkerField.STATE: WorkerState.READY,
            WorkerField.STARTED_AT: repr(self.started_at),
            WorkerField.LAST_JOB_AT: "",
        }


@dataclass(frozen=True, slots=True)
class WorkerView:
    id: str
    model: str
    version: str
    weight: float
    slots: int
    host: str
    pid: int
    instance_id: str
    state: WorkerState
    alive: bool
    queued: int  # dispatched to it, not started
    running: int
    started_at: float
    last_job_at: float | None
    ewma_run_s: float | None
    jobs_done: int
    gpu: str = ""  # the GPU it is pinned to (CUDA_VISIBLE_DEVICES); empty when not pinned

    @property
    def outstanding(self) -> int:
        return self.queued + self.running

    @classmethod
    def from_hash(cls, h: dict[str, str], alive: bool, queued: int, running: int) -> WorkerView:
        last_job_at, ewma_run_s = h.get(WorkerField.LAST_JOB_AT), h.get(WorkerField.EWMA_RUN_S)
        return cls(
            id=h[WorkerField.ID],
            model=h.get(WorkerField.MODEL, ""),
            version=h.get(WorkerField.VERSION, ""),
            weight=float(h.get(WorkerField.WEIGHT) or 1.0),
            slots=int(h.get(WorkerField.SLOTS) or 1),
            host=h.get(WorkerField.HOST, ""),
            pid=int(h.get(WorkerField.PID) or 0),
            instance_id=h.get(WorkerField.INSTANCE_ID, ""),
            state=WorkerState(h.get(WorkerField.STATE) or WorkerState.READY),
            alive=alive,
            queued=queued,
            running=running,
            started_at=float(h.get(WorkerField.STARTED_AT) or 0.0),
            last_job_at=float(last_job_at) if last_job_at else None,
            ewma_run_s=float(ewma_run_s) if ewma_run_s else None,
            jobs_done=int(h.get(WorkerField.JOBS_DONE) or 0),
            gpu=h.get(WorkerField.GPU, ""),
        )

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "model": self.model, "version": self.version, "weight": self.weight,
            "slots": self.slots, "host": self.host, "pid": self.pid, "instance_id": self.instance_id or None,
            "gpu": self.gpu or None,
            "state": self.state if self.alive else "lost", "queued": self.queued, "running": self.running,
            "ewma_run_s": self.ewma_run_s, "jobs_done": self.jobs_done,
        }


class ScaleField(StrEnum):
    """Every field of a model's scale record."""

    DESIRED = "desired"
    CURRENT = "current"
    WORKERS = "workers"
    BOOTING = "booting"
    DRAINING = "draining"
    REASON = "reason"
    BROKEN = "broken"  # why the pool stopped launching; empty while it is not broken
    ACTIONS = "actions"
    FAILED_LAUNCHES = "failed_launches"
    AT = "at"


@dataclass(frozen=True, slots=True)
class ScaleRecord:
    """The autoscaler's last decision for a model, as ``GET /v1/models`` shows it."""

    desired: int
    current: int
    workers: int
    booting: int
    draining: int
    reason: str
    actions: str
    failed_launches: int
    at: float
    broken: str = ""  # why the autoscaler stopped launching for this model; empty while it launches

    def to_hash(self) -> dict[str, str]:
        return {
            ScaleField.DESIRED: str(self.desired), ScaleField.CURRENT: str(self.current),
            ScaleField.WORKERS: str(self.workers), ScaleField.BOOTING: str(self.booting),
            ScaleField.DRAINING: str(self.draining), ScaleField.REASON: self.reason,
            ScaleField.BROKEN: self.broken, ScaleField.ACTIONS: self.actions,
            ScaleField.FAILED_LAUNCHES: str(self.failed_launches), ScaleField.AT: repr(self.at),
        }

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> ScaleRecord | None:
        if not h:
            return None
        return cls(
            desired=int(h.get(ScaleField.DESIRED) or 0), current=int(h.get(ScaleField.CURRENT) or 0),
            workers=int(h.get(ScaleField.WORKERS) or 0), booting=int(h.get(ScaleField.BOOTING) or 0),
            draining=int(h.get(ScaleField.DRAINING) or 0), reason=h.get(ScaleField.REASON, ""),
            actions=h.get(ScaleField.ACTIONS, ""), failed_launches=int(h.get(ScaleField.FAILED_LAUNCHES) or 0),
            at=float(h.get(ScaleField.AT) or 0.0), broken=h.get(ScaleField.BROKEN, ""),
        )


class CounterField(StrEnum):
    """Every field of a model's counters hash (the submit and finish scripts increment them)."""

    ARRIVALS = "arrivals"
    COMPLETIONS = "completions"
    RUN_S = "run_s"


@dataclass(frozen=True, slots=True)
class Counters:
    """Running totals for one model since its counters began."""

    arrivals: int = 0  # jobs accepted
    completions: int = 0  # runs finished by workers
    run_s: float = 0.0  # their run times, summed

    @classmethod
    def from_values(cls, values: list[str | None]) -> Counters:
        """From the hash's values in :class:`CounterField` order (missing: 0)."""
        arrivals, completions, run_s = (float(v or 0) for v in values)
        return cls(int(arrivals), int(completions), run_s)

    def since(self, before: Counters | None) -> Counters:
        """What happened since ``before``; all of it if the totals went back (counters lost)."""
        if before is None:
            return Counters()
        if self.arrivals < before.arrivals or self.completions < before.completions:
            return self
        return Counters(self.arrivals - before.arrivals, self.completions - before.completions,
                        max(0.0, self.run_s - before.run_s))


@dataclass(frozen=True, slots=True)
class ModelLoad:
    model: str
    backlog: int  # waiting in the model's queues
    policy_override: str | None
    scale: ScaleRecord | None = None  # the autoscaler's last decision
    counters: Counters = field(default_factory=Counters)  # running totals of jobs and runs


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    workers: list[WorkerView]
    models: dict[str, ModelLoad]

    def workers_of(self, model: str) -> list[WorkerView]:
        return [w for w in self.workers if w.model == model]

    def in_flight(self, model: str) -> int:
        return sum(w.outstanding for w in self.workers_of(model))
